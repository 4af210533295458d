"""Loading a checkpoint folder written by `save_pretrained` with this package's classes, head or no head."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..configuration_resp_audio import RespAudioConfig
from ..feature_extraction_resp_audio import RespAudioFeatureExtractor
from ..modeling_resp_audio import RespAudioForAudioClassification, RespAudioModel
from .errors import HubPublishError

logger = logging.getLogger(__name__)


def _has_classification_head(config: RespAudioConfig) -> bool:
    return RespAudioForAudioClassification.__name__ in (config.architectures or [])


def _model_class(config: RespAudioConfig):
    return RespAudioForAudioClassification if _has_classification_head(config) else RespAudioModel


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
