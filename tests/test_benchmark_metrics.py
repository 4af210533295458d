"""AUROC, MAE and mean reciprocal rank against scikit-learn / scipy / pandas computed independently; the ICBHI
challenge's sensitivity and specificity against hand-computed values."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error as sk_mae
from sklearn.metrics import roc_auc_score

from resp_audio_hf.benchmark.baselines import (
    OPERA_BASELINE_METHODS,
    OPERA_PUBLISHED_RESULTS,
)
from resp_audio_hf.benchmark.metrics import (
    absent_classes,
    auroc_ovr_macro,
    icbhi_scores,
    mean_absolute_error,
    mean_reciprocal_rank,
)


def test_binary_auroc_matches_sklearn_including_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p1 = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, 400), 0, 1), 1)  # coarse rounding -> many ties
    probs = np.stack([1 - p1, p1], axis=1)
    assert auroc_ovr_macro(y, probs) == pytest.approx(roc_auc_score(y, p1), abs=1e-12)
    assert auroc_ovr_macro(y, p1) == pytest.approx(roc_auc_score(y, p1), abs=1e-12)


def test_multiclass_macro_ovr_auroc_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 600)
    logits = rng.standard_normal((600, 5)) + 1.5 * np.eye(5)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert auroc_ovr_macro(y, probs) == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12
    )


def test_batched_auroc_equals_one_call_per_seed():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 200)
    scores = rng.dirichlet(np.ones(3), size=(4, 200))
    batched = auroc_ovr_macro(y, scores)
    assert batched.shape == (4,)
    for seed in range(4):
        assert batched[seed] == pytest.approx(roc_auc_score(y, scores[seed], multi_class="ovr"), abs=1e-12)


# A 4-class test set in which class 3 never occurs: per row the true class and the 4 class probabilities.
_ABSENT = np.loadtxt(Path(__file__).resolve().parent / "fixtures" / "auroc_absent_class.csv", delimiter=",", skiprows=1)
_ABSENT_Y = _ABSENT[:, 0].astype(np.int64)
_ABSENT_PROBS = _ABSENT[:, 1:]


def test_a_class_absent_from_the_labels_counts_as_zero_as_in_opera():
    """OPERA scores with torchmetrics' AUROC(task="multiclass", num_classes=4), whose ROC of a class without positives
    has tpr 0, so the class adds 0 to the macro mean. torchmetrics 1.3.1 (OPERA's environment.yml) returns 0.69921875
    on this input; the mean over the three present classes would be 0.932."""
    present = [roc_auc_score(_ABSENT_Y == c, _ABSENT_PROBS[:, c]) for c in range(3)]
    assert np.mean(present) == pytest.approx(0.9322916666666666)
    assert auroc_ovr_macro(_ABSENT_Y, _ABSENT_PROBS) == pytest.approx(0.69921875, abs=1e-12)
    assert auroc_ovr_macro(_ABSENT_Y, _ABSENT_PROBS) == pytest.approx(sum(present) / 4, abs=1e-12)
    batched = auroc_ovr_macro(_ABSENT_Y, np.stack([_ABSENT_PROBS, _ABSENT_PROBS[:, ::-1]]))
    assert batched[0] == pytest.approx(0.69921875, abs=1e-12)
    reversed_present = [roc_auc_score(_ABSENT_Y == c, _ABSENT_PROBS[:, 3 - c]) for c in range(3)]
    assert batched[1] == pytest.approx(sum(reversed_present) / 4, abs=1e-12)
    assert absent_classes(_ABSENT_Y, 4) == [3] and absent_classes(_ABSENT_Y, 3) == []


def test_auroc_rejects_undefined_inputs():
    with pytest.raises(ValueError, match="single class"):
        auroc_ovr_macro(np.zeros(5, int), np.random.rand(5, 2))
    with pytest.raises(ValueError, match="NaN"):
        auroc_ovr_macro(np.array([0, 1, 0]), np.array([[0.5, 0.5], [np.nan, 1], [1, 0]]))
    with pytest.raises(ValueError, match="rows"):
        auroc_ovr_macro(np.array([0, 1]), np.random.rand(3, 2))


def test_icbhi_sensitivity_and_specificity_by_hand():
    # classes: 0 normal, 1 crackle, 2 wheeze, 3 both
    y_true = [0, 0, 0, 0, 1, 1, 2, 3, 3, 2]
    y_pred = [0, 0, 1, 0, 1, 3, 2, 3, 0, 0]
    # normal: 3 of 4 predicted normal -> Sp 0.75; abnormal: crackle 1/2, wheeze 1/2, both 1/2 predicted as their own
    # class (a "both" cycle called "crackle" would be wrong too) -> Se 3/6.
    assert icbhi_scores(y_true, y_pred) == {"sensitivity": 0.5, "specificity": 0.75, "icbhi_score": 0.625}
    # Abnormal cycles predicted as another abnormal class do not count.
    assert icbhi_scores([0, 1, 2, 3], [0, 2, 3, 1])["sensitivity"] == 0.0
    with pytest.raises(ValueError, match="both normal and abnormal"):
        icbhi_scores([1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="predictions"):
        icbhi_scores([0, 1], [0])


def test_mae_matches_sklearn():
    rng = np.random.default_rng(3)
    y, p = rng.normal(3, 1, 50), rng.normal(3, 1, 50)
    assert mean_absolute_error(y, p) == pytest.approx(sk_mae(y, p))
    batched = mean_absolute_error(y, np.stack([p, p + 1]))
    assert batched[1] == pytest.approx(sk_mae(y, p + 1))


def test_mrr_matches_an_independent_pandas_ranking_on_operas_published_table():
    tasks = [f"T{i}" for i in range(1, 20)]
    higher = {t: int(t[1:]) <= 12 for t in tasks}
    scores = {m: {t: OPERA_PUBLISHED_RESULTS[m][t]["mean"] for t in tasks} for m in OPERA_BASELINE_METHODS}
    ours = mean_reciprocal_rank(scores, higher)
    frame = pd.DataFrame(scores)  # rows: tasks, columns: methods
    ranks = pd.concat([frame.loc[t].rank(ascending=not higher[t], method="min") for t in tasks], axis=1).T
    expected = (1.0 / ranks).mean(axis=0)
    for method in OPERA_BASELINE_METHODS:
        assert ours[method] == pytest.approx(expected[method], abs=1e-12)
    # OPERA's conclusion: its models outrank the general-audio baselines overall.
    assert max(ours, key=ours.get).startswith("OPERA")


def test_mrr_ties_share_the_best_rank_and_mae_is_lower_better():
    scores = {"a": {"x": 0.9, "y": 1.0}, "b": {"x": 0.9, "y": 2.0}, "c": {"x": 0.5, "y": 0.5}}
    mrr = mean_reciprocal_rank(scores, {"x": True, "y": False})
    assert mrr == pytest.approx({"a": (1 + 1 / 2) / 2, "b": (1 + 1 / 3) / 2, "c": (1 / 3 + 1) / 2})
