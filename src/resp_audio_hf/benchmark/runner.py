"""Score an encoder on benchmark tasks: embeddings -> OPERA linear probes -> results and reports."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..data.build_report import BuildReport
from ..data.corpus_table import is_missing
from ..data.file_io import stable_hash
from ..data.probe_protocols import ProbeProtocol
from ..data.task_spec import TaskData, TaskSpec
from ..data.tasks import OPERA_TASK_IDS, get_task_spec, load_task, resolve_task_ids, with_protocol
from ..extraction.clips import FileClipDataset
from ..extraction.encoder import AudioEncoder
from ..extraction.extract import extract_embeddings
from .arguments import BenchmarkArguments
from .metrics import absent_classes, auroc_ovr_macro, icbhi_scores, mean_absolute_error, sprsound_scores
from .probe import ProbeOutcome, ProbeRun, train_linear_probes
from .results import BenchmarkResult, EncoderSettings, FailedTask, MetricSummary, RunResult, TaskResult

logger = logging.getLogger(__name__)


def make_runs(
    spec: TaskSpec, table, protocol: ProbeProtocol, test_splits: tuple[str, ...] = ("test",)
) -> list[ProbeRun]:
    """Probe runs of a task table: one per seed (hold-out) or per left-out fold (LOOCV/LOSO).

    A hold-out run is tested on the rows of every split in `test_splits` together; `score_task` scores each
    split on its own. Raises `ValueError` naming the task and the split when a split has no row.
    """
    if spec.evaluation == "holdout":
        split = table["split"].to_numpy()
        parts = {name: np.flatnonzero(split == name) for name in ("train", "validation", *test_splits)}
        for name, rows in parts.items():
            if len(rows) == 0:
                raise ValueError(f"{spec.task_id}: no available recording in the {name} split; cannot evaluate.")
        test = np.flatnonzero(np.isin(split, list(test_splits)))
        return [ProbeRun(parts["train"], parts["validation"], test, seed, f"seed {seed}") for seed in protocol.seeds]

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


def check_task_splits(task: TaskData, protocol: ProbeProtocol | None = None) -> list[ProbeRun]:
    """The task's probe runs on its available rows, or a `ValueError` naming the task, the split, the split mode
    and (classification) the split's class counts when a split is empty or its labels cannot be probed or scored
    ([`check_split_labels`]). Called before any embedding is extracted, so a task that cannot be scored costs
    nothing."""
    table = task.available
    try:
        runs = make_runs(task.spec, table, protocol or task.spec.protocol, task.test_splits)
        check_split_labels(task.spec, table, runs, task.test_splits)
    except ValueError as error:
        raise ValueError(
            f"{error} Split mode {task.split_mode!r}; nothing was extracted. Data: {task.report.summary()}"
        ) from None
    return runs


_ICBHI_METRICS = ("icbhi_score", "sensitivity", "specificity", "sprsound_score")
# How the sensitivity/specificity scores are named in messages.
SCORE_TITLES = {"icbhi_score": "ICBHI score", "sprsound_score": "SPRSound score"}


def check_split_labels(spec: TaskSpec, table, runs: list[ProbeRun], test_splits: tuple[str, ...] = ("test",)) -> None:
    """Raise a `ValueError` naming the task, the split and its class counts when a run's labels cannot be probed
    or scored: a classification probe needs two classes to train on and two in validation (the checkpoint is
    chosen by validation AUROC); each test split needs two classes for AUROC, and normal (class 0) and abnormal
    labels for the ICBHI score, sensitivity and specificity. A regression probe needs training targets that are
    not all equal (they are standardised). A class absent from a split that has two others is allowed: OPERA's
    macro AUROC counts it as 0, with a warning (`_find_absent_classes`)."""
    targets = _label_array(spec, table)
    metrics = (spec.metric, *spec.extra_metrics)
    split = table["split"].to_numpy() if "split" in table.columns else None
    checked = set()
    for run in runs:
        parts = [("train", run.train), ("validation", run.validation)]
        if spec.evaluation == "holdout":
            parts += [(name, run.test[split[run.test] == name]) for name in test_splits]
        else:
            parts.append(("test", run.test))
        fold = "" if spec.evaluation == "holdout" else f" of {run.name}"
        for name, rows in parts:
            key = (name, fold)
            if key in checked:  # hold-out runs share their splits
                continue
            checked.add(key)
            labels = targets[rows]
            if spec.kind != "classification":
                if name == "train" and len(labels) and np.std(labels) == 0:
                    raise ValueError(
                        f"{spec.task_id}: every target of the train split{fold} is {labels[0]:g} ({len(labels)} "
                        "recordings); a regression probe cannot learn from equal targets."
                    )
                continue
            present = set(np.unique(labels).tolist())
            problem = None
            if name in ("train", "validation") and len(present) < 2:
                use = "learn from" if name == "train" else "choose its checkpoint (by AUROC) on"
                problem = f"the probe cannot {use} a single class"
            elif name not in ("train", "validation"):
                if "auroc" in metrics and len(present) < 2:
                    problem = "AUROC is undefined for a single class"
                elif any(m in metrics for m in _ICBHI_METRICS) and (0 not in present or present == {0}):
                    problem = (
                        f"the {SCORE_TITLES.get(spec.metric, spec.metric)} needs both {spec.class_names[0]!r} and "
                        "abnormal labels (its sensitivity "
                        "and specificity are undefined otherwise)"
                    )
            if problem:
                counts = ", ".join(
                    f"{class_name}: {int(np.sum(labels == c))}" for c, class_name in enumerate(spec.class_names)
                )
                raise ValueError(
                    f"{spec.task_id}: the {name} split{fold} has classes {{{counts}}}; {problem}; cannot evaluate."
                )


def compute_test_metrics(spec: TaskSpec, y_true: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """`spec.metric` and `spec.extra_metrics` of one run's test predictions (class probabilities `[n, C]`
    or regression outputs `[n]`); ICBHI metrics use the predicted class (arg-max), with class 0 as normal."""
    values: dict[str, float] = {}
    for name in (spec.metric, *spec.extra_metrics):
        if name == "auroc":
            values[name] = float(auroc_ovr_macro(y_true, predictions))
        elif name == "mae":
            values[name] = float(mean_absolute_error(y_true, predictions))
        elif name in ("icbhi_score", "sensitivity", "specificity"):
            values[name] = icbhi_scores(y_true, np.argmax(predictions, axis=-1))[name]
        elif name == "sprsound_score":  # Poor Quality (record-level tasks) left out of SE, the default convention
            names = list(spec.class_names)
            poor_quality = names.index("Poor Quality") if "Poor Quality" in names else None
            values[name] = sprsound_scores(y_true, np.argmax(predictions, axis=-1), poor_quality_class=poor_quality)[
                "score"
            ]
        else:
            raise ValueError(f"{spec.task_id}: unknown metric {name!r}")
    return values


def _label_array(spec: TaskSpec, table) -> np.ndarray:
    if spec.kind == "classification":
        return table["label"].to_numpy().astype(np.int64)
    return table["label"].to_numpy().astype(np.float64)


def unusable_recordings(report: BuildReport) -> list[dict]:
    """`{"path", "reason"}` for each recording the task's build report could not use: one entry per recording,
    also where the task's items are annotated segments of it (`<file>#<n>`, e.g. ICBHI cycles, SPRSound events),
    whose number the reason gives."""
    root = report.root or "the data root"
    segments: dict[str, list[str]] = {}
    for item in report.missing:
        segments.setdefault(str(item).split("#", 1)[0], []).append(str(item))
    entries, named = [], set()
    for recording, items in segments.items():
        key = report.duplicate_of(recording)
        named.add(key)
        reason = _duplicate_reason(report.duplicates[key]) if key else f"not found under {root}"
        if items != [recording]:
            reason += f"; its {len(items)} annotated segment(s) ({items[0]} to {items[-1]}) are not used"
        entries.append({"path": recording, "reason": reason})
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


@dataclass
class EmbeddedTask:
    """A task's usable rows and their embeddings (row i of `features` = row i of `table`).

    Attributes:
        table: the available rows that were embedded (rows whose clip failed are dropped).
        features: `[len(table), dim]` embeddings.
        skipped: `{"path", "reason"}` (plus `segment_s`) of every recording of the task that could not be used.
    """

    table: object
    features: np.ndarray
    skipped: list[dict]


def embed_task(
    encoder: AudioEncoder,
    task: TaskData,
    *,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    max_duration: float | None = None,
    protocol: ProbeProtocol | None = None,
    progress: bool = True,
) -> EmbeddedTask:
    """Embed a task's available recordings (through the embedding cache), after checking that its splits can be
    scored. Recordings that cannot be used are named with the reason in the log (WARNING) and in `skipped`."""
    spec = task.spec
    skipped = unusable_recordings(task.report)
    _log_skipped(spec.task_id, skipped)
    table = task.available
    if table.empty:
        raise ValueError(f"{spec.task_id}: no recording is available ({task.report.summary()}).")
    check_task_splits(task, protocol or spec.protocol)
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
    return EmbeddedTask(table, features, skipped)


def evaluate_task(
    encoder: AudioEncoder, task: TaskData, *, protocol: ProbeProtocol | None = None, **embedding_options
) -> TaskResult:
    """Embed a task's available recordings and train/test its linear probes; `embedding_options` are those of
    [`embed_task`] (`cache_dir`, `batch_size`, `num_workers`, `max_duration`, `progress`).

    Recordings that cannot be used are named with the reason in the log (WARNING) and in the result's
    `skipped_recordings`; the task is scored on the others.
    """
    started = time.perf_counter()
    protocol = protocol or task.spec.protocol
    embedded = embed_task(encoder, task, protocol=protocol, **embedding_options)
    return _score_embedded(task, embedded, protocol, started)


def _score_embedded(task: TaskData, embedded: EmbeddedTask, protocol: ProbeProtocol, started: float) -> TaskResult:
    result = score_task(
        task.spec,
        embedded.table,
        embedded.features,
        protocol,
        data_report=task.report.summary(),
        split_mode=task.split_mode,
        test_splits=task.test_splits,
    )
    result.skipped_recordings = embedded.skipped
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class HeldOutPredictions:
    """Every run's predictions on the test rows of a hold-out task (all runs share them), for paired comparisons.

    Attributes:
        rows: `[n]` positions of the test rows in the scored table.
        labels: `[n]` their labels.
        splits: `[n]` the test split of each row (`"test"`, or SPRSound's `"test_inter"`/`"test_intra"`).
        predictions: `[runs, n, C]` class probabilities (classification) or `[runs, n]` predictions.
        seeds: `[runs]` seed of each run.
    """

    rows: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    predictions: np.ndarray
    seeds: list[int]


def score_task(
    spec: TaskSpec,
    table,
    features: np.ndarray,
    protocol: ProbeProtocol | None = None,
    data_report: str = "",
    *,
    split_mode: str = "default",
    test_splits: tuple[str, ...] = ("test",),
    return_predictions: bool = False,
):
    """Train and test a task's probes on precomputed `features` (row i = table row i).

    Each run's checkpoint is scored on every split of `test_splits` separately (hold-out tasks); the first is the
    headline `mean`/`std`/`scores`. With `return_predictions` (hold-out tasks) returns
    `(TaskResult, HeldOutPredictions)`, the runs' test predictions for [`~resp_audio_hf.benchmark.paired.paired_bootstrap`].
    """
    protocol = protocol or spec.protocol
    if len(features) != len(table):
        raise ValueError(f"{spec.task_id}: {len(features)} embeddings for {len(table)} table rows")
    targets = _label_array(spec, table)
    runs = make_runs(spec, table, protocol, test_splits)
    check_split_labels(spec, table, runs, test_splits)  # the table may have lost rows whose embedding failed
    n_classes = len(spec.class_names) if spec.kind == "classification" else None
    if spec.evaluation != "holdout":
        test_splits = ("test",)
    # For each run, which of its test rows belong to each test split (cross-validated tasks: one "test" split).
    masks = []
    for run in runs:
        if spec.evaluation == "holdout":
            run_split = table["split"].to_numpy()[run.test]
            masks.append({name: run_split == name for name in test_splits})
        else:
            masks.append({"test": np.ones(len(run.test), dtype=bool)})
    parts = {"validation": [run.validation for run in runs]}
    parts.update({name: [run.test[m[name]] for run, m in zip(runs, masks)] for name in test_splits})
    absent = _find_absent_classes(spec, targets, parts)
    outcomes: list[ProbeOutcome] = train_linear_probes(features, targets, runs, protocol, spec.kind, n_classes)
    per_run = [
        {
            name: compute_test_metrics(spec, targets[run.test][mask], outcome.test_predictions[mask])
            for name, mask in run_masks.items()
        }
        for run, outcome, run_masks in zip(runs, outcomes, masks)
    ]
    # Several seeds per fold (cross-validated tasks): average them per fold so the spread is across subjects, as
    # OPERA reports.
    groups: dict[str, list[int]] = {}
    for position, outcome in enumerate(outcomes):
        key = outcome.name if spec.evaluation != "holdout" else str(position)
        groups.setdefault(key, []).append(position)
    test_results = {}
    for name in test_splits:
        test_results[name] = {}
        for metric in (spec.metric, *spec.extra_metrics):
            values = [float(np.mean([per_run[p][name][metric] for p in group])) for group in groups.values()]
            test_results[name][metric] = MetricSummary(float(np.mean(values)), float(np.std(values)), values)
    headline = test_results[test_splits[0]][spec.metric]
    result = TaskResult(
        task_id=spec.task_id,
        name=spec.name,
        metric=spec.metric,
        **asdict(headline),  # mean, std and scores
        runs=[
            RunResult(
                name=o.name,
                seed=o.seed,
                test=metrics[test_splits[0]][spec.metric],
                test_metrics=metrics,
                best_validation=o.best_validation,
                best_epoch=o.best_epoch,
                epochs_run=o.epochs_run,
            )
            for o, metrics in zip(outcomes, per_run)
        ],
        counts=TaskData(spec, table, None).counts(),
        protocol=asdict(protocol),
        data_report=data_report,
        embedding_dim=int(features.shape[1]),
        absent_classes=absent,
        split_mode=split_mode,
        test_results=test_results,
    )
    if not return_predictions:
        return result
    if spec.evaluation != "holdout":
        raise ValueError(f"{spec.task_id}: test predictions are returned for hold-out tasks only")
    test_rows = runs[0].test
    predictions = HeldOutPredictions(
        rows=test_rows,
        labels=targets[test_rows],
        splits=table["split"].to_numpy()[test_rows],
        predictions=np.stack([o.test_predictions for o in outcomes]),
        seeds=[o.seed for o in outcomes],
    )
    return result, predictions


def _find_absent_classes(
    spec: TaskSpec, targets: np.ndarray, parts: dict[str, list[np.ndarray]]
) -> dict[str, list[str]]:
    """Classes missing from some run's labels of a part (`validation` or a test split; `parts` holds each run's
    rows), with a warning: OPERA's macro AUROC (reported here) counts each as 0, so the score is lower than an
    average over the classes present."""
    if spec.kind != "classification":
        return {}
    absent = {}
    for part in sorted(parts, key=lambda name: name == "validation"):
        ids = sorted({c for rows in parts[part] for c in absent_classes(targets[rows], len(spec.class_names))})
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


def encoder_settings(encoder: AudioEncoder) -> EncoderSettings:
    """What results record about how the encoder embeds."""
    return EncoderSettings(encoder.sampling_rate, encoder.pooling, encoder.embedding_dim)


def run_benchmark(encoder: AudioEncoder, arguments: BenchmarkArguments) -> BenchmarkResult:
    """Evaluate `encoder` on `arguments.tasks` (`"T7,T10"`, `"all"`...), as `arguments` say; the result
    records them.

    A task whose corpus or OPERA files are absent is recorded in `unavailable` (with the reason), a task that
    fails in `failed` (a [`FailedTask`]: the error and the recordings skipped so far); the other tasks still
    run. Every task is built and its splits checked ([`check_task_splits`]) before any embedding is extracted,
    so a task that cannot be scored is reported at once instead of after the other tasks' extraction.
    """
    from ..data.opera_files import OperaFileError

    task_ids = resolve_task_ids(arguments.tasks)
    protocol_overrides = arguments.protocol_overrides
    result = BenchmarkResult(
        model=encoder.model_id,
        model_fingerprint=encoder.fingerprint(),
        arguments=arguments,
        encoder=encoder_settings(encoder),
    )
    ready: dict[str, TaskData] = {}
    for task_id in task_ids:
        spec = get_task_spec(task_id)
        try:
            task = load_task(
                task_id, arguments.data_root, opera_dir=arguments.opera_dir, verify_audio=not arguments.no_verify_audio
            )
        except (FileNotFoundError, OperaFileError) as error:
            result.unavailable[task_id] = str(error)
            logger.warning("%s skipped: %s", task_id, error)
            continue
        except Exception as error:  # a malformed metadata file must not discard the other tasks
            result.failed[task_id] = FailedTask(f"{type(error).__name__}: {error}")
            logger.exception("%s: building the task table failed", task_id)
            continue
        if protocol_overrides:
            task = replace(task, spec=with_protocol(spec, **protocol_overrides))
        try:
            check_task_splits(task)
        except ValueError as error:
            result.failed[task_id] = FailedTask(f"{type(error).__name__}: {error}", unusable_recordings(task.report))
            logger.error("%s", error)
            continue
        ready[task_id] = task
    for task_id, task in ready.items():
        started = time.perf_counter()
        skipped = unusable_recordings(task.report)
        try:
            embedded = embed_task(
                encoder,
                task,
                cache_dir=arguments.cache_dir,
                batch_size=arguments.batch_size,
                num_workers=arguments.num_workers,
                max_duration=arguments.max_duration,
                progress=not arguments.quiet,
            )
            skipped = embedded.skipped
            result.tasks[task_id] = _score_embedded(task, embedded, task.spec.protocol, started)
        except Exception as error:  # one task's failure must not discard the others' results
            result.failed[task_id] = FailedTask(f"{type(error).__name__}: {error}", skipped)
            logger.exception("%s failed", task_id)
    return result


__all__ = [
    "OPERA_TASK_IDS",
    "EmbeddedTask",
    "HeldOutPredictions",
    "check_split_labels",
    "check_task_splits",
    "compute_test_metrics",
    "embed_task",
    "encoder_settings",
    "evaluate_task",
    "make_runs",
    "run_benchmark",
]
