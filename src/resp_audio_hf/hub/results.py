"""The benchmark results a model card shows: reading the `results.json` of `resp-audio-hf bench` and checking that it
belongs to the checkpoint being published (same weight fingerprint, same pooling)."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..modeling_resp_audio import RespAudioForAudioClassification
from .errors import HubPublishError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricSpec:
    """How one OPERA metric appears in the model-index: `type` is the `evaluate` metric id, `task_type` the Hub task."""

    type: str
    label: str
    task_type: str
    higher_is_better: bool


# OPERA scores classification tasks by AUROC and regression tasks by MAE. The Hub has no audio-regression task id;
# "audio-regression" keeps those rows apart from the classification ones in the model-index.
METRICS: dict[str, MetricSpec] = {
    "auroc": MetricSpec("roc_auc", "AUROC", "audio-classification", higher_is_better=True),
    "mae": MetricSpec("mae", "MAE", "audio-regression", higher_is_better=False),
    # The ICBHI 2017 challenge's score (mean of sensitivity and specificity) of task ICBHI-cycle; no `evaluate` id.
    "icbhi_score": MetricSpec("icbhi_score", "ICBHI score", "audio-classification", higher_is_better=True),
}


@dataclass(frozen=True)
class TaskResult:
    """
    The result of one benchmark task, aggregated over probe runs, as shown on the card.

    Attributes:
        task_id: task id of the harness, `"T1"` ... `"T19"` for OPERA (`"S1"`, `"S2"` for SPRSound).
        name: what the task predicts, e.g. `"ICBHI: COPD detection"`.
        dataset: the corpus the task is drawn from, e.g. `"ICBHI 2017"`.
        metric: `"auroc"` or `"mae"` (a key of `METRICS`).
        mean: mean of the metric over runs.
        std: standard deviation over runs.
        n_runs: number of runs the mean is over (seeds for hold-out tasks, folds for cross-validated ones).
    """

    task_id: str
    name: str
    dataset: str
    metric: str
    mean: float
    std: float
    n_runs: int

    @property
    def metric_spec(self) -> MetricSpec:
        return METRICS[self.metric]

    @property
    def metric_label(self) -> str:
        return self.metric_spec.label

    @property
    def higher_is_better(self) -> bool:
        return self.metric_spec.higher_is_better

    @property
    def dataset_type(self) -> str:
        """A slug of the data set name, the model-index `dataset.type`."""
        return "-".join("".join(c if c.isalnum() else " " for c in self.dataset.lower()).split())

    def to_eval_result(self):
        """
        The model-index entry. huggingface_hub groups entries by (task type, dataset type, config, split), so the task
        id goes into the dataset config: tasks sharing a corpus (T5/T6 on CoughVID) stay separate.
        """
        from huggingface_hub import EvalResult

        spec = self.metric_spec
        return EvalResult(
            task_type=spec.task_type,
            task_name=f"{self.task_id}: {self.name}",
            dataset_type=self.dataset_type,
            dataset_name=self.dataset,
            dataset_config=self.task_id,
            dataset_split="test",
            metric_type=spec.type,
            metric_name=spec.label,
            metric_value=self.mean,
        )


@dataclass(frozen=True)
class BenchmarkResults:
    """
    The parts of a `resp-audio-hf bench` results file that go on a card.

    Attributes:
        results: scored tasks, in the file's order.
        model: the model name the harness recorded.
        model_fingerprint: the harness's weight fingerprint of the benchmarked encoder (`AudioEncoder.fingerprint`).
        not_scored: ids of tasks the run could not score (data unavailable or failure).
        source: the file name.
        embedding: how the benchmarked encoder embedded (`pooling`, `embedding_dim`), as the harness recorded it
            in `settings`; empty for files written before it recorded them.
    """

    results: tuple[TaskResult, ...]
    model: str | None = None
    model_fingerprint: str | None = None
    not_scored: tuple[str, ...] = ()
    source: str | None = None
    embedding: dict = field(default_factory=dict)


_HARNESS_FIELDS = ("name", "metric", "mean", "std", "scores")


def load_benchmark_results(path: str | os.PathLike) -> BenchmarkResults:
    """
    Read the `results.json` that `resp-audio-hf bench` writes (`resp_audio_hf.benchmark.write_reports`):

    ```json
    {"model": "...", "model_fingerprint": "...",
     "tasks": {"T7": {"task_id": "T7", "name": "ICBHI: COPD detection", "metric": "auroc",
                      "mean": 0.912, "std": 0.011, "scores": [...], ...}, ...},
     "unavailable": {"T3": "reason"}, "failed": {}}
    ```

    The corpus of each task comes from the harness's task registry (`resp_audio_hf.data.tasks`); the number of runs
    is the length of `scores`. Every field is checked: a card must not show made-up or broken numbers.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise HubPublishError(f"Benchmark results file {path} does not exist.") from None
    except json.JSONDecodeError as error:
        raise HubPublishError(f"Benchmark results file {path} is not valid JSON: {error}.") from None
    tasks = payload.get("tasks") if isinstance(payload, dict) else None
    if not isinstance(tasks, dict) or not tasks:
        raise HubPublishError(
            f"Benchmark results file {path} has no scored task: expected the results.json of `resp-audio-hf bench`, "
            "with a non-empty 'tasks' object."
        )
    results = tuple(_task_result(task_id, row, path) for task_id, row in tasks.items())
    not_scored = tuple(sorted({*payload.get("unavailable", {}), *payload.get("failed", {})}))
    return BenchmarkResults(
        results=results,
        model=payload.get("model"),
        model_fingerprint=payload.get("model_fingerprint"),
        not_scored=not_scored,
        source=path.name,
        embedding={
            key: payload["settings"][key]
            for key in ("pooling", "embedding_dim")
            if isinstance(payload.get("settings"), dict) and key in payload["settings"]
        },
    )


def _task_result(task_id: str, row: Any, path: Path) -> TaskResult:
    from ..data.corpora import get_corpus_spec
    from ..data.tasks import get_task_spec

    where = f"{path}, task {task_id}"
    if not isinstance(row, dict):
        raise HubPublishError(f"{where} is a {type(row).__name__}, not an object with fields {_HARNESS_FIELDS}.")
    missing = [name for name in _HARNESS_FIELDS if name not in row]
    if missing:
        raise HubPublishError(f"{where} lacks {missing}; every task needs {_HARNESS_FIELDS}.")
    if row.get("task_id", task_id) != task_id:
        raise HubPublishError(f"{where} is filed under {task_id!r} but says task_id={row['task_id']!r}.")
    metric = str(row["metric"]).lower()
    if metric not in METRICS:
        raise HubPublishError(f"{where}: metric {row['metric']!r} is not one of {sorted(METRICS)}.")
    try:
        mean, std = float(row["mean"]), float(row["std"])
        n_runs = len(row["scores"])
    except (TypeError, ValueError):
        raise HubPublishError(f"{where}: mean and std must be numbers and scores a list.") from None
    if not (math.isfinite(mean) and math.isfinite(std)) or std < 0 or n_runs < 1:
        raise HubPublishError(
            f"{where}: need a finite mean, std >= 0 and at least one score, got mean={mean}, std={std}, "
            f"{n_runs} scores."
        )
    try:
        dataset = get_corpus_spec(get_task_spec(task_id).corpus).title
    except KeyError as error:
        raise HubPublishError(f"{where}: {error.args[0]}") from None
    return TaskResult(
        task_id=task_id, name=str(row["name"]), dataset=dataset, metric=metric, mean=mean, std=std, n_runs=n_runs
    )


def _benchmarked_encoder(model, feature_extractor):
    """The model as `resp-audio-hf bench` sees it: loaded with `AutoModel`, i.e. the encoder without any head."""
    from ..benchmark.embeddings import AudioEncoder

    encoder = model.resp_audio if isinstance(model, RespAudioForAudioClassification) else model
    return AudioEncoder(encoder, feature_extractor, model_id="")


def benchmark_fingerprint(model, feature_extractor) -> str:
    """The weight fingerprint `resp-audio-hf bench` records for this model."""
    return _benchmarked_encoder(model, feature_extractor).fingerprint()


def check_benchmark_matches(benchmark: BenchmarkResults, model, feature_extractor) -> None:
    """Refuse results that the harness recorded for other weights than the ones being published."""
    if benchmark.model_fingerprint is None:
        logger.warning(
            "%s records no model fingerprint; cannot check that its results belong to this checkpoint.",
            benchmark.source,
        )
        return
    fingerprint = benchmark_fingerprint(model, feature_extractor)
    if fingerprint != benchmark.model_fingerprint:
        raise HubPublishError(
            f"{benchmark.source} holds results for other weights (model {benchmark.model!r}, fingerprint "
            f"{benchmark.model_fingerprint}) than this checkpoint (fingerprint {fingerprint}). Run "
            "`resp-audio-hf bench --model <this folder>` and pass its results.json."
        )
    # The same weights embed differently under another pooling (`bench --pooling`): such results are an ablation,
    # not this checkpoint's scores.
    encoder = _benchmarked_encoder(model, feature_extractor)
    published = {"pooling": encoder.pooling, "embedding_dim": encoder.embedding_dim}
    differing = {key: value for key, value in benchmark.embedding.items() if value != published[key]}
    if differing:
        raise HubPublishError(
            f"{benchmark.source} holds results for these weights embedded with {differing}, but this checkpoint "
            f"embeds with { {key: published[key] for key in differing} } (a `bench --pooling` ablation?). Run "
            "`resp-audio-hf bench --model <this folder>` without --pooling and pass its results.json."
        )
