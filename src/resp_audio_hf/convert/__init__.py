"""
Conversion of the original PaSST, AST, M2D and EfficientAT checkpoints into Hugging Face folders.

One module per family ([`convert_passt`], [`convert_ast`], [`convert_m2d`] turn the original weights into a
[`RespAudioModel`], or a [`RespAudioForAudioClassification`] when the checkpoint carries a classifier;
[`convert_efficientat`] turns EfficientAT's MobileNets into an [`EfficientATForAudioClassification`] or
[`EfficientATModel`]), each registered in `CONVERTERS` under its family's name in `MODEL_FAMILIES`; `common` holds the
machinery they share. Each conversion comes with the [`RespAudioFeatureExtractor`] that reproduces the family's front
end; [`save_converted`] writes both as one folder (config, safetensors weights, preprocessor config and the
remote-code files).
"""

from .ast import convert_ast
from .common import (
    CONVERTERS,
    FAMILIES,
    ConvertedCheckpoint,
    convert_checkpoint,
    load_original_state_dict,
    resize_time_axis,
    save_converted,
)
from .efficientat import convert_efficientat, read_audioset_labels
from .m2d import convert_m2d, parse_m2d_name
from .passt import convert_passt

__all__ = [
    "CONVERTERS",
    "FAMILIES",
    "ConvertedCheckpoint",
    "convert_ast",
    "convert_checkpoint",
    "convert_efficientat",
    "convert_m2d",
    "convert_passt",
    "load_original_state_dict",
    "parse_m2d_name",
    "read_audioset_labels",
    "resize_time_axis",
    "save_converted",
]
