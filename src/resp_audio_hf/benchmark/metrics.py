"""Metrics of the OPERA benchmark (macro one-vs-rest AUROC, MAE, mean reciprocal rank across models), the
ICBHI 2017 challenge's sensitivity, specificity and score, and the SPRSound challenge's score."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def auroc_ovr_macro(y_true, scores) -> float | np.ndarray:
    """Macro-averaged one-vs-rest AUROC exactly as OPERA computes it (torchmetrics' `AUROC(task="multiclass")`).

    Computed with the rank-sum (Mann-Whitney) statistic, ties sharing their average rank, which is
    exactly the area under the ROC curve. For two classes with probabilities summing to one the
    result equals the binary AUROC of the positive class.

    A class absent from `y_true` counts as 0 in the average, as in torchmetrics (whose ROC curve
    of a class without positives has a true-positive rate of zero, pinned in OPERA's environment at
    torchmetrics 1.3.1); scikit-learn refuses such input and averaging only the present classes
    gives a higher number. [`absent_classes`] names them, so that callers can say so.

    Args:
        y_true: `[n]` integer class ids.
        scores: `[n, C]` class scores (probabilities or logits), or `[..., n, C]` to score many
            runs at once (e.g. one row per seed), or `[n]` positive-class scores for a binary task.

    Returns:
        A float, or an array with the leading dimensions of `scores`.
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
    `normal_class` predicted `normal_class` / all normal cycles; score = their mean.

    Args:
        y_true: `[n]` true class ids.
        y_pred: `[n]` predicted class ids.
        normal_class: id of the normal class.

    Returns:
        `{"sensitivity", "specificity", "icbhi_score"}`.
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


#: How Poor Quality records enter the SPRSound score's sensitivity (Task 2): `"excluded"` (they are neither normal
#: nor abnormal items: only the adventitious classes make up SE) or `"abnormal"` (they are abnormal items like CAS
#: or DAS, right only when predicted Poor Quality). See [`sprsound_scores`].
SPRSOUND_POOR_QUALITY_CONVENTIONS = ("excluded", "abnormal")


def sprsound_scores(
    y_true, y_pred, *, normal_class: int = 0, poor_quality_class: int | None = None, poor_quality: str = "excluded"
) -> dict[str, float]:
    """The SPRSound challenge's score of predicted classes (IEEE BioCAS 2022/2023 Grand Challenge on Respiratory Sound
    Classification; Zhang et al., BioCAS 2022).

    SP = items of `normal_class` predicted `normal_class` / all normal items; SE = abnormal items predicted as
    their own class / all abnormal items (a Fine Crackle predicted Wheeze is wrong); AS = (SE + SP) / 2;
    HS = 2 SE SP / (SE + SP) (0 when both are 0); score = (AS + HS) / 2.

    Which items are *abnormal* for the record-level tasks is not written in the organisers' public material: the
    repository's READMEs only name SE, SP, AS and HS, and the submission document's formulas are not machine
    readable. `poor_quality` chooses: `"excluded"` (default) leaves Poor Quality items out of SE and SP, as the
    participating team HUJH511/BioCAS-2023-Grand_Challenge computes it (`src/utils/metric.py`: SE over the classes
    from id 2 on for Task 2); `"abnormal"` counts them as abnormal items. Either way a Normal or adventitious item
    predicted Poor Quality is wrong.

    Args:
        y_true: `[n]` true class ids.
        y_pred: `[n]` predicted class ids.
        normal_class: id of Normal (0 in every task of the challenge).
        poor_quality_class: id of Poor Quality (1 in Tasks 2-1 and 2-2), `None` for the event-level tasks.
        poor_quality: `"excluded"` or `"abnormal"` (ignored without `poor_quality_class`).

    Returns:
        `{"sensitivity", "specificity", "average_score", "harmonic_score", "score"}`.
    """
    if poor_quality not in SPRSOUND_POOR_QUALITY_CONVENTIONS:
        raise ValueError(f"poor_quality must be one of {SPRSOUND_POOR_QUALITY_CONVENTIONS}, got {poor_quality!r}")
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_pred.size} predictions for {y_true.size} labels")
    normal = y_true == normal_class
    abnormal = ~normal
    if poor_quality_class is not None and poor_quality == "excluded":
        abnormal &= y_true != poor_quality_class
    if not normal.any() or not abnormal.any():
        raise ValueError(
            "the SPRSound score needs both Normal and abnormal items among the labels "
            f"({int(normal.sum())} Normal, {int(abnormal.sum())} abnormal)"
        )
    correct = y_true == y_pred
    sensitivity = float(correct[abnormal].mean())
    specificity = float(correct[normal].mean())
    average = (sensitivity + specificity) / 2
    harmonic = 0.0 if sensitivity + specificity == 0 else 2 * sensitivity * specificity / (sensitivity + specificity)
    return {
        "sensitivity": sensitivity,
        "specificity": specificity,
        "average_score": average,
        "harmonic_score": harmonic,
        "score": (average + harmonic) / 2,
    }


def absent_classes(y_true, n_classes: int) -> list[int]:
    """Class ids in `[0, n_classes)` that never occur in `y_true` (each counts as 0 in [`auroc_ovr_macro`])."""
    present = set(np.asarray(y_true).astype(np.int64).ravel().tolist())
    return [c for c in range(n_classes) if c not in present]


def mean_absolute_error(y_true, y_pred) -> float | np.ndarray:
    """MAE over the last axis (`[..., n]` predictions give one value per leading index)."""
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
    `scipy.stats.rankdata(method="min")`), and each model's reciprocal ranks are averaged.

    Args:
        scores: `{model: {task: score}}`.
        higher_is_better: `{task: bool}` (AUROC: `True`; MAE: `False`).
        tasks: tasks to rank on; default: every task that all models have a score for.

    Returns:
        `{model: mrr}`.
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
