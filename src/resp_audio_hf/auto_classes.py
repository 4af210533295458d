"""
The one home of what ties this package's models to transformers' Auto classes and pipelines: their registration
(`register_auto_classes`, run on import of the package), the `auto_map` a saved folder carries (`auto_map_of`), and the
`custom_pipelines` entry while a classifier is saved. Every model type is registered from its record in `MODEL_TYPES`.

Shipped as remote code (classifiers' `save_pretrained` and the configurations use it), so it imports only the standard
library and transformers at module level.
"""

from __future__ import annotations

import contextlib

from .pipeline_entry import CUSTOM_PIPELINES, TASK


def auto_map_of(model) -> dict[str, str]:
    """Every Auto class a saved `model` loads with (`module.Class`, as its model type's record names them): a
    classifier also loads as its bare encoder; an encoder has no classifier entry."""
    from .configuration_resp_audio import find_model_type

    auto_map = dict(find_model_type(model.config).auto_classes)
    if model.base_model is model:
        del auto_map["AutoModelForAudioClassification"]
    return auto_map


def register_auto_classes() -> None:
    """Register every model type of `MODEL_TYPES` with the Auto classes, and its classes for remote code, so that
    `save_pretrained` copies their modules next to the weights."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

    from .configuration_resp_audio import MODEL_TYPES

    for record in MODEL_TYPES.values():
        config_class, model_class, classifier_class = (
            record.config_class, record.base_model_class, record.classifier_class
        )
        AutoConfig.register(record.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
        AutoModelForAudioClassification.register(config_class, classifier_class, exist_ok=True)
        AutoFeatureExtractor.register(config_class, record.feature_extractor_class, exist_ok=True)
        config_class.register_for_auto_class()
        model_class.register_for_auto_class("AutoModel")
        classifier_class.register_for_auto_class("AutoModelForAudioClassification")
        record.feature_extractor_class.register_for_auto_class("AutoFeatureExtractor")


@contextlib.contextmanager
def classifier_save_entries(config, encoder_class):
    """
    While a classifier's `save_pretrained` runs: name `encoder_class` for `AutoModel` in `config.auto_map`, so that a
    published classifier also loads as a bare encoder with `trust_remote_code=True` where this package is not
    installed, and name the package's pipeline in `custom_pipelines` (save_pretrained copies its module with the
    others), so that `pipeline(..., trust_remote_code=True)` finds it there. Only the saved file carries
    `custom_pipelines`: on a live config it would make transformers demand remote code.
    """
    # Imported here, not at the top: the pipeline module imports this one. The import also makes `save_pretrained`
    # copy the pipeline's module with the classifier's (transformers follows the relative imports of saved code).
    from .pipeline_resp_audio import RespAudioClassificationPipeline

    pipeline_class = RespAudioClassificationPipeline
    custom_pipelines = {TASK: {**CUSTOM_PIPELINES[TASK], "impl": _reference(pipeline_class)}}
    auto_map = dict(getattr(config, "auto_map", None) or {})
    auto_map.setdefault("AutoModel", _reference(encoder_class))
    config.auto_map = auto_map
    previous = config.__dict__.get("custom_pipelines")
    config.custom_pipelines = custom_pipelines
    try:
        yield
    finally:
        if previous is None:
            del config.custom_pipelines
        else:
            config.custom_pipelines = previous


def _reference(cls: type) -> str:
    """`module.Class` of a class of this package (or of its remote-code copy), as `auto_map` names classes."""
    return f"{cls.__module__.split('.')[-1]}.{cls.__name__}"


__all__ = [
    "CUSTOM_PIPELINES",
    "auto_map_of",
    "classifier_save_entries",
    "register_auto_classes",
]
