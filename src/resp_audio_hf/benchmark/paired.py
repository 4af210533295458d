"""Paired comparison of two encoders on identical splits: a bootstrap confidence interval over test patients.

The seed spread of a linear probe says how much the probe's training varies; it says nothing about how much the score
would move on another draw of patients, which on a test set of a few hundred recordings is several hundredths. Both
models' probes are scored on the same test rows, so their difference can be resampled jointly: each bootstrap draws
the test *patients* with replacement (all of a drawn patient's rows come along, as many times as the patient is
drawn), scores every seed of both models on that draw, and takes the mean over seeds of model A minus the mean over
seeds of model B. The percentile interval of those differences is the confidence interval; the point estimate is the
same difference on the full test set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .metrics import auroc_ovr_macro


@dataclass(frozen=True)
class PairedComparison:
    """Score of A minus score of B, each averaged over its seeds, with a bootstrap interval.

    Attributes:
        difference: on the full test set.
        ci_low, ci_high: percentile bounds of the bootstrap differences.
        confidence: level of the interval (0.95).
        n_resamples: bootstrap draws used (draws that lacked a class are left out, see `n_discarded`).
        n_discarded: draws left out because a class was absent from them (AUROC undefined).
        n_groups: test patients (resampling units).
        n_rows: test rows.
        seed: seed of the draws.
    """

    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    n_discarded: int
    n_groups: int
    n_rows: int
    seed: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def _auroc_per_run(y_true: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    return np.atleast_1d(auroc_ovr_macro(y_true, predictions))


def paired_bootstrap(
    y_true,
    predictions_a,
    predictions_b,
    groups,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray] = _auroc_per_run,
) -> PairedComparison:
    """Bootstrap over `groups` (patient ids) of the difference between two models' mean test scores.

    Args:
        y_true: `[n]` test labels.
        predictions_a, predictions_b: `[seeds, n, C]` test predictions of every seed of each model (class
            probabilities; seeds may differ in number), row `i` of both being test row `i`.
        groups: `[n]` patient id of each test row (the resampling unit; use the row index when rows are
            independent).
        n_resamples: bootstrap draws.
        seed: seeds the draws (`numpy.random.default_rng`).
        confidence: level of the percentile interval.
        score: `(labels [m], predictions [runs, m, C]) -> [runs]` scores (default: OPERA's macro AUROC).
    """
    y = np.asarray(y_true)
    a = np.asarray(predictions_a, dtype=np.float64)
    b = np.asarray(predictions_b, dtype=np.float64)
    groups = np.asarray(groups)
    n = len(y)
    if a.ndim < 2 or b.ndim < 2 or a.shape[1] != n or b.shape[1] != n or len(groups) != n:
        raise ValueError(
            f"predictions must be [seeds, {n}, ...] for {n} labels and groups; got {a.shape}, {b.shape}, "
            f"{len(groups)} groups"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    stacked = np.concatenate([a, b], axis=0)
    split = len(a)

    def difference(rows) -> float:
        scores = score(y[rows], stacked[:, rows])
        return float(scores[:split].mean() - scores[split:].mean())

    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    n_classes_present = len(np.unique(y))
    rng = np.random.default_rng(seed)
    differences, discarded = [], 0
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(unique), len(unique))
        rows = np.concatenate([members[g] for g in drawn])
        if len(np.unique(y[rows])) < n_classes_present:
            discarded += 1
            continue
        differences.append(difference(rows))
    if not differences:
        raise ValueError("every bootstrap draw lacked a class; too few test patients for a confidence interval")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return PairedComparison(
        difference=difference(np.arange(n)),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        n_resamples=len(differences),
        n_discarded=discarded,
        n_groups=len(unique),
        n_rows=n,
        seed=seed,
    )


__all__ = ["PairedComparison", "paired_bootstrap"]
