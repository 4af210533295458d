"""resp_audio_hf: respiratory-audio foundation models (PaSST, AST, M2D, EfficientAT) as Hugging Face transformers models.

Importing the package registers the `resp_audio` and `efficientat` model types with the Auto classes, so that
`AutoModel.from_pretrained(folder)` and `pipeline("audio-classification", model=folder)` work (the latter through
`RespAudioClassificationPipeline`, which checks input before decoding or resampling it), and marks the classes
for remote code, so that `save_pretrained` writes the modeling files next to the weights and a process without this
package can load the folder with `trust_remote_code=True`.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
)

from .collation import RespAudioCollator
from .configuration_efficientat import EfficientATConfig
from .configuration_resp_audio import MODEL_FAMILIES, PRESETS, ModelFamily, RespAudioConfig
from .feature_extraction_resp_audio import RespAudioFeatureExtractor
from .modeling_efficientat import (
    EfficientATForAudioClassification,
    EfficientATModel,
    EfficientATModelOutput,
    EfficientATPreTrainedModel,
)
from .modeling_resp_audio import (
    RespAudioForAudioClassification,
    RespAudioModel,
    RespAudioModelOutput,
    RespAudioPreTrainedModel,
)
from .pipeline_resp_audio import RespAudioClassificationPipeline, register_pipeline

__version__ = "0.1.0"


def _register_model_type(config_class, model_class, classifier_class) -> None:
    """Register one model type with the Auto classes (feature extractor: `RespAudioFeatureExtractor`), and its classes
    for remote code, so that `save_pretrained` copies their modules next to the weights."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForAudioClassification.register(config_class, classifier_class, exist_ok=True)
    AutoFeatureExtractor.register(config_class, RespAudioFeatureExtractor, exist_ok=True)
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModel")
    classifier_class.register_for_auto_class("AutoModelForAudioClassification")


_register_model_type(RespAudioConfig, RespAudioModel, RespAudioForAudioClassification)
# EfficientAT's MobileNets: their own model type (a CNN shares no field with the ViT family), PaSST's front end.
_register_model_type(EfficientATConfig, EfficientATModel, EfficientATForAudioClassification)
RespAudioFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
register_pipeline()

__all__ = [
    "MODEL_FAMILIES",
    "PRESETS",
    "EfficientATConfig",
    "EfficientATForAudioClassification",
    "EfficientATModel",
    "EfficientATModelOutput",
    "EfficientATPreTrainedModel",
    "ModelFamily",
    "RespAudioClassificationPipeline",
    "RespAudioCollator",
    "RespAudioConfig",
    "RespAudioFeatureExtractor",
    "RespAudioForAudioClassification",
    "RespAudioModel",
    "RespAudioModelOutput",
    "RespAudioPreTrainedModel",
]
