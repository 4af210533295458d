"""The typed record of a `resp-audio-hf bench` run, from the scores to `results.json` and back.

* `METRICS` (from `resp_audio_hf.data.metric_specs`) - every metric the benchmark reports; each task result
  reads its headline metric's spec there.
* [`TaskResult`], [`FailedTask`], [`BenchmarkResult`] - what `results.json` holds.
* [`load_results`] - read a `results.json` of any schema version.

Schema versions of `results.json`:

* 1 (no `schema_version` key; written until 2026-11): `settings` held `data_root`, `batch_size`,
  `max_duration`, `protocol_overrides` and the encoder's `sampling_rate`, `pooling` and `embedding_dim`.
  Read with `arguments=None` (the command line was not recorded) and `encoder` from `settings`; the probe
  protocol each task ran with stays in the task's `protocol`.
* 2: `arguments` is the whole [`~resp_audio_hf.benchmark.arguments.BenchmarkArguments`] of the command and
  `encoder` the encoder's [`EncoderSettings`]; the task entries are unchanged.

Only the standard library is imported, so the model-card path reads results without the benchmark's extras.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..data.metric_specs import METRICS, MetricSpec
from .arguments import BenchmarkArguments

SCHEMA_VERSION = 2


class ResultsFormatError(ValueError):
    """A `results.json` that is not what `bench` writes (the message names the task and field)."""


@dataclass
class MetricSummary:
    """One metric on one test split over the probe runs: `mean` and `std` (`np.std`, ddof 0, as OPERA
    reports) of `scores`, one per seed (hold-out tasks) or per fold (cross-validated tasks)."""

    mean: float
    std: float
    scores: list[float]


@dataclass
class RunResult:
    """One probe run of a task.

    Attributes:
        name: `"seed 0"` (hold-out) or `"fold <subject>"` (cross-validated).
        seed: the probe's seed.
        test: the headline metric on the first test split.
        test_metrics: `{test split: {metric: value}}`.
        best_validation: validation score of the kept checkpoint.
        best_epoch: its epoch.
        epochs_run: epochs trained (fewer with early stopping).
    """

    name: str
    seed: int
    test: float
    test_metrics: dict[str, dict[str, float]]
    best_validation: float
    best_epoch: int
    epochs_run: int


@dataclass
class TaskResult:
    """Scores of one encoder on one task.

    Attributes:
        task_id, name, metric: the task and its headline metric (a `METRICS` key).
        mean, std: of `metric` on the headline test split (the first of `test_results`) over seeds (hold-out
            tasks) or folds (cross-validated tasks); `np.std` (ddof 0) as OPERA reports.
        scores: one headline test score per run (per fold for cross-validated tasks).
        runs: per-run details.
        counts: recordings per split / label that were used.
        protocol: the probe hyper-parameters (`ProbeProtocol` as a dict).
        data_report: summary of missing/corrupt/excluded files.
        embedding_dim: size of the embeddings.
        absent_classes: class names missing from the `test` / `validation` labels of some run (each scores
            AUROC 0 in OPERA's macro average, which is reported; empty when every class is present).
        seconds: wall time of extraction + probing.
        split_mode: which partition was used (see [`~resp_audio_hf.data.task_spec.TaskData`]).
        test_results: `{test split: {metric: MetricSummary}}` for every test split (SPRSound's official mode:
            `test_inter` and `test_intra`) and every metric (`metric` and the task's extras).
        skipped_recordings: `{"path", "reason"}` (plus `segment_s` for event items) for every recording of the
            task that could not be used: missing, present twice, undecodable, refused by the feature extractor or
            embedded as NaN/inf.
    """

    task_id: str
    name: str
    metric: str
    mean: float
    std: float
    scores: list[float]
    runs: list[RunResult] = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    data_report: str = ""
    embedding_dim: int | None = None
    absent_classes: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    split_mode: str = "default"
    test_results: dict[str, dict[str, MetricSummary]] = field(default_factory=dict)
    skipped_recordings: list[dict] = field(default_factory=list)

    @property
    def metric_spec(self) -> MetricSpec:
        return METRICS[self.metric]

    @property
    def higher_is_better(self) -> bool:
        return self.metric_spec.higher_is_better

    @property
    def n_runs(self) -> int:
        """How many runs `mean` is over."""
        return len(self.scores)

    def headline_splits(self) -> dict[str, dict[str, MetricSummary]]:
        """`test_results`, or for a result without them (hand-written files) the headline metric as `test`."""
        return self.test_results or {"test": {self.metric: MetricSummary(self.mean, self.std, list(self.scores))}}

    def to_dict(self) -> dict:
        # `higher_is_better` is written for readers of the file; it is the metric's direction, not read back.
        values = asdict(self)
        head = {key: values.pop(key) for key in ("task_id", "name", "metric")}
        return {**head, "higher_is_better": self.higher_is_better, **values}

    @classmethod
    def from_dict(cls, task_id: str, row: dict) -> TaskResult:
        """A task entry of `results.json` filed under `task_id`, checked: a report or card must not show
        made-up or broken numbers."""
        where = f"task {task_id}"
        required = ("name", "metric", "mean", "std", "scores")
        if not isinstance(row, dict):
            raise ResultsFormatError(f"{where} is a {type(row).__name__}, not an object with fields {required}.")
        missing = [name for name in required if name not in row]
        if missing:
            raise ResultsFormatError(f"{where} lacks {missing}; every task needs {required}.")
        if row.get("task_id", task_id) != task_id:
            raise ResultsFormatError(f"{where} is filed under {task_id!r} but says task_id={row['task_id']!r}.")
        metric = str(row["metric"]).lower()
        if metric not in METRICS:
            raise ResultsFormatError(f"{where}: metric {row['metric']!r} is not one of {sorted(METRICS)}.")
        try:
            mean, std, scores = float(row["mean"]), float(row["std"]), [float(s) for s in row["scores"]]
        except (TypeError, ValueError):
            raise ResultsFormatError(f"{where}: mean and std must be numbers and scores a list.") from None
        if not (math.isfinite(mean) and math.isfinite(std)) or std < 0 or not scores:
            raise ResultsFormatError(
                f"{where}: need a finite mean, std >= 0 and at least one score, got mean={mean}, std={std}, "
                f"{len(scores)} scores."
            )
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in row.items() if key in known}
        try:
            values.update(
                task_id=task_id,
                metric=metric,
                mean=mean,
                std=std,
                scores=scores,
                runs=[RunResult(**run) for run in row.get("runs", [])],
                test_results={
                    split: {name: MetricSummary(**summary) for name, summary in metrics.items()}
                    for split, metrics in row.get("test_results", {}).items()
                },
            )
        except (TypeError, AttributeError) as error:
            raise ResultsFormatError(f"{where}: runs or test_results are not as bench writes them ({error}).") from None
        return cls(**values)


@dataclass
class FailedTask:
    """A task that could not be scored.

    Attributes:
        error: the exception, as `"<type>: <message>"`.
        skipped_recordings: the recordings of the task that could not be used, as in
            [`TaskResult.skipped_recordings`], as far as the task got (empty when its table could not be built).
    """

    error: str
    skipped_recordings: list[dict] = field(default_factory=list)

    @classmethod
    def from_dict(cls, entry: dict | str) -> FailedTask:
        # Files written before failed tasks kept their skipped recordings hold the error text alone.
        return cls(error=entry) if isinstance(entry, str) else cls(**entry)


@dataclass
class EncoderSettings:
    """How the benchmarked encoder embeds: its sampling rate, pooling and embedding width (`None` where the
    model does not state them: other transformers models use their own `pooler_output` or the time-average)."""

    sampling_rate: int | None = None
    pooling: str | None = None
    embedding_dim: int | None = None


@dataclass
class MeanReciprocalRank:
    """The mean reciprocal rank of our model and OPERA's published methods (`bench --compare-opera`).

    Attributes:
        tasks: the OPERA tasks it is over (those run that OPERA published).
        values: `{method: MRR}`, our model first.
    """

    tasks: list[str]
    values: dict[str, float]


@dataclass
class BenchmarkResult:
    """Everything `resp-audio-hf bench` writes to `results.json`.

    Attributes:
        model: the encoder's id (`AudioEncoder.model_id`).
        model_fingerprint: weight fingerprint of the encoder (`AudioEncoder.fingerprint`); `None` in files
            that do not record it.
        arguments: the command's arguments; `None` for schema-1 files, which did not record them.
        encoder: how the encoder embedded.
        tasks: scored tasks, in the order they ran.
        unavailable: `{task: reason}` of tasks whose corpus or OPERA files are absent.
        failed: tasks that could not be scored.
        mrr: with `--compare-opera` ([`~resp_audio_hf.benchmark.report.write_reports`] fills it in).
        source: name of the file this was read from (not written).
    """

    model: str
    model_fingerprint: str | None = None
    arguments: BenchmarkArguments | None = None
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    failed: dict[str, FailedTask] = field(default_factory=dict)
    mrr: MeanReciprocalRank | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def not_scored(self) -> tuple[str, ...]:
        """Ids of the tasks the run could not score (data unavailable or failure), sorted."""
        return tuple(sorted({*self.unavailable, *self.failed}))

    def to_dict(self) -> dict:
        """The `results.json` payload (schema `SCHEMA_VERSION`)."""
        payload = {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "arguments": self.arguments.to_dict() if self.arguments is not None else None,
            "encoder": asdict(self.encoder),
            "tasks": {task_id: task.to_dict() for task_id, task in self.tasks.items()},
            "unavailable": dict(self.unavailable),
            "failed": {task_id: asdict(failure) for task_id, failure in self.failed.items()},
        }
        if self.mrr is not None:
            payload["mrr"] = asdict(self.mrr)
        return payload

    @classmethod
    def from_dict(cls, payload: dict, source: str | None = None) -> BenchmarkResult:
        """Read a `results.json` payload of schema version 1 or 2 (see the module's docstring)."""
        if not isinstance(payload, dict):
            raise ResultsFormatError(f"expected an object, got a {type(payload).__name__}.")
        version = payload.get("schema_version", 1)
        if version == 1:
            settings = payload.get("settings") or {}
            arguments = None
            encoder = EncoderSettings(**{f.name: settings.get(f.name) for f in fields(EncoderSettings)})
        elif version == SCHEMA_VERSION:
            arguments = BenchmarkArguments.from_dict(payload["arguments"]) if payload.get("arguments") else None
            encoder = EncoderSettings(**payload.get("encoder", {}))
        else:
            raise ResultsFormatError(
                f"schema_version {version!r} is not one this version reads (1 to {SCHEMA_VERSION}); update resp_audio_hf."
            )
        tasks = payload.get("tasks")
        if not isinstance(tasks, dict):
            raise ResultsFormatError("no 'tasks' object.")
        mrr = payload.get("mrr")
        return cls(
            model=payload.get("model"),
            model_fingerprint=payload.get("model_fingerprint"),
            arguments=arguments,
            encoder=encoder,
            tasks={task_id: TaskResult.from_dict(task_id, row) for task_id, row in tasks.items()},
            unavailable=dict(payload.get("unavailable", {})),
            failed={task_id: FailedTask.from_dict(entry) for task_id, entry in payload.get("failed", {}).items()},
            mrr=MeanReciprocalRank(**mrr) if mrr else None,
            source=source,
        )


def load_results(path: str | os.PathLike) -> BenchmarkResult:
    """Read a `results.json` written by `resp-audio-hf bench` (any schema version); `ResultsFormatError`
    (a `ValueError`) naming the file when it is not one, `FileNotFoundError` when it is absent."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return BenchmarkResult.from_dict(json.loads(text), source=path.name)
    except json.JSONDecodeError as error:
        raise ResultsFormatError(f"{path} is not valid JSON: {error}.") from None
    except ResultsFormatError as error:
        raise ResultsFormatError(f"{path}: {error}") from None
