"""OPERA's linear probe, trained for many seeds/folds at once on cached embeddings.

The protocol is OPERA's `LinearHead`/`LinearHeadR` under PyTorch Lightning: one linear layer
initialised N(0, 0.01) with zero bias; cross-entropy (classification) or MSE on a head whose output is
de-standardised with the training targets' mean and std (regression); the summed squares of the head
parameters times `l2_strength` added to the loss; Adam; gradient-norm clipping at 1.0 per run; the
learning rate multiplied by 0.97 after every epoch; the weights of the best validation epoch
(AUROC up / MAE down, considered every `checkpoint_every` epochs) are the ones tested; optional early
stopping on validation MAE.

Instead of one Python/Lightning loop per seed and per sample, all runs that share a training-set size
are stacked: their weights form one `[runs, classes, features]` tensor (`nn.Linear`'s layout, for which
both batched products read the features row by row), every mini-batch of every run is gathered with one
index operation into a buffer reused across steps, the gradients (written out analytically) and the
per-run clipping are batched tensor operations, and one call of `torch.optim.Adam`'s fused update (its
functional form) steps the stacked weights (the update is element-wise). Each run keeps its own
initialisation and shuffling stream, so the result is the same as training the runs one after another.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.optim.adam import adam as adam_update

from ..data.probe_protocols import ProbeProtocol
from ..extraction.threads import torch_threads
from .metrics import auroc_ovr_macro, mean_absolute_error

_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds this to the norm


@dataclass(frozen=True)
class ProbeRun:
    """One probe to train: row indices into the embedding matrix, and the seed.

    Attributes:
        train: indices of training rows.
        validation: indices used to pick the checkpoint (and for early stopping).
        test: indices the selected checkpoint is scored on.
        seed: seeds the initialisation and the per-epoch shuffling of this run.
        name: label for reports (`"seed 0"`, `"fold 12"`).
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    seed: int
    name: str = ""


@dataclass
class ProbeOutcome:
    """Result of one run.

    Attributes:
        name: the run's name.
        seed: its seed.
        test_score: AUROC (classification) or MAE (regression) on the test rows.
        best_validation: validation score of the selected checkpoint.
        best_epoch: 0-based epoch of the selected checkpoint (-1: no checkpoint epoch reached,
            the final weights were used).
        epochs_run: epochs trained before stopping.
        test_predictions: class probabilities `[n_test, C]` or predictions `[n_test]`.
    """

    name: str
    seed: int
    test_score: float
    best_validation: float
    best_epoch: int
    epochs_run: int
    test_predictions: np.ndarray = field(repr=False)


# Below this many multiply-adds per step, thread hand-off costs more than it saves (and on a busy
# machine OpenMP spin-waiting can make tiny batched matmuls ~100x slower).
_SINGLE_THREAD_WORK = 1 << 21


def _check_inputs(features: np.ndarray, targets: np.ndarray, runs: list[ProbeRun], kind: str, n_classes: int | None):
    if kind not in {"classification", "regression"}:
        raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    if features.ndim != 2:
        raise ValueError(f"features must be [n_samples, n_features], got shape {features.shape}")
    if not np.isfinite(features).all():
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        raise ValueError(f"features contain NaN/inf in rows {bad[:10].tolist()}; refusing to train on them")
    if len(targets) != len(features):
        raise ValueError(f"{len(targets)} targets for {len(features)} feature rows")
    if kind == "classification":
        if n_classes is None or n_classes < 2:
            raise ValueError("classification needs n_classes >= 2")
        if targets.min() < 0 or targets.max() >= n_classes:
            raise ValueError(f"class ids must lie in [0, {n_classes})")
    for run in runs:
        for part in ("train", "validation", "test"):
            if len(getattr(run, part)) == 0:
                raise ValueError(f"run {run.name or run.seed}: the {part} set is empty")
        if kind == "classification":
            for part in ("validation", "test"):
                if len(np.unique(targets[getattr(run, part)])) < 2:
                    raise ValueError(
                        f"run {run.name or run.seed}: the {part} set has a single class, so AUROC is undefined; "
                        "more recordings (or a different split) are needed."
                    )
        elif np.std(targets[run.train]) == 0:
            raise ValueError(f"run {run.name or run.seed}: all training targets are equal; cannot standardise them")


def _score(kind: str, y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Per-run validation/test score: AUROC of probabilities `[R, n, C]` or MAE of `[R, n]`."""
    if kind == "classification":
        return np.atleast_1d(auroc_ovr_macro(y, outputs))
    return np.atleast_1d(mean_absolute_error(y, outputs))


def _outputs(kind, features, theta, mean, std) -> torch.Tensor:
    """Probabilities `[R, n, C]` or de-standardised predictions `[R, n]` of every run, on per-run row sets
    `[R, n, D + 1]` or on one row set `[n, D + 1]` shared by all runs (`features` carry a trailing column of
    ones, so `theta`'s last column is the bias)."""
    if features.ndim == 2:
        # One product for all runs reads the shared rows once instead of once per run.
        runs, classes, width = theta.shape
        logits = (features @ theta.reshape(runs * classes, width).T).view(-1, runs, classes).transpose(0, 1)
    else:
        logits = torch.bmm(features, theta.transpose(1, 2))
    if kind == "classification":
        return torch.softmax(logits, dim=-1)
    return logits[..., 0] * std[:, None] + mean[:, None]


class _EvalSet:
    """Rows each run is evaluated on, gathered once (they do not change between epochs)."""

    def __init__(self, features: torch.Tensor, targets: np.ndarray, indices: list[np.ndarray]):
        self.indices = indices
        self.targets = [targets[i] for i in indices]
        same_size = len({len(i) for i in indices}) == 1
        # All runs share one set (the usual case: seeds of a hold-out task): its rows are kept once and every run is
        # scored in one call.
        self.shared = same_size and all(np.array_equal(indices[0], i) for i in indices[1:])
        if self.shared:
            self.stacked = features[torch.as_tensor(indices[0])]
        else:
            self.stacked = features[torch.as_tensor(np.stack(indices))] if same_size else None
        self.separate = None if same_size else [features[torch.as_tensor(i)] for i in indices]


def _evaluate(kind: str, evalset: _EvalSet, theta, mean, std) -> tuple[np.ndarray, list[np.ndarray]]:
    with torch.no_grad():
        if evalset.stacked is not None:
            outputs = _outputs(kind, evalset.stacked, theta, mean, std).numpy()
            per_run = list(outputs)
            if evalset.shared:
                return _score(kind, evalset.targets[0], outputs), per_run
        else:
            per_run = [
                _outputs(kind, rows[None], theta[r : r + 1], mean[r : r + 1], std[r : r + 1])[0].numpy()
                for r, rows in enumerate(evalset.separate)
            ]
    scores = np.array([float(_score(kind, y, out[None])[0]) for y, out in zip(evalset.targets, per_run)])
    return scores, per_run


def _train_group(
    features: torch.Tensor,
    targets_np: np.ndarray,
    runs: list[ProbeRun],
    protocol: ProbeProtocol,
    kind: str,
    n_classes: int,
) -> list[ProbeOutcome]:
    """Train runs that share one training-set size, stacked along a leading run dimension."""
    n_runs, dim = len(runs), features.shape[1]
    out_dim = n_classes if kind == "classification" else 1
    targets = torch.as_tensor(targets_np, dtype=torch.long if kind == "classification" else torch.float32)
    generators = [torch.Generator().manual_seed(int(run.seed)) for run in runs]
    # Weight and bias live in one tensor theta = [W, b] acting on features with a column of ones, so every
    # step is one batched matmul forward and one backward. OPERA's weights_init: W ~ N(0, 0.01) drawn in
    # nn.Linear's [out, in] layout, b = 0. The L2 term covers both, as OPERA's sum over head parameters.
    augmented = torch.cat([features, torch.ones(features.shape[0], 1)], dim=1)
    theta = torch.zeros(n_runs, out_dim, dim + 1)
    for r, generator in enumerate(generators):
        theta[r, :, :dim] = torch.randn(out_dim, dim, generator=generator) * 0.01
    train_index = torch.as_tensor(np.stack([run.train for run in runs]), dtype=torch.long)
    n_train = train_index.shape[1]
    batch_size = min(protocol.batch_size or n_train, n_train)
    # Mini-batches are gathered into one reused buffer: a fresh allocation of this size per step is page-faulted in
    # anew each time, which costs about as much as the gather itself.
    batch_buffer = torch.empty(n_runs * batch_size, dim + 1)
    if kind == "regression":
        train_targets = np.stack([targets_np[run.train] for run in runs]).astype(np.float64)
        mean = torch.as_tensor(train_targets.mean(axis=1), dtype=torch.float32)
        std = torch.as_tensor(train_targets.std(axis=1), dtype=torch.float32)
    else:
        mean = std = torch.zeros(n_runs)

    # One Adam over the stacked weights is every run's own Adam: its update is element-wise, so the runs never mix.
    # torch.optim.Adam's functional form with its fused kernel, on state allocated here once: the Optimizer wrapper's
    # per-step bookkeeping costs as much as the kernel for small probes. The per-run gradient is clipped before it,
    # as clip_grad_norm_ does; the defaults (betas, eps) are torch.optim.Adam's.
    exp_avg, exp_avg_sq = torch.zeros_like(theta), torch.zeros_like(theta)
    adam_step = torch.tensor(0.0)
    learning_rate = protocol.learning_rate
    l2 = protocol.l2_strength
    higher_better = kind == "classification"
    best_theta = theta.clone()
    best_val = np.full(n_runs, -np.inf if higher_better else np.inf)
    best_epoch = np.full(n_runs, -1)
    active = np.ones(n_runs, dtype=bool)
    stopped_at = np.full(n_runs, protocol.epochs)
    stop_best = np.full(n_runs, np.inf)
    stop_wait = np.zeros(n_runs, dtype=int)
    validation = _EvalSet(augmented, targets_np, [run.validation for run in runs])

    for epoch in range(protocol.epochs):
        permutation = torch.stack([torch.randperm(n_train, generator=g) for g in generators])
        order = torch.gather(train_index, 1, permutation)
        for start in range(0, n_train, batch_size):
            rows = order[:, start : start + batch_size]
            x = batch_buffer[: rows.numel()].view(*rows.shape, dim + 1)  # [R, b, D + 1]
            torch.index_select(augmented, 0, rows.reshape(-1), out=x.view(-1, dim + 1))
            logits = torch.bmm(x, theta.transpose(1, 2))
            if kind == "classification":
                grad_logits = torch.softmax(logits, dim=-1)
                grad_logits.scatter_add_(-1, targets[rows].unsqueeze(-1), torch.full((*rows.shape, 1), -1.0))
            else:
                prediction = logits[..., 0] * std[:, None] + mean[:, None]
                grad_logits = (2.0 * (prediction - targets[rows]) * std[:, None]).unsqueeze(-1)
            grad_logits /= rows.shape[1]
            grad = torch.bmm(grad_logits.transpose(1, 2), x).add_(theta, alpha=2 * l2)  # [R, C, D + 1]
            # clip_grad_norm_ per run: one global norm over that run's weight and bias.
            norm = grad.pow(2).sum(dim=(1, 2)).sqrt()
            grad.mul_((protocol.grad_clip / (norm + _CLIP_EPS)).clamp(max=1.0)[:, None, None])
            adam_update(
                [theta],
                [grad],
                [exp_avg],
                [exp_avg_sq],
                [],
                [adam_step],
                fused=True,
                amsgrad=False,
                beta1=0.9,
                beta2=0.999,
                lr=learning_rate,
                weight_decay=0.0,
                eps=1e-8,
                maximize=False,
            )
        learning_rate *= protocol.lr_decay  # ExponentialLR, without its per-step wrapper

        val_scores, _ = _evaluate(kind, validation, theta, mean, std)
        if (epoch + 1) % protocol.checkpoint_every == 0:
            improved = (val_scores > best_val) if higher_better else (val_scores < best_val)
            improved &= active
            if improved.any():
                best_theta[torch.as_tensor(improved)] = theta[torch.as_tensor(improved)]
                best_val[improved] = val_scores[improved]
                best_epoch[improved] = epoch
        if protocol.early_stopping_patience is not None:
            better = val_scores < stop_best - protocol.early_stopping_min_delta
            stop_best = np.where(better & active, val_scores, stop_best)
            stop_wait = np.where(better, 0, stop_wait + 1)
            newly_stopped = active & (stop_wait >= protocol.early_stopping_patience)
            stopped_at[newly_stopped] = epoch + 1
            active &= ~newly_stopped
            if not active.any():
                break

    # Runs that never reached a checkpoint epoch are tested with their final weights.
    never = best_epoch < 0
    if never.any():
        best_theta[torch.as_tensor(never)] = theta[torch.as_tensor(never)]
    test_scores, test_outputs = _evaluate(
        kind, _EvalSet(augmented, targets_np, [run.test for run in runs]), best_theta, mean, std
    )
    return [
        ProbeOutcome(
            run.name or f"seed {run.seed}",
            int(run.seed),
            float(test_scores[r]),
            float(best_val[r]),
            int(best_epoch[r]),
            int(stopped_at[r]),
            test_outputs[r],
        )
        for r, run in enumerate(runs)
    ]


def standardize_features(features: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """`features` z-scored with the per-feature mean and standard deviation (ddof 0) of `train_rows` only,
    computed in float64; a feature constant on those rows is only centred. Returns float32."""
    train = np.asarray(features[train_rows], dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return ((np.asarray(features, dtype=np.float64) - mean) / std).astype(np.float32)


def train_linear_probes(
    features: np.ndarray,
    targets: np.ndarray,
    runs: list[ProbeRun],
    protocol: ProbeProtocol,
    kind: str = "classification",
    n_classes: int | None = None,
) -> list[ProbeOutcome]:
    """Train one OPERA linear probe per run (seed or fold), vectorised over runs.

    Args:
        features: `[n_samples, n_features]` embeddings (finite).
        targets: class ids (classification) or real targets (regression), one per row.
        runs: the probes to train; runs with equal training-set sizes are trained together.
        protocol: hyper-parameters (see [`~resp_audio_hf.data.probe_protocols.ProbeProtocol`]); with
            `standardize_features` each run sees the features z-scored with its own training rows' statistics.
        kind: `"classification"` or `"regression"`.
        n_classes: number of classes (classification).

    Returns:
        One [`ProbeOutcome`] per run, in the order of `runs`.
    """
    features = np.asarray(features, dtype=np.float32)
    targets = np.asarray(targets)
    runs = [
        ProbeRun(
            np.asarray(r.train, dtype=np.int64),
            np.asarray(r.validation, dtype=np.int64),
            np.asarray(r.test, dtype=np.int64),
            int(r.seed),
            r.name,
        )
        for r in runs
    ]
    _check_inputs(features, targets, runs, kind, n_classes)
    with warnings.catch_warnings():
        # A memory-mapped embedding cache is read-only; the features are only ever read (and copied) here.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        feature_tensor = torch.from_numpy(features)
    # Standardised runs are grouped by their training rows, whose statistics transform the features they share.
    groups: dict[tuple, list[int]] = {}
    for position, run in enumerate(runs):
        key = (len(run.train), run.train.tobytes() if protocol.standardize_features else b"")
        groups.setdefault(key, []).append(position)
    outcomes: list[ProbeOutcome | None] = [None] * len(runs)
    for positions in groups.values():
        n_train = len(runs[positions[0]].train)
        work = (
            len(positions) * min(protocol.batch_size or n_train, n_train) * features.shape[1] * max(n_classes or 1, 1)
        )
        group_features = feature_tensor
        if protocol.standardize_features:
            group_features = torch.from_numpy(standardize_features(features, runs[positions[0]].train))
        with torch_threads(1 if work < _SINGLE_THREAD_WORK else None):
            group = _train_group(group_features, targets, [runs[p] for p in positions], protocol, kind, n_classes or 1)
        for position, outcome in zip(positions, group):
            outcomes[position] = outcome
    return outcomes
