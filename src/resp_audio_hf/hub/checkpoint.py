"""Loading a checkpoint folder written by `save_pretrained` with this package's classes, head or no head."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..configuration_resp_audio import MODEL_TYPES, ModelType
from ..feature_extraction_resp_audio import RespAudioFeatureExtractor
from .errors import HubPublishError

logger = logging.getLogger(__name__)


def saved_model_class(record: ModelType, architectures: list[str] | None) -> type:
    """The classifier class of `record` where the saved model is its classifier, else its encoder class."""
    classifier = record.classifier_class
    return classifier if classifier.__name__ in (architectures or []) else record.base_model_class


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
    if model_type not in MODEL_TYPES:
        raise HubPublishError(
            f"{config_file} describes a {model_type!r} model, not one of {sorted(MODEL_TYPES)}; this tool publishes "
            "resp_audio_hf checkpoints only."
        )
    record = MODEL_TYPES[model_type]
    if not record.publishable:
        raise HubPublishError(f"{config_file} describes a {model_type!r} model, which this tool does not publish.")
    config = record.config_class.from_pretrained(model_dir)
    model_class = saved_model_class(record, config.architectures)
    model, loading_info = model_class.from_pretrained(model_dir, config=config, output_loading_info=True)
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
