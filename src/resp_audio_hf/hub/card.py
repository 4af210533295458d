"""The model card: the per-family facts of `model_cards/<card>.yaml` (`card` of the family's record in
`MODEL_FAMILIES`) and the card rendered from `model_cards/template.md` with the benchmark results as the model-index."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..configuration_resp_audio import MODEL_FAMILIES, RespAudioConfig, family_of_config, find_model_type
from ..feature_extraction_resp_audio import RespAudioFeatureExtractor
from .checkpoint import saved_model_class
from .errors import HubPublishError
from .results import BenchmarkResult, task_dataset, to_eval_result

CARD_TEMPLATE = "template.md"
# The card template and the per-family YAML files, shipped as package data (so publishing works from a wheel).
DEFAULT_TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_cards"


@dataclass(frozen=True)
class CardFacts:
    """
    What the model card says about one model family: `name` and `architecture` from its record in `MODEL_FAMILIES`,
    the rest read from `model_cards/<name>.yaml`.

    Attributes:
        name: the family's card (`resp-passt`, `resp-ast`, `resp-m2d`), its YAML file's name.
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


def families_with_cards() -> tuple[str, ...]:
    """The model families published with the card template (those whose record names a `card`)."""
    return tuple(name for name, family in MODEL_FAMILIES.items() if family.card)


def load_card_facts(family: str, template_dir: str | os.PathLike | None = None) -> CardFacts:
    """The card facts of a model family (`passt`, `ast` or `m2d`), from `model_cards/<its card>.yaml`."""
    import yaml

    if family not in families_with_cards():
        raise HubPublishError(f"No model card for family {family!r}; families with cards: {families_with_cards()}.")
    record = MODEL_FAMILIES[family]
    path = _template_dir(template_dir) / f"{record.card}.yaml"
    if not path.is_file():
        raise HubPublishError(f"No model card facts file {path} for the {family} family.")
    raw = yaml.safe_load(path.read_text()) or {}
    known_fields = set(CardFacts.__dataclass_fields__) - {"name", "architecture"}
    unknown = sorted(set(raw) - known_fields)
    if unknown:
        raise HubPublishError(f"{path} has unknown fields {unknown}; allowed: {sorted(known_fields)}.")
    lists = {key: tuple(raw[key]) for key in ("citations", "datasets", "tags") if key in raw}
    try:
        return CardFacts(name=record.card, architecture=record.architecture, **{**raw, **lists})
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


def render_model_card(
    config: RespAudioConfig,
    repo_id: str,
    *,
    benchmark: BenchmarkResult | None = None,
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
        family: the model family whose card facts to use (`passt`, `ast`, `m2d`); defaults to the configuration's.
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
    info = load_card_facts(family or family_of_config(config).name, folder)
    model_name = repo_id.rstrip("/").split("/")[-1]
    labels = _class_names(config)
    results = list(benchmark.tasks.values()) if benchmark is not None else []
    model_type = find_model_type(config)
    if num_parameters is None:
        num_parameters = saved_model_class(model_type, config.architectures)(config).num_parameters()

    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=info.license,
        license_name=info.license_name,
        license_link=info.license_link,
        base_model=info.base_model,
        datasets=list(dict.fromkeys([*info.datasets, *datasets])) or None,
        tags=list(dict.fromkeys(
            ["audio", "respiratory-sounds", "health", "spectrogram-transformer", model_type.model_type, *info.tags,
             "opera-benchmark", "custom_code"]
        )),
        metrics=sorted({r.metric_spec.hub_metric_type for r in results}) or None,
        model_name=model_name if results else None,
        eval_results=[to_eval_result(r) for r in results] or None,
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
        window_seconds=config.window_frames * extractor.hop_length / extractor.sampling_rate,
        labels=labels,
        results=results,
        corpus_titles={r.task_id: task_dataset(r.task_id) for r in results},
        not_scored=benchmark.not_scored if benchmark is not None else (),
        benchmark_source=benchmark.source if benchmark is not None else None,
        training_data=training_data.strip() if training_data else None,
    )
    return ModelCard(content)


def _class_names(config: RespAudioConfig) -> list[str]:
    if find_model_type(config).classifier_class.__name__ not in (config.architectures or []):
        return []
    return [str(config.id2label[i]) for i in range(config.num_labels)]
