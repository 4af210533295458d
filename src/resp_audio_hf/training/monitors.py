"""Monitors that show whether a pre-training run learns: collapse measures and a validation linear probe.

Every `monitor.every_steps` steps (and before the first), pre-training embeds a fixed set of validation clips with the
encoder in evaluation mode and records in `metrics.jsonl`:

- `effective_rank`: the centred effective rank of the clips' pooled embeddings (Roy and Vetterli 2007: the exponential
  of the entropy of the normalised singular values). A collapsed encoder, whose embeddings vary along one direction,
  scores about 1; a random-start ViT about 40 and AudioSet mn04 about 100 on SPRSound.
- `between_clip_variance_share`: of the total variance of embeddings of two fixed halves of every clip, the share
  that lies between clips (the rest is between the halves of one clip). An encoder that only encodes the position or
  loudness of a crop scores near 0; one that encodes the recording near 1.
- `<task>_auroc`: a linear probe (standardised features, L2 logistic regression) scored out of fold by a
  patient-grouped stratified K-fold over the monitor's clips (S1: record labels, S2: event labels). The clips come
  from the patients SPRSound's official protocol holds out of its train part for validation: never the test parts.

Selection and early stopping read only these figures (`MonitorConfig.select_on`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class MonitorConfig:
    """
    The validation monitors of a pre-training run.

    Args:
        every_steps: optimizer steps between two evaluations (0 disables the monitors).
        data_root: folder holding the SPRSound corpus in its official layout (train part needed: the monitor uses
            its validation patients).
        tasks: registry tasks whose validation clips are probed (`S1` records, `S2` events).
        split: the task split the clips come from (`validation`: patients held out of the train part).
        max_clips_per_task: at most this many clips per task (a fixed, seeded, label-stratified subset).
        rank_clips: clips of the first task used for the effective rank and the variance share.
        max_seconds: clips are cut to their first `max_seconds` (bounded cost per evaluation).
        folds: folds of the patient-grouped probe.
        seed: seed of the subset and the folds.
        batch_size: clips per forward pass.
        hold_out_from_corpora: labels of training corpora (with a `subject_id` column) from which every row of the
            monitor's patients is removed, so the run never trains on the clips it is judged on.
        select_on: metric the best checkpoint is chosen on (`mean_auroc`, the mean of the task AUROCs).
        patience: evaluations without a better `select_on` before the run stops early (`None`: never).
    """

    every_steps: int = 0
    data_root: str | None = None
    tasks: list[str] = field(default_factory=lambda: ["S1", "S2"])
    split: str = "validation"
    max_clips_per_task: int = 300
    rank_clips: int = 200
    max_seconds: float = 10.0
    folds: int = 5
    seed: int = 0
    batch_size: int = 16
    hold_out_from_corpora: list[str] = field(default_factory=list)
    select_on: str = "mean_auroc"
    patience: int | None = None

    def __post_init__(self):
        if self.every_steps < 0:
            raise ValueError(f"monitor.every_steps must be >= 0, got {self.every_steps}.")
        if self.every_steps and self.data_root is None:
            raise ValueError("monitor.every_steps > 0 needs monitor.data_root (the SPRSound corpus with its train part).")
        if self.folds < 2:
            raise ValueError(f"monitor.folds must be at least 2, got {self.folds}.")

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0


def effective_rank(embeddings: np.ndarray) -> float:
    """Centred effective rank of `[clips, features]`: `exp(entropy(s / sum(s)))` of the centred singular values.

    0 when every row is the same (nothing left after centring)."""
    matrix = np.asarray(embeddings, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ValueError("effective_rank: the embeddings hold NaN or Inf values.")
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    singular = np.linalg.svd(centred, compute_uv=False)
    total = singular.sum()
    if total <= 1e-12 * max(1.0, np.abs(matrix).max()):
        return 0.0
    share = singular[singular > 0] / total
    return float(math.exp(-(share * np.log(share)).sum()))


def between_clip_variance_share(first: np.ndarray, second: np.ndarray) -> float:
    """
    Share of the total variance of the pooled embeddings `[clips, features]` of two crops of each clip that lies
    between clips: `sum var(clip means) / sum var(all crops)` over features. 0 when there is no variance at all.
    """
    crops = np.stack([np.asarray(first, np.float64), np.asarray(second, np.float64)])  # [2, clips, features]
    total = crops.reshape(-1, crops.shape[-1]).var(axis=0).sum()
    if total <= 0:
        return 0.0
    between = crops.mean(axis=0).var(axis=0).sum()
    return float(between / total)


def grouped_probe_auroc(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> float:
    """Out-of-fold AUROC of a standardised L2 logistic regression, folds grouped by patient and stratified by label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros(len(labels), dtype=np.float64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features, labels, groups):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(features[train], labels[train])
        scores[test] = probe.predict_proba(features[test])[:, 1]
    return float(roc_auc_score(labels, scores))


@dataclass
class MonitorClips:
    """One task's fixed validation clips: log-mel features (each at its own length), labels and patients."""

    task_id: str
    features: list[torch.Tensor]
    labels: np.ndarray
    groups: np.ndarray


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _stratified_subset(table, limit: int, seed: int):
    if len(table) <= limit:
        return table
    rng = np.random.default_rng(seed)
    picked = []
    for _, rows in table.groupby("label"):
        share = max(1, round(limit * len(rows) / len(table)))
        picked.extend(rng.choice(rows.index.to_numpy(), size=min(share, len(rows)), replace=False).tolist())
    return table.loc[sorted(picked)]


def load_monitor_clips(config: MonitorConfig, feature_extractor) -> tuple[list[MonitorClips], set[str]]:
    """The monitor's clips per task, featurised once, and the patients they come from."""
    from resp_audio_hf.data.audio import load_audio
    from resp_audio_hf.data.tasks import load_task

    sampling_rate = feature_extractor.sampling_rate
    clips, patients = [], set()
    for task_id in config.tasks:
        task = load_task(task_id, config.data_root, verify_audio=False)
        if task.split_mode != "official":
            raise ValueError(
                f"The pre-training monitor needs SPRSound's train part under {config.data_root} (task {task_id} is "
                f"in split mode {task.split_mode!r}); the test parts are never used for monitoring."
            )
        table = task.table[task.table["split"] == config.split].reset_index(drop=True)
        table = _stratified_subset(table, config.max_clips_per_task, config.seed)
        features = []
        has_times = "start_s" in table and "end_s" in table
        for row in table.itertuples():
            # Events are decoded as the benchmark decodes them (`load_audio` with the event's start and end).
            start = float(row.start_s) if has_times and not _missing(row.start_s) else None
            end = float(row.end_s) if has_times and not _missing(row.end_s) else None
            segment, _ = load_audio(row.audio, sampling_rate, start, end)
            segment = segment[: int(config.max_seconds * sampling_rate)]
            minimum = feature_extractor.hop_length * 4  # a few frames at least: shorter events are tiled, as crops are
            if len(segment) < minimum:
                segment = np.tile(segment, math.ceil(minimum / len(segment)))
            inputs = feature_extractor(segment, sampling_rate=sampling_rate, return_tensors="pt")
            features.append(inputs["input_values"][0])
        clips.append(
            MonitorClips(task_id, features, table["label"].to_numpy(np.int64), table["subject_id"].astype(str).to_numpy())
        )
        patients.update(task.table.loc[task.table["split"] == config.split, "subject_id"].astype(str))
        logger.info("Monitor %s: %d %s clips of %d patients.", task_id, len(table), config.split, table["subject_id"].nunique())
    return clips, patients


@torch.no_grad()
def embed_clips(encoder, features: list[torch.Tensor], batch_size: int, device) -> np.ndarray:
    """Pooled embeddings `[clips, dim]` of featurised clips, padded per batch with an attention mask."""
    rows = []
    for start in range(0, len(features), batch_size):
        batch = features[start : start + batch_size]
        length = max(item.shape[0] for item in batch)
        values = torch.zeros(len(batch), length, batch[0].shape[1])
        mask = torch.zeros(len(batch), length, dtype=torch.long)
        for index, item in enumerate(batch):
            values[index, : item.shape[0]] = item
            mask[index, : item.shape[0]] = 1
        output = encoder(input_values=values.to(device), attention_mask=mask.to(device))
        rows.append(output.pooler_output.float().cpu().numpy())
    embeddings = np.concatenate(rows)
    if not np.isfinite(embeddings).all():
        raise FloatingPointError("The encoder gave NaN or Inf embeddings on the monitor's validation clips.")
    return embeddings


class RepresentationMonitor:
    """Embeds the fixed validation clips and returns the monitor figures (see the module docstring)."""

    def __init__(self, config: MonitorConfig, clips: list[MonitorClips]):
        self.config, self.clips = config, clips

    def __call__(self, encoder, device) -> dict[str, float]:
        was_training = encoder.training
        encoder.eval()
        try:
            figures: dict[str, float] = {}
            for task in self.clips:
                embeddings = embed_clips(encoder, task.features, self.config.batch_size, device)
                figures[f"{task.task_id}_auroc"] = grouped_probe_auroc(
                    embeddings, task.labels, task.groups, self.config.folds, self.config.seed
                )
            first = self.clips[0].features[: self.config.rank_clips]
            whole = embed_clips(encoder, first, self.config.batch_size, device)
            figures["effective_rank"] = effective_rank(whole)
            halves = [
                [clip[: max(1, clip.shape[0] // 2)] for clip in first],
                [clip[clip.shape[0] // 2 :] if clip.shape[0] > 1 else clip for clip in first],
            ]
            figures["between_clip_variance_share"] = between_clip_variance_share(
                *(embed_clips(encoder, half, self.config.batch_size, device) for half in halves)
            )
            figures["mean_auroc"] = float(np.mean([figures[f"{task.task_id}_auroc"] for task in self.clips]))
            return figures
        finally:
            encoder.train(was_training)


__all__ = [
    "MonitorConfig",
    "MonitorSelection",
    "RepresentationMonitor",
    "between_clip_variance_share",
    "effective_rank",
    "embed_clips",
    "grouped_probe_auroc",
    "load_monitor_clips",
]


class MonitorSelection:
    """
    The best evaluation so far of one monitor figure (higher is better) and the evaluations since; its state is
    saved in checkpoints so a resumed run keeps selecting and counting patience as the uninterrupted one would.
    """

    def __init__(self, metric: str, patience: int | None):
        self.metric, self.patience = metric, patience
        self.best_step: int | None = None
        self.best_value: float | None = None
        self.since_best = 0

    def update(self, step: int, figures: dict[str, float]) -> bool:
        """Record an evaluation; True when it is the best so far."""
        if self.metric not in figures:
            raise KeyError(f"monitor.select_on={self.metric!r} is not a monitor figure; choose one of {sorted(figures)}.")
        value = figures[self.metric]
        if self.best_value is None or value > self.best_value:
            self.best_step, self.best_value, self.since_best = step, value, 0
            return True
        self.since_best += 1
        return False

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.since_best >= self.patience

    def state_dict(self) -> dict:
        return {"best_step": self.best_step, "best_value": self.best_value, "since_best": self.since_best}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.best_step, self.best_value, self.since_best = state["best_step"], state["best_value"], state["since_best"]
