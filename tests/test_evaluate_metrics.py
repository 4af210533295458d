"""OPERA's metrics as `evaluate` modules (resp_audio_hf/metrics): they load offline from the package's folders and
give the benchmark's vectorised metrics (resp_audio_hf.benchmark.metrics), and `training/finetune.py` scores with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

from resp_audio_hf.benchmark import metrics as bench  # noqa: E402
from resp_audio_hf.metrics import METRIC_NAMES, load_metric, metric_path  # noqa: E402


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    # A private modules cache: nothing from an earlier run or another checkout is reused.
    cache = tmp_path_factory.mktemp("evaluate_modules")
    return {name: evaluate.load(metric_path(name), cache_dir=str(cache)) for name in METRIC_NAMES}


def _random_classification(seed: int, n: int, n_classes: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    labels[:n_classes] = np.arange(n_classes)  # every class present
    logits = rng.standard_normal((n, n_classes)) + 0.8 * np.eye(n_classes)[labels]
    return labels, logits


@pytest.mark.parametrize("seed, n, n_classes", [(0, 60, 2), (1, 97, 3), (2, 200, 5), (3, 31, 4)])
def test_auroc_module_equals_benchmark_auroc(modules, seed, n, n_classes):
    labels, logits = _random_classification(seed, n, n_classes)
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for scores in (logits, probabilities):
        expected = bench.auroc_ovr_macro(labels, scores)
        assert modules["opera_auroc"].compute(predictions=scores, references=labels)["roc_auc"] == pytest.approx(
            expected, abs=1e-12
        )
    # Streamed in batches, as Trainer's evaluation loop or a user's loop would feed it.
    for start in range(0, n, 16):
        modules["opera_auroc"].add_batch(predictions=logits[start : start + 16], references=labels[start : start + 16])
    assert modules["opera_auroc"].compute()["roc_auc"] == pytest.approx(bench.auroc_ovr_macro(labels, logits), abs=1e-12)


def test_auroc_module_edge_cases(modules):
    from sklearn.metrics import roc_auc_score

    auroc = modules["opera_auroc"]
    # Binary task with one positive-class score per example, many ties: sklearn's binary AUROC as independent reference.
    labels = np.array([0, 0, 1, 1, 0, 1, 1, 0, 1, 0])
    scores = np.array([0.2, 0.5, 0.5, 0.9, 0.5, 0.1, 0.5, 0.2, 0.9, 0.3])
    value = auroc.compute(predictions=scores, references=labels)["roc_auc"]
    assert value == pytest.approx(roc_auc_score(labels, scores)) == pytest.approx(bench.auroc_ovr_macro(labels, scores))
    # Perfect and reversed rankings.
    assert auroc.compute(predictions=[[0.9, 0.1], [0.1, 0.9]], references=[0, 1])["roc_auc"] == 1.0
    assert auroc.compute(predictions=[[0.1, 0.9], [0.9, 0.1]], references=[0, 1])["roc_auc"] == 0.0
    # A class with scores but no test example: whatever OPERA's rule, the module gives the benchmark's value.
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.random.default_rng(5).random((6, 3))
    assert auroc.compute(predictions=scores, references=labels)["roc_auc"] == pytest.approx(
        bench.auroc_ovr_macro(labels, scores), abs=1e-12
    )
    # Bad input fails as the benchmark does, with the same message.
    with pytest.raises(ValueError, match="NaN or infinite"):
        auroc.compute(predictions=[[0.1, np.nan], [0.4, 0.6]], references=[0, 1])
    with pytest.raises(ValueError, match="single class"):
        auroc.compute(predictions=[[0.1, 0.9], [0.4, 0.6]], references=[1, 1])


def test_mae_module_equals_benchmark_mae(modules):
    rng = np.random.default_rng(7)
    truth, predicted = rng.normal(20, 5, 123), rng.normal(20, 5, 123)
    value = modules["opera_mae"].compute(predictions=predicted, references=truth)["mae"]
    assert value == pytest.approx(bench.mean_absolute_error(truth, predicted), abs=1e-12)
    assert value == pytest.approx(np.abs(truth - predicted).mean(), abs=1e-12)
    assert modules["opera_mae"].compute(predictions=[3.0], references=[3.0])["mae"] == 0.0


def test_mrr_module_equals_benchmark_mrr(modules):
    rng = np.random.default_rng(11)
    models = ["opera-ct", "clap", "resp-passt", "audiomae"]
    tasks = [f"T{i}" for i in range(1, 13)]
    higher = {task: i % 4 != 3 for i, task in enumerate(tasks)}  # some MAE tasks
    scores = {m: {t: float(rng.random()) for t in tasks} for m in models}
    scores["clap"]["T2"] = scores["audiomae"]["T2"]  # a tie
    expected = bench.mean_reciprocal_rank(scores, higher)
    computed = modules["opera_mrr"].compute(
        scores=[[scores[m][t] for m in models] for t in tasks],
        higher_is_better=[higher[t] for t in tasks],
        models=models,
        tasks=tasks,
    )["mrr"]
    assert computed.keys() == expected.keys()
    for model in models:
        assert computed[model] == pytest.approx(expected[model], abs=1e-12)
    # Hand-checked: a wins the AUROC task, b the MAE task (lower is better).
    assert modules["opera_mrr"].compute(
        scores=[[0.8, 0.7], [2.0, 1.0]], higher_is_better=[True, False], models=["a", "b"]
    )["mrr"] == {"a": 0.75, "b": 0.75}
    with pytest.raises(ValueError, match="T1 has 1 scores for 2 models"):
        modules["opera_mrr"].compute(scores=[[0.5]], higher_is_better=[True], models=["a", "b"], tasks=["T1"])


def test_metric_paths_are_folders_of_the_package():
    for name in METRIC_NAMES:
        folder = Path(metric_path(name))
        assert (folder / f"{name}.py").is_file()
    with pytest.raises(ValueError, match="shipped metrics"):
        metric_path("accuracy")
    assert load_metric("opera_mae").compute(predictions=[1.0, 3.0], references=[2.0, 2.0])["mae"] == 1.0


def test_finetune_compute_metrics_scores_with_the_modules():
    from transformers import EvalPrediction

    from resp_audio_hf.training.finetune import make_compute_metrics
    labels, logits = _random_classification(3, 50, 3)
    metrics = make_compute_metrics("single_label_classification")(EvalPrediction(predictions=logits, label_ids=labels))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert metrics["auroc"] == pytest.approx(bench.auroc_ovr_macro(labels, probabilities), abs=1e-12)
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == labels).mean())
    truth = np.linspace(10, 30, 20)
    predicted = (truth + np.sin(truth))[:, None]
    metrics = make_compute_metrics("regression")(EvalPrediction(predictions=predicted, label_ids=truth))
    assert metrics == {"mae": pytest.approx(np.abs(np.sin(truth)).mean(), abs=1e-12)}
