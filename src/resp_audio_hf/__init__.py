"""resp_audio_hf: respiratory-audio foundation models (PaSST, AST, M2D, EfficientAT) as Hugging Face transformers models.

Importing the package registers the `resp_audio` and `efficientat` model types with the Auto classes, so that
`AutoModel.from_pretrained(folder)` and `pipeline("audio-classification", model=folder)` work (the latter through
`RespAudioClassificationPipeline`, which checks input before decoding or resampling it), and marks the classes
for remote code, so that `save_pretrained` writes the modeling files next to the weights and a process without this
package can load the folder with `trust_remote_code=True`.
"""

from .auto_classes import register_auto_classes
from .collation import RespAudioCollator
from .configuration_efficientat import EfficientATConfig
from .configuration_resp_audio import (
    MODEL_FAMILIES,
    MODEL_TYPES,
    PRESETS,
    ModelFamily,
    ModelType,
    RespAudioConfig,
    find_model_type,
)
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


register_auto_classes()
register_pipeline()

__all__ = [
    "MODEL_FAMILIES",
    "MODEL_TYPES",
    "PRESETS",
    "EfficientATConfig",
    "EfficientATForAudioClassification",
    "EfficientATModel",
    "EfficientATModelOutput",
    "EfficientATPreTrainedModel",
    "ModelFamily",
    "ModelType",
    "RespAudioClassificationPipeline",
    "RespAudioCollator",
    "RespAudioConfig",
    "RespAudioFeatureExtractor",
    "RespAudioForAudioClassification",
    "RespAudioModel",
    "RespAudioModelOutput",
    "RespAudioPreTrainedModel",
    "find_model_type",
]
