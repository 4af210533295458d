"""The benchmark results a model card shows: the `results.json` of `resp-audio-hf bench`, read as the harness's own
typed record ([`~resp_audio_hf.benchmark.results.BenchmarkResult`]), checked to belong to the checkpoint being
published (same weight fingerprint, same pooling), and turned into model-index entries."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..benchmark.results import BenchmarkResult, ResultsFormatError, TaskResult, load_results
from ..modeling_resp_audio import RespAudioForAudioClassification
from .errors import HubPublishError

logger = logging.getLogger(__name__)

__all__ = [
    "BenchmarkResult",
    "TaskResult",
    "benchmark_fingerprint",
    "check_benchmark_matches",
    "load_benchmark_results",
    "task_dataset",
    "to_eval_result",
]


def load_benchmark_results(path: str | os.PathLike) -> BenchmarkResult:
    """
    Read the `results.json` that `resp-audio-hf bench` writes (any schema version, see
    `resp_audio_hf.benchmark.results`) for a card:

    ```json
    {"schema_version": 2, "model": "...", "model_fingerprint": "...", "arguments": {...}, "encoder": {...},
     "tasks": {"T7": {"task_id": "T7", "name": "ICBHI: COPD detection", "metric": "auroc",
                      "mean": 0.912, "std": 0.011, "scores": [...], ...}, ...},
     "unavailable": {"T3": "reason"}, "failed": {}}
    ```

    Every task's numbers are checked, and its corpus must be in the harness's task registry (the card names it): a
    card must not show made-up or broken numbers.
    """
    path = Path(path)
    try:
        results = load_results(path)
    except FileNotFoundError:
        raise HubPublishError(f"Benchmark results file {path} does not exist.") from None
    except ResultsFormatError as error:
        raise HubPublishError(f"Benchmark results file {error}") from None
    if not results.tasks:
        raise HubPublishError(
            f"Benchmark results file {path} has no scored task: expected the results.json of `resp-audio-hf bench`, "
            "with a non-empty 'tasks' object."
        )
    for task_id in results.tasks:
        try:
            task_dataset(task_id)
        except KeyError as error:
            raise HubPublishError(f"{path}, task {task_id}: {error.args[0]}") from None
    return results


def task_dataset(task_id: str) -> str:
    """The title of the corpus a task is drawn from (the harness's task registry), e.g. `"ICBHI 2017"`."""
    from ..data.corpora import get_corpus_spec
    from ..data.tasks import get_task_spec

    return get_corpus_spec(get_task_spec(task_id).corpus).title


def _slug(text: str) -> str:
    """A data set name as a model-index `dataset.type`: lower case, words joined by hyphens."""
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def to_eval_result(result: TaskResult):
    """
    The model-index entry of a task. huggingface_hub groups entries by (task type, dataset type, config, split), so
    the task id goes into the dataset config: tasks sharing a corpus (T5/T6 on CoughVID) stay separate.
    """
    from huggingface_hub import EvalResult

    spec = result.metric_spec
    dataset = task_dataset(result.task_id)
    return EvalResult(
        task_type=spec.hub_task_type,
        task_name=f"{result.task_id}: {result.name}",
        dataset_type=_slug(dataset),
        dataset_name=dataset,
        dataset_config=result.task_id,
        dataset_split="test",
        metric_type=spec.hub_metric_type,
        metric_name=spec.display_name,
        metric_value=result.mean,
    )
def _benchmarked_encoder(model, feature_extractor):
    """The model as `resp-audio-hf bench` sees it: loaded with `AutoModel`, i.e. the encoder without any head."""
    from ..extraction.encoder import AudioEncoder

    encoder = model.resp_audio if isinstance(model, RespAudioForAudioClassification) else model
    return AudioEncoder(encoder, feature_extractor, model_id="")


def benchmark_fingerprint(model, feature_extractor) -> str:
    """The weight fingerprint `resp-audio-hf bench` records for this model."""
    return _benchmarked_encoder(model, feature_extractor).fingerprint()


def check_benchmark_matches(benchmark: BenchmarkResult, model, feature_extractor) -> None:
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
    recorded = {"pooling": benchmark.encoder.pooling, "embedding_dim": benchmark.encoder.embedding_dim}
    # None: a file written before the harness recorded how the encoder embedded.
    differing = {key: value for key, value in recorded.items() if value is not None and value != published[key]}
    if differing:
        raise HubPublishError(
            f"{benchmark.source} holds results for these weights embedded with {differing}, but this checkpoint "
            f"embeds with { {key: published[key] for key in differing} } (a `bench --pooling` ablation?). Run "
            "`resp-audio-hf bench --model <this folder>` without --pooling and pass its results.json."
        )
