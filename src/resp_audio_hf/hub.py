"""Publishing a trained checkpoint to the Hugging Face Hub, with remote code and a model card.

The flow is stage -> validate -> upload:

1. [`stage_for_hub`] loads a checkpoint folder written by `save_pretrained`, re-saves it into a staging folder with
   `model.safetensors`, the feature extractor, the remote-code files (`save_pretrained` copies them because the
   classes are registered for the Auto classes) and a `README.md` model card rendered from `model_cards/`.
2. [`check_staged_folder`] and [`validate_staged_folder`] refuse a folder with a missing file, an incomplete
   `auto_map`, weights that do not reproduce the source model, non-finite outputs, or remote code that does not load
   in a Python process where `resp_audio_hf` cannot be imported.
3. [`upload_staged_folder`] creates the repository if needed and uploads every file in one commit, so users never
   see a half-updated repository.

Benchmark results come from the `results.json` written by the OPERA harness (`resp-audio-hf bench`); see
[`load_benchmark_results`] for the fields read. Its weight fingerprint must match the checkpoint being published, so
a card never shows another model's numbers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .configuration_resp_audio import RespAudioConfig
from .data._io import atomic_folder
from .feature_extraction_resp_audio import RespAudioFeatureExtractor
from .modeling_resp_audio import RespAudioForAudioClassification, RespAudioModel

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"
REMOTE_CODE_FILES = (
    "configuration_resp_audio.py",
    "modeling_resp_audio.py",
    "feature_extraction_resp_audio.py",
    "pipeline_resp_audio.py",
)
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE_FILES, CARD_FILE)
FAMILY_OF_FRONTEND = {"passt": "resp-passt", "ast": "resp-ast", "m2d": "resp-m2d"}
CARD_TEMPLATE = "template.md"
# The card template and the per-family YAML files, shipped as package data (so publishing works from a wheel).
DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parent / "model_cards"
# Outputs of the staged folder and of the source model must agree to float32 round-off.
OUTPUT_ATOL = 1e-5


class HubPublishError(RuntimeError):
    """The checkpoint cannot be published as it is (missing file, bad card input, failed validation)."""


class MissingTokenError(HubPublishError):
    """No Hugging Face token was found in the environment or the cached login."""


# ---------------------------------------------------------------------------------------------------------------------
# Benchmark results


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
    from .data.corpora import get_corpus_spec
    from .data.tasks import get_task_spec

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
    from .benchmark.embeddings import AudioEncoder

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


# ---------------------------------------------------------------------------------------------------------------------
# Model card


@dataclass(frozen=True)
class ModelFamily:
    """
    Facts about one model family, read from `model_cards/<name>.yaml`.

    Attributes:
        name: `resp-passt`, `resp-ast` or `resp-m2d`.
        architecture: short architecture name (`PaSST`, `AST`, `M2D`).
        architecture_description: one sentence describing the encoder.
        initialisation: where the encoder weights start from.
        license: Hub licence id (`other` with `license_name` and `license_link` for non-SPDX licences).
        citations: BibTeX entries of the family's papers.
        datasets: training data sets for the front matter.
        tags: extra Hub tags.
        base_model: Hub id of the checkpoint the weights derive from, if it is on the Hub.
    """

    name: str
    architecture: str
    architecture_description: str
    initialisation: str
    license: str
    citations: tuple[str, ...]
    datasets: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    license_name: str | None = None
    license_link: str | None = None
    base_model: str | None = None


def load_model_family(name: str, template_dir: str | os.PathLike | None = None) -> ModelFamily:
    """Read `model_cards/<name>.yaml` (`name` is `resp-passt`, `resp-ast` or `resp-m2d`)."""
    import yaml

    path = _template_dir(template_dir) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise HubPublishError(f"No model card family file {path}; known families: {known}.")
    raw = yaml.safe_load(path.read_text()) or {}
    known_fields = set(ModelFamily.__dataclass_fields__)
    unknown = sorted(set(raw) - known_fields)
    if unknown:
        raise HubPublishError(f"{path} has unknown fields {unknown}; allowed: {sorted(known_fields)}.")
    lists = {key: tuple(raw[key]) for key in ("citations", "datasets", "tags") if key in raw}
    try:
        return ModelFamily(**{**raw, **lists})
    except TypeError as error:
        raise HubPublishError(f"{path} is incomplete: {error}.") from None


def _template_dir(template_dir: str | os.PathLike | None) -> Path:
    folder = Path(template_dir) if template_dir is not None else DEFAULT_TEMPLATE_DIR
    if not (folder / CARD_TEMPLATE).is_file():
        raise HubPublishError(
            f"Model card template {folder / CARD_TEMPLATE} not found. Reinstall resp_audio_hf (the templates are "
            "package data under resp_audio_hf/model_cards/) or pass the folder holding template.md and the family "
            "YAML files (template_dir / --template-dir)."
        )
    return folder


def family_for_config(config: RespAudioConfig) -> str:
    """The card family of a configuration (`resp-passt` for the PaSST front end, ...)."""
    return FAMILY_OF_FRONTEND[config.frontend]


def render_model_card(
    config: RespAudioConfig,
    repo_id: str,
    *,
    benchmark: BenchmarkResults | None = None,
    family: str | None = None,
    num_parameters: int | None = None,
    training_data: str | None = None,
    datasets: list[str] | tuple[str, ...] = (),
    template_dir: str | os.PathLike | None = None,
):
    """
    The `huggingface_hub.ModelCard` of a checkpoint: front matter from the family file, the configuration and the
    benchmark results (`model-index`), body from `model_cards/template.md`.

    Args:
        config: the checkpoint's configuration.
        repo_id: `org/name` the card is for (its name is the model-index name).
        benchmark: results to put in the model-index and the evaluation table.
        family: card family; defaults to the one of `config.frontend`.
        num_parameters: shown in the card; computed from a model built on `config` when not given.
        training_data: Markdown paragraph on the training data; defaults to the family's initialisation.
        datasets: extra training data sets for the front matter.
        template_dir: folder of `template.md` and the family YAML files (default: the package's `model_cards/`).
    """
    try:
        import jinja2
    except ImportError:
        raise HubPublishError("Rendering model cards needs jinja2: pip install jinja2.") from None
    from huggingface_hub import ModelCard, ModelCardData

    folder = _template_dir(template_dir)
    info = load_model_family(family or family_for_config(config), folder)
    model_name = repo_id.rstrip("/").split("/")[-1]
    labels = _class_names(config)
    results = benchmark.results if benchmark is not None else ()
    if num_parameters is None:
        num_parameters = _model_class(config)(config).num_parameters()

    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=info.license,
        license_name=info.license_name,
        license_link=info.license_link,
        base_model=info.base_model,
        datasets=list(dict.fromkeys([*info.datasets, *datasets])) or None,
        tags=list(dict.fromkeys(
            ["audio", "respiratory-sounds", "health", "spectrogram-transformer", "resp_audio", *info.tags,
             "opera-benchmark", "custom_code"]
        )),
        metrics=sorted({r.metric_spec.type for r in results}) or None,
        model_name=model_name if results else None,
        eval_results=[r.to_eval_result() for r in results] or None,
    )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,  # a misspelt variable must fail here, not publish an empty field
        keep_trailing_newline=True,
        autoescape=False,
    )
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    content = environment.get_template(CARD_TEMPLATE).render(
        card_data=card_data.to_yaml(),
        family=info,
        repo_id=repo_id,
        model_name=model_name,
        config=config,
        num_parameters=int(num_parameters),
        window_seconds=config.max_length * extractor.hop_length / extractor.sampling_rate,
        labels=labels,
        results=results,
        not_scored=benchmark.not_scored if benchmark is not None else (),
        benchmark_source=benchmark.source if benchmark is not None else None,
        training_data=training_data.strip() if training_data else None,
    )
    return ModelCard(content)


def _class_names(config: RespAudioConfig) -> list[str]:
    if not _has_classification_head(config):
        return []
    return [str(config.id2label[i]) for i in range(config.num_labels)]


# ---------------------------------------------------------------------------------------------------------------------
# Staging


def _has_classification_head(config: RespAudioConfig) -> bool:
    return RespAudioForAudioClassification.__name__ in (config.architectures or [])


def _model_class(config: RespAudioConfig):
    return RespAudioForAudioClassification if _has_classification_head(config) else RespAudioModel


def _auto_map_entry(cls) -> str:
    return f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"


def _expected_auto_map(config: RespAudioConfig) -> dict[str, str]:
    auto_map = {
        "AutoConfig": _auto_map_entry(RespAudioConfig),
        "AutoModel": _auto_map_entry(RespAudioModel),
        "AutoFeatureExtractor": _auto_map_entry(RespAudioFeatureExtractor),
    }
    if _has_classification_head(config):
        auto_map["AutoModelForAudioClassification"] = _auto_map_entry(RespAudioForAudioClassification)
    return auto_map


def load_checkpoint(model_dir: str | os.PathLike):
    """
    Load a checkpoint folder written by `save_pretrained` with this package's classes: `(model, feature_extractor)`.
    The feature extractor is built from the configuration when the folder has no `preprocessor_config.json`.
    Refuses checkpoints whose weights do not cover the model (publishing them would upload random weights).
    """
    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise HubPublishError(f"{model_dir} has no config.json: pass a folder written by save_pretrained.")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != RespAudioConfig.model_type:
        raise HubPublishError(
            f"{config_file} describes a {model_type!r} model, not {RespAudioConfig.model_type!r}; this tool publishes "
            "resp_audio_hf checkpoints only."
        )
    config = RespAudioConfig.from_pretrained(model_dir)
    model, loading_info = _model_class(config).from_pretrained(model_dir, config=config, output_loading_info=True)
    if loading_info["missing_keys"]:
        raise HubPublishError(
            f"The weights in {model_dir} lack {sorted(loading_info['missing_keys'])}; the uploaded model would be "
            "partly random. Save the complete model with save_pretrained."
        )
    if (model_dir / "preprocessor_config.json").is_file():
        feature_extractor = RespAudioFeatureExtractor.from_pretrained(model_dir)
    else:
        logger.info("%s has no preprocessor_config.json; using the front end matching its configuration.", model_dir)
        feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    return model.eval(), feature_extractor


@dataclass
class StagedFolder:
    """A validated folder ready for upload: `files` maps each path relative to `path` to its size in bytes."""

    path: Path
    repo_id: str
    files: dict[str, int] = field(default_factory=dict)

    def listing(self) -> str:
        """One line per file: size and path."""
        return "\n".join(f"{size:>14,d}  {name}" for name, size in self.files.items())


def stage_for_hub(
    model_dir: str | os.PathLike,
    staging_dir: str | os.PathLike,
    repo_id: str,
    *,
    benchmark: BenchmarkResults | str | os.PathLike | None = None,
    family: str | None = None,
    training_data: str | None = None,
    datasets: list[str] | tuple[str, ...] = (),
    template_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    check_remote_code: bool = True,
) -> StagedFolder:
    """
    Write the exact folder that would be uploaded for `model_dir` to `staging_dir`, and validate it.

    The folder is built and validated next to `staging_dir` and only then moved into place, so `staging_dir` is
    either absent or complete. An existing `staging_dir` is replaced only with `overwrite=True`.
    """
    _check_repo_id(repo_id)
    staging_dir = Path(staging_dir)
    if staging_dir.resolve() == Path(model_dir).resolve():
        raise HubPublishError(f"Stage into another folder than the checkpoint {model_dir} itself.")
    if staging_dir.exists():
        _check_replaceable(staging_dir, overwrite)
    if isinstance(benchmark, (str, os.PathLike)):
        benchmark = load_benchmark_results(benchmark)
    model, feature_extractor = load_checkpoint(model_dir)
    if benchmark is not None:
        check_benchmark_matches(benchmark, model, feature_extractor)
    card = render_model_card(
        model.config, repo_id, benchmark=benchmark, family=family, num_parameters=model.num_parameters(),
        training_data=training_data, datasets=datasets, template_dir=template_dir,
    )

    with atomic_folder(staging_dir) as building:
        # Seeding auto_map lets save_pretrained add the entries for every Auto class, not only the saved class's.
        model.config.auto_map = _expected_auto_map(model.config)
        model.save_pretrained(building)
        feature_extractor.save_pretrained(building)
        card.save(building / CARD_FILE)
        files = check_staged_folder(building)
        validate_staged_folder(building, reference_model=model, isolated=check_remote_code)
    staged = StagedFolder(staging_dir, repo_id, {name: (staging_dir / name).stat().st_size for name in files})
    logger.info("Staged %d files for %s in %s.", len(staged.files), repo_id, staging_dir)
    return staged


def _check_replaceable(staging_dir: Path, overwrite: bool) -> None:
    if not overwrite:
        raise HubPublishError(
            f"{staging_dir} already exists; choose another folder or pass overwrite=True (--overwrite)."
        )
    # Overwriting deletes the folder: only ever do that to an earlier staging folder, never to e.g. the checkpoint.
    existing = {p.name for p in staging_dir.iterdir()} if staging_dir.is_dir() else {staging_dir.name}
    if not existing <= set(REQUIRED_FILES):
        raise HubPublishError(
            f"{staging_dir} holds files a staging folder never has ({sorted(existing - set(REQUIRED_FILES))}); "
            "refusing to replace it. Choose an empty or new folder."
        )


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubPublishError(f"Invalid repository id {repo_id!r}: {error}") from None
    if repo_id.count("/") != 1:
        raise HubPublishError(f"Repository id must be 'namespace/name' (e.g. 'org/resp-passt'), got {repo_id!r}.")


def check_staged_folder(folder: str | os.PathLike) -> list[str]:
    """
    Check that `folder` has every file of a Hub checkpoint with remote code, and nothing that breaks loading:
    `REQUIRED_FILES`, a complete `auto_map` in `config.json` and `preprocessor_config.json`, and remote code whose
    relative imports all resolve inside the folder. Returns the files to upload, relative and sorted.
    """
    from transformers.dynamic_module_utils import get_relative_imports

    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise HubPublishError(
            f"{folder} lacks {missing}; refusing to upload a checkpoint that would not load with "
            "trust_remote_code=True. Stage it again with stage_for_hub / scripts/push_to_hub.py."
        )
    config = json.loads((folder / "config.json").read_text())
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    auto_map = {**config.get("auto_map", {}), **preprocessor.get("auto_map", {})}
    needed = ["AutoConfig", "AutoModel", "AutoFeatureExtractor"]
    if RespAudioForAudioClassification.__name__ in (config.get("architectures") or []):
        needed.append("AutoModelForAudioClassification")
    absent = [name for name in needed if name not in auto_map]
    if absent:
        raise HubPublishError(f"{folder}: auto_map lacks {absent}, so those Auto classes could not load the model.")
    for auto_class, reference in auto_map.items():
        module = reference.split("--")[-1].rsplit(".", 1)[0]
        if f"{module}.py" not in files:
            raise HubPublishError(f"{folder}: auto_map[{auto_class!r}] points to {module}.py, which is not staged.")
    for name in REMOTE_CODE_FILES:
        for imported in get_relative_imports(str(folder / name)):
            if f"{imported}.py" not in files:
                raise HubPublishError(f"{folder}/{name} imports .{imported}, which is not staged.")
    return files


# ---------------------------------------------------------------------------------------------------------------------
# Validation


def validation_clips(sampling_rate: int) -> list[np.ndarray]:
    """
    Two deterministic clips for validation: 1.2 s, and 3.1 s (longer than one window of every preset, so the
    windowed path runs too). Harmonic tones with a vibrato plus seeded noise, so every mel band is excited.
    """
    generator = np.random.default_rng(0)
    clips = []
    for seconds in (1.2, 3.1):
        t = np.arange(int(seconds * sampling_rate)) / sampling_rate
        phase = 2 * np.pi * (220 * t + 3 * np.sin(2 * np.pi * 5 * t))
        tone = sum(np.sin(k * phase) / k for k in range(1, 8))
        clips.append((0.3 * tone + 0.05 * generator.standard_normal(t.size)).astype(np.float32))
    return clips


def _reference_outputs(model, feature_extractor, clips) -> dict[str, torch.Tensor]:
    inputs = feature_extractor(clips, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        if isinstance(model, RespAudioForAudioClassification):
            encoder_out = model.resp_audio(**inputs)
            logits = model(**inputs).logits
            return {"pooler_output": encoder_out.pooler_output, "last_hidden_state": encoder_out.last_hidden_state,
                    "logits": logits}
        out = model(**inputs)
    return {"pooler_output": out.pooler_output, "last_hidden_state": out.last_hidden_state}


def validate_staged_folder(
    folder: str | os.PathLike, reference_model=None, isolated: bool = True, timeout: float = 600.0
) -> dict[str, torch.Tensor]:
    """
    Load the staged folder and run it on [`validation_clips`]: outputs must be finite and, when `reference_model` is
    given, equal to its outputs. With `isolated=True` the folder is also loaded in a separate Python process in which
    `resp_audio_hf` cannot be imported, through `trust_remote_code=True` as a Hub user would, and its outputs must
    match. Returns the in-process outputs.
    """
    folder = Path(folder)
    check_staged_folder(folder)
    model, feature_extractor = load_checkpoint(folder)
    clips = validation_clips(feature_extractor.sampling_rate)
    outputs = _reference_outputs(model, feature_extractor, clips)
    for name, value in outputs.items():
        if not bool(torch.isfinite(value).all()):
            raise HubPublishError(
                f"The staged model gives non-finite {name} on a test clip; refusing to publish it. Check the "
                "checkpoint's weights for NaN/inf."
            )
    if reference_model is not None:
        expected = _reference_outputs(reference_model, feature_extractor, clips)
        _compare_outputs(expected, outputs, "the staged folder reloaded in this process")
    if isolated:
        remote = load_without_package(folder, clips, feature_extractor.sampling_rate, timeout=timeout)
        _compare_outputs(outputs, remote, "the staged folder loaded with trust_remote_code=True without resp_audio_hf")
    return outputs


def _compare_outputs(expected: dict, actual: dict, what: str) -> None:
    for name, value in expected.items():
        if name not in actual:
            raise HubPublishError(f"{what} gave no {name}.")
        other = torch.as_tensor(actual[name])
        if other.shape != value.shape or not torch.allclose(value, other, atol=OUTPUT_ATOL, rtol=1e-4):
            diff = (value - other).abs().max().item() if other.shape == value.shape else f"shape {tuple(other.shape)}"
            raise HubPublishError(f"{what} gives different {name} than the source model (max difference {diff}).")


# Run in a child process. It blocks resp_audio_hf so the remote code cannot lean on the installed package, loads the
# folder through the Auto classes with trust_remote_code=True, and saves the outputs on the probe clips.
_REMOTE_CODE_CHECK = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "resp_audio_hf":
                raise ImportError(f"{name} is blocked: the remote code must not need the resp_audio_hf package")

    sys.meta_path.insert(0, BlockPackage())
    import numpy as np, torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

    folder, probe_file, output_file = sys.argv[1:4]
    probe = np.load(probe_file)
    clips = [probe[f"clip{i}"] for i in range(len(probe.files) - 1)]
    extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
    inputs = extractor(clips, sampling_rate=int(probe["sampling_rate"]), return_tensors="pt")
    outputs = {}
    with torch.no_grad():
        encoder = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        encoded = encoder(**inputs)
        outputs["pooler_output"] = encoded.pooler_output
        outputs["last_hidden_state"] = encoded.last_hidden_state
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        if "AutoModelForAudioClassification" in config.auto_map:
            classifier = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True).eval()
            outputs["logits"] = classifier(**inputs).logits
    save_file({k: v.contiguous() for k, v in outputs.items()}, output_file)
    """
)


def load_without_package(
    folder: str | os.PathLike, clips: list[np.ndarray], sampling_rate: int, timeout: float = 600.0
) -> dict[str, torch.Tensor]:
    """
    Load `folder` in a fresh Python process where `resp_audio_hf` cannot be imported (offline, with a private module
    cache) and return its `pooler_output`, `last_hidden_state` and, with a head, `logits` on `clips`.
    """
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="resp_audio_remote_check_") as scratch:
        scratch = Path(scratch)
        np.savez(scratch / "probe.npz", sampling_rate=sampling_rate, **{f"clip{i}": c for i, c in enumerate(clips)})
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(scratch / "modules"),
               "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _REMOTE_CODE_CHECK, str(Path(folder).resolve()), str(scratch / "probe.npz"),
                 str(scratch / "outputs.safetensors")],
                cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise HubPublishError(f"Loading {folder} with remote code took longer than {timeout:.0f} s.") from None
        if completed.returncode != 0:
            raise HubPublishError(
                f"{folder} does not load with trust_remote_code=True in a process without resp_audio_hf; users of "
                f"the Hub repository would hit the same error:\n{completed.stderr.strip()[-3000:]}"
            )
        return load_file(scratch / "outputs.safetensors")


# ---------------------------------------------------------------------------------------------------------------------
# Upload


def get_hub_token() -> str:
    """The token of `HF_TOKEN` or of the cached `hf auth login`; a clear error when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise MissingTokenError(
            "No Hugging Face token found. Run `hf auth login` (or `huggingface-cli login`), or set the HF_TOKEN "
            "environment variable to a token with write access."
        )
    return token


def upload_staged_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
):
    """
    Create `repo_id` if it does not exist and upload every file of the staged `folder` in one commit, so the
    repository is never seen half-updated. The folder is checked again first; the token is never logged.
    Returns the `CommitInfo`.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    _check_repo_id(repo_id)
    folder = Path(folder)
    files = check_staged_folder(folder)
    api = HfApi(token=token or get_hub_token())
    repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
    logger.info("Uploading %d files to %s in one commit.", len(operations), repo_url.repo_id)
    commit = api.create_commit(
        repo_url.repo_id,
        operations=operations,
        commit_message=commit_message or f"Upload {repo_url.repo_id.split('/')[-1]} with resp_audio_hf",
        repo_type="model",
        revision=revision,
    )
    logger.info("Uploaded %s: %s", repo_url.repo_id, commit.commit_url)
    return commit


@dataclass
class PublishResult:
    """What [`publish`] did: the staged folder (removed after upload unless kept) and the commit, if uploaded."""

    staged: StagedFolder
    commit: Any = None


def publish(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    dry_run: bool = False,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    benchmark: str | os.PathLike | None = None,
    family: str | None = None,
    training_data: str | None = None,
    datasets: list[str] | tuple[str, ...] = (),
    template_dir: str | os.PathLike | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
) -> PublishResult:
    """
    Stage, validate and (unless `dry_run`) upload `model_dir` to `repo_id`. A dry run needs no token and keeps the
    staged folder at `output_dir` (default `hub_staging/<namespace>--<name>`); an upload stages into `output_dir` if
    given and keeps it, otherwise into a temporary folder. The token is looked up before any work so a missing login
    fails fast.
    """
    token = None if dry_run else get_hub_token()
    if dry_run and output_dir is None:
        output_dir = Path("hub_staging") / repo_id.replace("/", "--")
    stage_options = dict(
        benchmark=benchmark, family=family, training_data=training_data, datasets=datasets,
        template_dir=template_dir, overwrite=overwrite,
    )
    if output_dir is not None:
        staged = stage_for_hub(model_dir, output_dir, repo_id, **stage_options)
        if dry_run:
            return PublishResult(staged=staged)
        commit = upload_staged_folder(
            staged.path, repo_id, private=private, token=token, commit_message=commit_message, revision=revision
        )
        return PublishResult(staged=staged, commit=commit)
    with tempfile.TemporaryDirectory(prefix="resp_audio_hub_") as scratch:
        staged = stage_for_hub(model_dir, Path(scratch) / "staged", repo_id, **stage_options)
        commit = upload_staged_folder(
            staged.path, repo_id, private=private, token=token, commit_message=commit_message, revision=revision
        )
    return PublishResult(staged=staged, commit=commit)


__all__ = [
    "BenchmarkResults",
    "HubPublishError",
    "MissingTokenError",
    "ModelFamily",
    "PublishResult",
    "StagedFolder",
    "TaskResult",
    "check_staged_folder",
    "get_hub_token",
    "load_benchmark_results",
    "load_checkpoint",
    "load_model_family",
    "load_without_package",
    "publish",
    "render_model_card",
    "stage_for_hub",
    "upload_staged_folder",
    "validate_staged_folder",
]
