"""The vectorised OPERA linear probe against an independent per-sample loop and scikit-learn."""

import numpy as np
import pytest
from _data_helpers import reference_probe_loop
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from resp_audio_hf.benchmark.probe import ProbeRun, train_linear_probes
from resp_audio_hf.benchmark.runner import make_runs
from resp_audio_hf.data.probe_protocols import ProbeProtocol
from resp_audio_hf.data.tasks import TASKS


def _classification_data(n=240, dim=24, n_classes=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dim))
    y = rng.integers(0, n_classes, n)
    x = (0.6 * centres[y] + rng.standard_normal((n, dim))).astype(np.float32)
    return x, y


def _holdout_runs(n, seeds, n_train=150, n_val=40):
    idx = np.arange(n)
    return [
        ProbeRun(idx[:n_train], idx[n_train : n_train + n_val], idx[n_train + n_val :], s, f"seed {s}") for s in seeds
    ]


def test_vectorised_probe_equals_per_sample_loop_for_every_seed():
    x, y = _classification_data()
    protocol = ProbeProtocol(
        epochs=12, batch_size=32, learning_rate=3e-3, l2_strength=1e-3, checkpoint_every=2, grad_clip=0.05
    )
    runs = _holdout_runs(len(x), seeds=(0, 1, 2))
    outcomes = train_linear_probes(x, y, runs, protocol, "classification", 2)
    for run, outcome in zip(runs, outcomes):
        reference, best_epoch = reference_probe_loop(x, y, run, protocol)
        assert outcome.best_epoch == best_epoch
        np.testing.assert_allclose(outcome.test_predictions, reference, atol=2e-5)
        assert outcome.test_score == pytest.approx(roc_auc_score(y[run.test], reference[:, 1]), abs=1e-6)
    # Different seeds really are different runs.
    assert not np.allclose(outcomes[0].test_predictions, outcomes[1].test_predictions)


def test_vectorised_regression_probe_equals_loop_with_destandardised_head():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((90, 10)).astype(np.float32)
    y = 3.0 + x @ rng.standard_normal(10) * 0.3 + 0.1 * rng.standard_normal(90)
    protocol = ProbeProtocol(
        epochs=9, batch_size=16, learning_rate=1e-2, l2_strength=1e-1, checkpoint_every=3, seeds=(0,)
    )
    runs = _holdout_runs(90, seeds=(0, 5), n_train=60, n_val=15)
    outcomes = train_linear_probes(x, y, runs, protocol, "regression")
    for run, outcome in zip(runs, outcomes):
        reference, best_epoch = reference_probe_loop(x, y, run, protocol, kind="regression")
        assert outcome.best_epoch == best_epoch
        np.testing.assert_allclose(outcome.test_predictions, reference, atol=1e-4)
        assert outcome.test_score == pytest.approx(np.abs(reference - y[run.test]).mean(), abs=1e-4)


def test_runs_with_different_training_sizes_match_separate_training():
    x, y = _classification_data(n=200, n_classes=3, seed=5)
    protocol = ProbeProtocol(epochs=6, batch_size=32, learning_rate=1e-2)
    idx = np.arange(200)
    runs = [
        ProbeRun(idx[:120], idx[120:160], idx[160:], 0),
        ProbeRun(idx[:100], idx[120:160], idx[160:], 1),
        ProbeRun(idx[:120], idx[120:160], idx[160:], 2),
    ]
    together = train_linear_probes(x, y, runs, protocol, "classification", 3)
    for run, outcome in zip(runs, together):
        alone = train_linear_probes(x, y, [run], protocol, "classification", 3)[0]
        np.testing.assert_allclose(outcome.test_predictions, alone.test_predictions, atol=1e-6)


def test_probe_converges_to_sklearn_logistic_regression():
    # Full-batch, no decay, many epochs: the probe minimises mean cross-entropy + l2*(|W|^2 + |b|^2). For two
    # softmax columns that is binary logistic regression with penalty (l2/2)|w|^2, i.e. sklearn's C = 1/(l2*n).
    x, y = _classification_data(n=300, dim=8, seed=7)
    train, test = np.arange(200), np.arange(200, 300)
    l2 = 1e-2
    protocol = ProbeProtocol(
        epochs=1500,
        batch_size=None,
        learning_rate=2e-2,
        l2_strength=l2,
        lr_decay=1.0,
        grad_clip=1e9,
        checkpoint_every=1500,
        seeds=(0,),
    )
    outcome = train_linear_probes(x, y, [ProbeRun(train, test, test, 0)], protocol, "classification", 2)[0]
    sk = LogisticRegression(C=1.0 / (l2 * len(train)), tol=1e-10, max_iter=10_000).fit(x[train], y[train])
    sk_probs = sk.predict_proba(x[test])[:, 1]
    probe_probs = outcome.test_predictions[:, 1]
    assert np.corrcoef(np.log(probe_probs / (1 - probe_probs)), sk.decision_function(x[test]))[0, 1] > 0.999
    assert outcome.test_score == pytest.approx(roc_auc_score(y[test], sk_probs), abs=0.005)
    np.testing.assert_allclose(probe_probs, sk_probs, atol=0.02)


def test_probe_refuses_bad_inputs_with_reasons():
    x, y = _classification_data(n=60)
    run = ProbeRun(np.arange(40), np.arange(40, 50), np.arange(50, 60), 0)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf in rows \[3\]"):
        train_linear_probes(bad, y, [run], ProbeProtocol(epochs=1), "classification", 2)
    y_single = y.copy()
    y_single[40:50] = 1
    with pytest.raises(ValueError, match="validation set has a single class"):
        train_linear_probes(x, y_single, [run], ProbeProtocol(epochs=1), "classification", 2)
    with pytest.raises(ValueError, match="test set is empty"):
        train_linear_probes(
            x,
            y,
            [ProbeRun(np.arange(40), np.arange(40, 50), np.array([], int), 0)],
            ProbeProtocol(epochs=1),
            "classification",
            2,
        )


def test_loocv_runs_follow_operas_inner_validation_draw():
    import pandas as pd
    from sklearn.model_selection import train_test_split

    table = pd.DataFrame(
        {
            "label": np.linspace(1, 4, 40),
            "fold": [str(i) for i in range(40)],
            "subject_id": [str(i) for i in range(40)],
        }
    )
    spec = TASKS["T13"]
    runs = make_runs(spec, table, spec.protocol)
    assert len(runs) == 40 and all(len(r.test) == 1 for r in runs)
    # OPERA: np.delete the left-out row, then train_test_split(test_size=0.11, random_state=42).
    rest = np.delete(np.arange(40), 7)
    expected_train, expected_val = train_test_split(rest, test_size=0.11, random_state=42)
    assert runs[7].test.tolist() == [7]
    assert sorted(runs[7].validation.tolist()) == sorted(expected_val.tolist())
    assert sorted(runs[7].train.tolist()) == sorted(expected_train.tolist())


def test_early_stopping_stops_a_run_that_no_longer_improves():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((80, 6)).astype(np.float32)
    y = rng.normal(5, 1, 80)  # targets unrelated to the features: validation MAE cannot keep improving
    protocol = ProbeProtocol(
        epochs=64,
        batch_size=64,
        learning_rate=1e-1,
        l2_strength=1e-1,
        checkpoint_every=3,
        early_stopping_patience=5,
        early_stopping_min_delta=0.001,
        seeds=(0,),
    )
    outcome = train_linear_probes(
        x, y, [ProbeRun(np.arange(60), np.arange(60, 70), np.arange(70, 80), 0)], protocol, "regression"
    )[0]
    assert 5 <= outcome.epochs_run < 64
    assert outcome.best_epoch % 3 == 2  # only every third epoch is a checkpoint candidate


def test_a_class_absent_from_the_test_labels_is_scored_as_opera_warned_and_recorded(caplog, tmp_path):
    import json
    import logging
    from dataclasses import replace

    import pandas as pd

    from resp_audio_hf.benchmark.report import write_reports
    from resp_audio_hf.benchmark.results import BenchmarkResult, EncoderSettings
    from resp_audio_hf.benchmark.runner import score_task

    x, y = _classification_data(n=300, n_classes=5, seed=4)
    split = np.array(["train"] * 200 + ["validation"] * 40 + ["test"] * 60, dtype=object)
    y[240:][y[240:] == 4] = 0  # no COPD4 recording in the test split
    table = pd.DataFrame({"label": y, "split": split, "subject_id": [str(i) for i in range(300)]})
    protocol = ProbeProtocol(epochs=4, batch_size=32, seeds=(0, 1))
    spec = replace(TASKS["T11"], protocol=protocol)
    with caplog.at_level(logging.WARNING):
        result = score_task(spec, table, x, protocol)
    assert result.absent_classes == {"test": ["COPD4"]}
    assert "COPD4 absent from the test labels" in caplog.text

    # Independent value: scikit-learn's AUROC of each present class on the same predictions, 0 for COPD4, over 5.
    outcomes = train_linear_probes(x, y, make_runs(spec, table, protocol), protocol, "classification", 5)
    test = np.arange(240, 300)
    for outcome, run in zip(outcomes, result.runs):
        present = [roc_auc_score(y[test] == c, outcome.test_predictions[:, c]) for c in range(4)]
        assert run.test == pytest.approx(sum(present) / 5, abs=1e-9)
        assert run.test < np.mean(present)

    benchmark = BenchmarkResult("m", "f", encoder=EncoderSettings(pooling="mean", embedding_dim=24), tasks={"T11": result})
    paths = write_reports(benchmark, tmp_path)
    assert json.loads(paths["json"].read_text())["tasks"]["T11"]["absent_classes"] == {"test": ["COPD4"]}
    markdown = paths["markdown"].read_text()
    assert "T11: COPD4 absent from the test labels" in markdown and "pooling mean, size 24" in markdown


def test_mmlung_protocol_matches_operas_probe_fold_for_fold():
    """T13-T18 as OPERA runs them: LinearHeadR gets no lr, so it trains at its default 1e-4 (not the 1e-1 passed to
    linear_evaluation_mmlung), with L2 0.1, checkpoints every 3 epochs and early stopping. The reference is OPERA's loop
    written plainly, fed the same embeddings, folds and random streams."""
    from dataclasses import replace

    import pandas as pd

    rng = np.random.default_rng(13)
    x = rng.standard_normal((40, 32)).astype(np.float32)
    y = 3.0 + x[:, :4].sum(axis=1) * 0.3 + rng.normal(0, 0.2, 40)  # FVC-like litres, one recording per subject
    table = pd.DataFrame({"label": y, "fold": [str(i) for i in range(40)], "subject_id": [str(i) for i in range(40)]})
    spec = TASKS["T13"]
    runs = make_runs(spec, table, spec.protocol)[:4]
    ours = train_linear_probes(x, y, runs, spec.protocol, "regression")
    opera_protocol = replace(spec.protocol, learning_rate=1e-4)  # LinearHeadR(lr=1e-4) default
    for run, outcome in zip(runs, ours):
        reference, best_epoch = reference_probe_loop(x, y, run, opera_protocol, kind="regression")
        np.testing.assert_allclose(outcome.test_predictions, reference, rtol=1e-4, atol=1e-4)
        assert outcome.best_epoch == best_epoch


def test_standardised_probe_uses_the_training_rows_statistics_only():
    from sklearn.preprocessing import StandardScaler

    from resp_audio_hf.benchmark.probe import standardize_features

    x, y = _classification_data(n=200, dim=12, seed=3)
    x = x * np.linspace(1e-3, 50.0, 12, dtype=np.float32) + 7.0
    x[:, 5] = np.where(np.arange(200) < 120, 2.5, x[:, 5])  # constant on the training rows only
    train = np.arange(120)
    scaler = StandardScaler().fit(x[train].astype(np.float64))
    expected = (x - scaler.mean_) / np.where(scaler.var_ == 0, 1.0, np.sqrt(scaler.var_))
    np.testing.assert_allclose(standardize_features(x, train), expected, rtol=1e-5, atol=1e-5)
    # Validation/test rows never enter the statistics: changing them leaves the training rows' values alone.
    changed = x.copy()
    changed[120:] *= 1000.0
    np.testing.assert_array_equal(standardize_features(changed, train)[train], standardize_features(x, train)[train])

    # The probe with standardize_features trains exactly as OPERA's loop on features z-scored with train statistics.
    protocol = ProbeProtocol(epochs=8, batch_size=32, learning_rate=3e-3, seeds=(0, 1), standardize_features=True)
    runs = _holdout_runs(len(x), seeds=(0, 1), n_train=120, n_val=40)
    outcomes = train_linear_probes(x, y, runs, protocol, "classification", 2)
    z = standardize_features(x, runs[0].train)
    for run, outcome in zip(runs, outcomes):
        reference, best_epoch = reference_probe_loop(z, y, run, protocol)
        assert outcome.best_epoch == best_epoch
        np.testing.assert_allclose(outcome.test_predictions, reference, atol=2e-5)


def test_standardised_probe_is_blind_to_feature_scale_where_the_raw_probe_scores_chance():
    # A randomly initialised mn04 embeds at ~1e-8: OPERA's raw probe cannot separate such features (its softmax
    # outputs tie in float32), the standardised one scores as on the same features at unit scale.
    x, y = _classification_data(n=240, dim=24, seed=1)
    runs = _holdout_runs(len(x), seeds=(0, 1, 2))
    raw = ProbeProtocol(epochs=10, batch_size=32, seeds=(0, 1, 2))
    standardised = ProbeProtocol(epochs=10, batch_size=32, seeds=(0, 1, 2), standardize_features=True)
    tiny = x * np.float32(1e-8)
    raw_scores = [o.test_score for o in train_linear_probes(tiny, y, runs, raw, "classification", 2)]
    assert raw_scores == [0.5, 0.5, 0.5]
    tiny_scores = [o.test_score for o in train_linear_probes(tiny, y, runs, standardised, "classification", 2)]
    unit_scores = [o.test_score for o in train_linear_probes(x, y, runs, standardised, "classification", 2)]
    np.testing.assert_allclose(tiny_scores, unit_scores, atol=2e-3)
    assert min(tiny_scores) > 0.8
