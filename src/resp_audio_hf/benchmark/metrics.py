"""Metrics of the OPERA benchmark (macro one-vs-rest AUROC, MAE, mean reciprocal rank across models) and the
ICBHI 2017 challenge's sensitivity, specificity and score."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def auroc_ovr_macro(y_true, scores) -> float | np.ndarray:
    """Macro-averaged one-vs-rest AUROC exactly as OPERA computes it (torchmetrics' ``AUROC(task="multiclass")``).

    Computed with the rank-sum (Mann-Whitney) statistic, ties sharing their average rank, which is
    exactly the area under the ROC curve. For two classes with probabilities summing to one the
    result equals the binary AUROC of the positive class.

    A class absent from ``y_true`` counts as 0 in the average, as in torchmetrics (whose ROC curve
    of a class without positives has a true-positive rate of zero, pinned in OPERA's environment at
    torchmetrics 1.3.1); scikit-learn refuses such input and averaging only the present classes
    gives a higher number. :func:`absent_classes` names them, so that callers can say so.

    Args:
        y_true: ``[n]`` integer class ids.
        scores: ``[n, C]`` class scores (probabilities or logits), or ``[..., n, C]`` to score many
            runs at once (e.g. one row per seed), or ``[n]`` positive-class scores for a binary task.

    Returns:
        A float, or an array with the leading dimensions of ``scores``.
    """
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = np.stack([-s, s], axis=-1)
    if s.shape[-2] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[-2]} rows for {y.shape[0]} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values; AUROC is undefined")
    n_classes = s.shape[-1]
    if y.min(initial=0) < 0 or y.max(initial=0) >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}); got range [{y.min()}, {y.max()}]")
    if len(np.unique(y)) < 2:
        raise ValueError("AUROC is undefined: y_true contains a single class")
    per_class = []
    for c in range(n_classes):
        positive = y == c
        n_pos = int(positive.sum())
        n_neg = y.size - n_pos
        if n_pos == 0:
            per_class.append(np.zeros(s.shape[:-2]))
            continue
        ranks = rankdata(s[..., c], axis=-1)
        per_class.append((ranks[..., positive].sum(axis=-1) - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
    result = np.mean(per_class, axis=0)
    return float(result) if np.ndim(result) == 0 else result


def icbhi_scores(y_true, y_pred, normal_class: int = 0) -> dict[str, float]:
    """The ICBHI 2017 challenge's metrics of predicted classes (Rocha et al., Physiol. Meas. 2019).

    Sensitivity = correctly classified abnormal cycles / all abnormal cycles (an abnormal cycle counts only when
    its own class is predicted, e.g. a "both" cycle predicted "crackle" is wrong); specificity = cycles of
    ``normal_class`` predicted ``normal_class`` / all normal cycles; score = their mean.

    Args:
        y_true: ``[n]`` true class ids.
        y_pred: ``[n]`` predicted class ids.
        normal_class: id of the normal class.

    Returns:
        ``{"sensitivity", "specificity", "icbhi_score"}``.
    """
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_pred.size} predictions for {y_true.size} labels")
    normal = y_true == normal_class
    if normal.all() or not normal.any():
        raise ValueError("the ICBHI score needs both normal and abnormal cycles among the labels")
    correct = y_true == y_pred
    sensitivity = float(correct[~normal].mean())
    specificity = float(correct[normal].mean())
    return {"sensitivity": sensitivity, "specificity": specificity, "icbhi_score": (sensitivity + specificity) / 2}

def absent_classes(y_true, n_classes: int) -> list[int]:
    """Class ids in ``[0, n_classes)`` that never occur in ``y_true`` (each counts as 0 in :func:`auroc_ovr_macro`)."""
    present = set(np.asarray(y_true).astype(np.int64).ravel().tolist())
    return [c for c in range(n_classes) if c not in present]


def mean_absolute_error(y_true, y_pred) -> float | np.ndarray:
    """MAE over the last axis (``[..., n]`` predictions give one value per leading index)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    result = np.abs(y_pred - y_true).mean(axis=-1)
    return float(result) if np.ndim(result) == 0 else result


def mean_reciprocal_rank(
    scores: Mapping[str, Mapping[str, float]],
    higher_is_better: Mapping[str, bool],
    tasks: list[str] | None = None,
) -> dict[str, float]:
    """OPERA's mean reciprocal rank of several models over tasks.

    On every task the models are ranked (1 = best; ties share the lowest rank, as
    ``scipy.stats.rankdata(method="min")``), and each model's reciprocal ranks are averaged.

    Args:
        scores: ``{model: {task: score}}``.
        higher_is_better: ``{task: bool}`` (AUROC: ``True``; MAE: ``False``).
        tasks: tasks to rank on; default: every task that all models have a score for.

    Returns:
        ``{model: mrr}``.
    """
    from scipy.stats import rankdata

    models = list(scores)
    if not models:
        return {}
    if tasks is None:
        tasks = [t for t in higher_is_better if all(t in scores[m] and scores[m][t] is not None for m in models)]
    if not tasks:
        raise ValueError("No task has a score for every model; cannot rank.")
    reciprocal = np.zeros((len(tasks), len(models)))
    for i, task in enumerate(tasks):
        values = np.array([scores[m][task] for m in models], dtype=np.float64)
        ranks = rankdata(-values if higher_is_better[task] else values, method="min")
        reciprocal[i] = 1.0 / ranks
    return {m: float(v) for m, v in zip(models, reciprocal.mean(axis=0))}
