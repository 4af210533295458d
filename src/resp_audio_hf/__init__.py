"""resp_audio_hf: respiratory-audio foundation models (PaSST, AST, M2D) as Hugging Face transformers models.

Importing the package registers the `resp_audio` model type with the Auto classes, so that
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
from .configuration_resp_audio import PRESETS, RespAudioConfig
from .feature_extraction_resp_audio import RespAudioFeatureExtractor
from .modeling_resp_audio import (
    FrequencyPreservingPooler,
    MeanPooler,
    RespAudioForAudioClassification,
    RespAudioModel,
    RespAudioModelOutput,
    RespAudioPreTrainedModel,
)
from .pipeline_resp_audio import RespAudioClassificationPipeline, register_pipeline

__version__ = "0.1.0"

AutoConfig.register(RespAudioConfig.model_type, RespAudioConfig, exist_ok=True)
AutoModel.register(RespAudioConfig, RespAudioModel, exist_ok=True)
AutoModelForAudioClassification.register(RespAudioConfig, RespAudioForAudioClassification, exist_ok=True)
AutoFeatureExtractor.register(RespAudioConfig, RespAudioFeatureExtractor, exist_ok=True)

RespAudioConfig.register_for_auto_class()
RespAudioModel.register_for_auto_class("AutoModel")
RespAudioForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
RespAudioFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
register_pipeline()

__all__ = [
    "PRESETS",
    "FrequencyPreservingPooler",
    "MeanPooler",
    "RespAudioClassificationPipeline",
    "RespAudioCollator",
    "RespAudioConfig",
    "RespAudioFeatureExtractor",
    "RespAudioForAudioClassification",
    "RespAudioModel",
    "RespAudioModelOutput",
    "RespAudioPreTrainedModel",
]
