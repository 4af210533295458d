"""The paired bootstrap over test patients against a direct computation on a tiny case."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from resp_audio_hf.benchmark.paired import paired_bootstrap


def _tiny_case(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(8), 3)  # 8 patients, 3 rows each
    y = np.array([0, 1] * 12)
    signal = y + rng.normal(0, 0.8, size=(3, 24))
    a = np.stack([np.stack([1 - p, p], axis=-1) for p in 1 / (1 + np.exp(-signal * 1.5))])  # 3 seeds
    b = np.stack(
        [np.stack([1 - p, p], axis=-1) for p in 1 / (1 + np.exp(-(signal[:2] * 0.3 + rng.normal(0, 1, (2, 24)))))]
    )
    return y, a, b, groups


def test_paired_bootstrap_equals_a_direct_resampling_of_patients():
    y, a, b, groups = _tiny_case()
    result = paired_bootstrap(y, a, b, groups, n_resamples=200, seed=7)

    # Direct computation: the same draws of patients, sklearn's AUROC per seed, mean over seeds, A minus B.
    rng = np.random.default_rng(7)
    patients = np.unique(groups)
    differences, discarded = [], 0
    for _ in range(200):
        drawn = rng.integers(0, len(patients), len(patients))
        rows = np.concatenate([np.flatnonzero(groups == patients[g]) for g in drawn])
        if len(np.unique(y[rows])) < 2:
            discarded += 1
            continue
        mean_a = np.mean([roc_auc_score(y[rows], seed[rows, 1]) for seed in a])
        mean_b = np.mean([roc_auc_score(y[rows], seed[rows, 1]) for seed in b])
        differences.append(mean_a - mean_b)
    full = np.mean([roc_auc_score(y, s[:, 1]) for s in a]) - np.mean([roc_auc_score(y, s[:, 1]) for s in b])
    assert result.difference == pytest.approx(full, abs=1e-12)
    assert result.ci_low == pytest.approx(np.percentile(differences, 2.5), abs=1e-12)
    assert result.ci_high == pytest.approx(np.percentile(differences, 97.5), abs=1e-12)
    assert (result.n_resamples, result.n_discarded, result.n_groups, result.n_rows) == (
        len(differences),
        discarded,
        8,
        24,
    )
    assert result.to_dict()["excludes_zero"] == (result.ci_low > 0 or result.ci_high < 0)


def test_a_model_against_itself_differs_by_exactly_zero_and_draws_follow_the_seed():
    y, a, _, groups = _tiny_case(1)
    same = paired_bootstrap(y, a, a.copy(), groups, n_resamples=50, seed=0)
    assert (same.difference, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    y, a, b, groups = _tiny_case(2)
    first = paired_bootstrap(y, a, b, groups, n_resamples=100, seed=3)
    assert first == paired_bootstrap(y, a, b, groups, n_resamples=100, seed=3)
    assert first != paired_bootstrap(y, a, b, groups, n_resamples=100, seed=4)


def test_paired_bootstrap_resamples_patients_not_rows():
    # Two patients whose rows are all alike: resampling rows would give a narrow interval, resampling the two
    # patients can only draw (p0, p0), (p0, p1), (p1, p0) or (p1, p1), and draws of one patient lack a class.
    y = np.array([0, 0, 1, 1, 0, 1])
    groups = np.array(["p0", "p0", "p0", "p1", "p1", "p1"])
    a = np.array([[[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.1, 0.9]]])
    b = np.array([[[0.5, 0.5], [0.4, 0.6], [0.6, 0.4], [0.5, 0.5], [0.3, 0.7], [0.7, 0.3]]])
    result = paired_bootstrap(y, a, b, groups, n_resamples=400, seed=0)
    assert result.n_groups == 2 and result.n_resamples + result.n_discarded == 400
    with pytest.raises(ValueError, match=r"predictions must be \[seeds, 6"):
        paired_bootstrap(y, a[:, :5], b, groups)
