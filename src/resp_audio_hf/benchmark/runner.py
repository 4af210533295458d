"""Score an encoder on benchmark tasks: embeddings -> OPERA linear probes -> results and reports."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data._io import stable_hash
from ..data.corpora import BuildReport, is_missing
from ..data.tasks import (
    OPERA_TASK_IDS,
    ProbeProtocol,
    TaskData,
    TaskSpec,
    get_task_spec,
    load_task,
    resolve_task_ids,
    with_protocol,
)
from .embeddings import AudioEncoder, FileClipDataset, extract_embeddings
from .metrics import absent_classes
from .probe import ProbeOutcome, ProbeRun, train_linear_probes

logger = logging.getLogger(__name__)


@dataclass
class TaskResult:
    """Scores of one encoder on one task.

    Attributes:
        task_id, name, metric: the task.
        higher_is_better: ``True`` for AUROC, ``False`` for MAE.
        mean, std: over seeds (hold-out tasks) or folds (cross-validated tasks); ``np.std`` (ddof 0)
            as OPERA reports.
        scores: one test score per run.
        runs: per-run details (seed/fold, best epoch, validation score).
        counts: recordings per split / label that were used.
        protocol: the probe hyper-parameters.
        data_report: summary of missing/corrupt/excluded files.
        embedding_dim: size of the embeddings.
        absent_classes: class names missing from the ``test`` / ``validation`` labels of some run (each scores
            AUROC 0 in OPERA's macro average, which is reported; empty when every class is present).
        seconds: wall time of extraction + probing.
        skipped_recordings: ``{"path", "reason"}`` (plus ``segment_s`` for event items) for every
            recording of the task that could not be used: missing, present twice, undecodable,
            refused by the feature extractor or embedded as NaN/inf.
    """

    task_id: str
    name: str
    metric: str
    higher_is_better: bool
    mean: float
    std: float
    scores: list[float]
    runs: list[dict]
    counts: dict
    protocol: dict
    data_report: str
    embedding_dim: int
    absent_classes: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    skipped_recordings: list[dict] = field(default_factory=list)


def make_runs(spec: TaskSpec, table, protocol: ProbeProtocol) -> list[ProbeRun]:
    """Probe runs of a task table: one per seed (hold-out) or per left-out fold (LOOCV/LOSO)."""
    if spec.evaluation == "holdout":
        split = table["split"].to_numpy()
        parts = {name: np.flatnonzero(split == name) for name in ("train", "validation", "test")}
        for name, rows in parts.items():
            if len(rows) == 0:
                raise ValueError(f"{spec.task_id}: no available recording in the {name} split; cannot evaluate.")
        return [
            ProbeRun(parts["train"], parts["validation"], parts["test"], seed, f"seed {seed}")
            for seed in protocol.seeds
        ]

    from sklearn.model_selection import train_test_split

    folds = [f for f in dict.fromkeys(table["fold"].tolist()) if f not in ("", None)]
    if len(folds) < 2:
        raise ValueError(f"{spec.task_id}: {len(folds)} subject(s) available; leave-one-subject-out needs at least 2.")
    fold_column = table["fold"].to_numpy()
    runs = []
    for fold in folds:
        test = np.flatnonzero(fold_column == fold)
        rest = np.flatnonzero(fold_column != fold)
        # OPERA: train_test_split(X_train, y_train, test_size=f, random_state=42) on the remaining rows in order.
        train, validation = train_test_split(
            rest, test_size=protocol.inner_validation_fraction, random_state=protocol.inner_validation_seed
        )
        for seed in protocol.seeds:
            runs.append(ProbeRun(np.sort(train), np.sort(validation), test, seed, f"fold {fold}"))
    return runs


def _label_array(spec: TaskSpec, table) -> np.ndarray:
    if spec.kind == "classification":
        return table["label"].to_numpy().astype(np.int64)
    return table["label"].to_numpy().astype(np.float64)


def unusable_recordings(report: BuildReport) -> list[dict]:
    """``{"path", "reason"}`` for each recording the task's build report could not use."""
    root = report.root or "the data root"
    entries, named = [], set()
    for item in report.missing:
        name = Path(str(item).split("#", 1)[0]).name
        copies = report.duplicates.get(name)
        if copies:
            named.add(name)
        reason = _duplicate_reason(copies) if copies else f"not found under {root}"
        entries.append({"path": str(item), "reason": reason})
    entries += [{"path": entry["path"], "reason": entry["reason"]} for entry in report.corrupt]
    entries += [
        {"path": name, "reason": _duplicate_reason(copies)}
        for name, copies in report.duplicates.items()
        if name not in named
    ]
    return entries


def _duplicate_reason(copies: list[str]) -> str:
    listed = ", ".join(copies[:10]) + (f", ... ({len(copies) - 10} more)" if len(copies) > 10 else "")
    return f"present {len(copies)} times with different contents ({listed}); none is used"


def _log_skipped(task_id: str, entries: list[dict]) -> None:
    for entry in entries:
        segment = f" [{entry['segment_s'][0]}-{entry['segment_s'][1]} s]" if "segment_s" in entry else ""
        logger.warning("%s: skipped %s%s: %s", task_id, entry["path"], segment, entry["reason"])


def evaluate_task(
    encoder: AudioEncoder,
    task: TaskData,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    max_duration: float | None = None,
    protocol: ProbeProtocol | None = None,
    progress: bool = True,
) -> TaskResult:
    """Embed a task's available recordings and train/test its linear probes.

    Recordings that cannot be used are named with the reason in the log (WARNING) and in the result's
    ``skipped_recordings``; the task is scored on the others.
    """
    started = time.perf_counter()
    spec = task.spec
    protocol = protocol or spec.protocol
    skipped = unusable_recordings(task.report)
    _log_skipped(spec.task_id, skipped)
    table = task.available
    if table.empty:
        raise ValueError(f"{spec.task_id}: no recording is available ({task.report.summary()}).")
    dataset = FileClipDataset(
        table["audio"].tolist(),
        encoder.sampling_rate,
        starts=table["start_s"].tolist() if "start_s" in table.columns else None,
        ends=table["end_s"].tolist() if "end_s" in table.columns else None,
        max_duration=max_duration,
    )
    features, failures = extract_embeddings(
        encoder,
        dataset,
        cache_dir=cache_dir,
        cache_extra={"task": spec.task_id, "labels": stable_hash(table["label"].tolist(), length=32)},
        batch_size=batch_size,
        num_workers=num_workers,
        progress=progress,
        desc=f"{spec.task_id} embeddings",
        return_failures=True,
    )
    if failures:
        failed = []
        for index, reason in failures.items():
            entry = {"path": dataset.paths[index], "reason": reason}
            start, end = dataset.starts[index], dataset.ends[index]
            if not (is_missing(start) and is_missing(end)):
                entry["segment_s"] = [None if is_missing(start) else start, None if is_missing(end) else end]
            failed.append(entry)
        _log_skipped(spec.task_id, failed)
        skipped += failed
        keep = np.setdiff1d(np.arange(len(table)), list(failures))
        table, features = table.iloc[keep].reset_index(drop=True), features[keep]
    result = score_task(spec, table, features, protocol, data_report=task.report.summary())
    result.skipped_recordings = skipped
    result.seconds = time.perf_counter() - started
    return result


def score_task(
    spec: TaskSpec, table, features: np.ndarray, protocol: ProbeProtocol | None = None, data_report: str = ""
) -> TaskResult:
    """Train and test a task's probes on precomputed ``features`` (row i = table row i)."""
    protocol = protocol or spec.protocol
    if len(features) != len(table):
        raise ValueError(f"{spec.task_id}: {len(features)} embeddings for {len(table)} table rows")
    targets = _label_array(spec, table)
    runs = make_runs(spec, table, protocol)
    n_classes = len(spec.class_names) if spec.kind == "classification" else None
    absent = _find_absent_classes(spec, targets, runs)
    outcomes: list[ProbeOutcome] = train_linear_probes(features, targets, runs, protocol, spec.kind, n_classes)
    scores = [o.test_score for o in outcomes]
    if spec.evaluation != "holdout" and len(protocol.seeds) > 1:
        # Several seeds per fold: average them per fold so the spread is across subjects, as OPERA reports.
        per_fold: dict[str, list[float]] = {}
        for outcome in outcomes:
            per_fold.setdefault(outcome.name, []).append(outcome.test_score)
        scores = [float(np.mean(v)) for v in per_fold.values()]
    return TaskResult(
        task_id=spec.task_id,
        name=spec.name,
        metric=spec.metric,
        higher_is_better=spec.higher_is_better,
        mean=float(np.mean(scores)),
        std=float(np.std(scores)),
        scores=[float(s) for s in scores],
        runs=[
            {
                "name": o.name,
                "seed": o.seed,
                "test": o.test_score,
                "best_validation": o.best_validation,
                "best_epoch": o.best_epoch,
                "epochs_run": o.epochs_run,
            }
            for o in outcomes
        ],
        counts=TaskData(spec, table, None).counts(),
        protocol=asdict(protocol),
        data_report=data_report,
        embedding_dim=int(features.shape[1]),
        absent_classes=absent,
    )


def _find_absent_classes(spec: TaskSpec, targets: np.ndarray, runs: list[ProbeRun]) -> dict[str, list[str]]:
    """Classes missing from some run's test or validation labels, with a warning: OPERA's macro AUROC (reported
    here) counts each as 0, so the score is lower than an average over the classes present."""
    if spec.kind != "classification":
        return {}
    absent = {}
    for part in ("test", "validation"):
        ids = sorted({c for run in runs for c in absent_classes(targets[getattr(run, part)], len(spec.class_names))})
        if ids:
            absent[part] = [spec.class_names[c] for c in ids]
            logger.warning(
                "%s: class(es) %s absent from the %s labels; OPERA's macro AUROC (reported) counts each as 0, so it "
                "is lower than the average over the classes present.",
                spec.task_id,
                ", ".join(absent[part]),
                part,
            )
    return absent


@dataclass
class BenchmarkResult:
    """Everything ``resp-audio-hf bench`` writes to ``results.json``."""

    model: str
    model_fingerprint: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "settings": self.settings,
            "tasks": {k: asdict(v) for k, v in self.tasks.items()},
            "unavailable": dict(self.unavailable),
            "failed": dict(self.failed),
        }


def encoder_settings(encoder: AudioEncoder) -> dict:
    """What results record about how the encoder embeds: its rate, pooling and embedding width (``None`` where the
    model does not state them: other transformers models use their own ``pooler_output`` or the time-average)."""
    return {
        "sampling_rate": encoder.sampling_rate,
        "pooling": encoder.pooling,
        "embedding_dim": encoder.embedding_dim,
    }


def run_benchmark(
    encoder: AudioEncoder,
    tasks: str | list[str],
    data_root: str | os.PathLike | None,
    *,
    opera_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    max_duration: float | None = None,
    protocol_overrides: dict | None = None,
    verify_audio: bool = True,
    progress: bool = True,
) -> BenchmarkResult:
    """Evaluate ``encoder`` on ``tasks`` (``"T7,T10"``, ``"all"``...).

    A task whose corpus or OPERA files are absent is recorded in ``unavailable``, a task that fails
    during evaluation in ``failed`` (both with the reason); the other tasks still run.
    """
    from ..data.opera_files import OperaFileError

    task_ids = resolve_task_ids(tasks)
    result = BenchmarkResult(
        model=encoder.model_id,
        model_fingerprint=encoder.fingerprint(),
        settings={
            "data_root": str(data_root) if data_root else None,
            "batch_size": batch_size,
            "max_duration": max_duration,
            "protocol_overrides": protocol_overrides or {},
            **encoder_settings(encoder),
        },
    )
    for task_id in task_ids:
        spec = get_task_spec(task_id)
        try:
            task = load_task(task_id, data_root, opera_dir=opera_dir, verify_audio=verify_audio)
        except (FileNotFoundError, OperaFileError) as error:
            result.unavailable[task_id] = str(error)
            logger.warning("%s skipped: %s", task_id, error)
            continue
        except Exception as error:  # a malformed metadata file must not discard the other tasks
            result.failed[task_id] = f"{type(error).__name__}: {error}"
            logger.exception("%s: building the task table failed", task_id)
            continue
        if protocol_overrides:
            task = TaskData(with_protocol(spec, **protocol_overrides), task.table, task.report)
        try:
            result.tasks[task_id] = evaluate_task(
                encoder,
                task,
                cache_dir=cache_dir,
                batch_size=batch_size,
                num_workers=num_workers,
                max_duration=max_duration,
                progress=progress,
            )
        except Exception as error:  # one task's failure must not discard the others' results
            result.failed[task_id] = f"{type(error).__name__}: {error}"
            logger.exception("%s failed", task_id)
    return result


__all__ = [
    "OPERA_TASK_IDS",
    "BenchmarkResult",
    "TaskResult",
    "encoder_settings",
    "evaluate_task",
    "make_runs",
    "run_benchmark",
]
