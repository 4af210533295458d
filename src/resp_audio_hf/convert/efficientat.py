"""EfficientAT MobileNets (`mn*_as*.pt`) to [`EfficientATModel`] / [`EfficientATForAudioClassification`]."""

from __future__ import annotations

import os
import re

import torch

from ..configuration_efficientat import EfficientATConfig
from ..data.file_io import read_table_rows
from ..feature_extraction_resp_audio import RespAudioFeatureExtractor
from ..modeling_efficientat import EfficientATModel
from .common import (
    ClassifierLayout,
    ConvertedCheckpoint,
    Renames,
    build_model,
    label_overrides,
    load_original_state_dict,
    register_converter,
    rename_keys,
    unwrap_encoder_state,
)

# EfficientAT's released widths (`mn01` ... `mn40`); the width is not stored in the weights, only implied by them.
EFFICIENTAT_WIDTHS = (0.1, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 2.0, 3.0, 4.0)
EFFICIENTAT_HEAD = ClassifierLayout(
    "classifier.5.weight",
    [(r"^classifier\.2\.", "classifier.dense."), (r"^classifier\.5\.", "classifier.out_proj.")],
    r"^classifier\.",
)
# What the torchvision `Conv2dNormActivation` of EfficientAT keeps at index 0 and 1.
_CONV_NORM = [(r"0\.", "convolution."), (r"1\.", "normalization.")]


def efficientat_renames(config: EfficientATConfig) -> Renames:
    """
    Renames of EfficientAT's `MN` state dict (`features.<i>` of an `nn.Sequential`) for the block table of `config`.
    Inside a block the layers are numbered in order, so a block's numbering depends on whether it has an expansion
    layer and squeeze-excitation; the table is built from the same specs the model is built from.
    """
    from ..modeling_efficientat import MOBILENET_V3_LARGE_BLOCKS

    renames: Renames = [(rf"^features\.0\.{old}", f"stem.{new}") for old, new in _CONV_NORM]
    for index, spec in enumerate(MOBILENET_V3_LARGE_BLOCKS):
        parts = []
        if config.channels(spec.expanded_channels) != config.channels(spec.in_channels):
            parts.append("expansion")
        parts.append("depthwise")
        if spec.squeeze_excitation:
            parts.append("squeeze_excitation")
        parts.append("projection")
        for position, part in enumerate(parts):
            prefix = rf"^features\.{index + 1}\.block\.{position}\."
            if part == "squeeze_excitation":
                # EfficientAT's ConcurrentSEBlock with channel squeeze-excitation only: one layer, max over one.
                renames.append((prefix + r"conc_se_layers\.0\.fc1\.", f"blocks.{index}.{part}.reduce."))
                renames.append((prefix + r"conc_se_layers\.0\.fc2\.", f"blocks.{index}.{part}.expand."))
            else:
                renames += [(prefix + old, f"blocks.{index}.{part}.{new}") for old, new in _CONV_NORM]
    last = len(MOBILENET_V3_LARGE_BLOCKS) + 1
    renames += [(rf"^features\.{last}\.{old}", f"last_layer.{new}") for old, new in _CONV_NORM]
    return renames


def _efficientat_width(state: dict[str, torch.Tensor]) -> float:
    """The released width whose layer names and sizes match the checkpoint's encoder."""

    shapes = {key: tuple(value.shape) for key, value in state.items() if not key.startswith("classifier.")}
    for width in EFFICIENTAT_WIDTHS:
        config = EfficientATConfig(width_multiplier=width)
        renames = efficientat_renames(config)
        with torch.device("meta"):
            expected = {key: tuple(value.shape) for key, value in EfficientATModel(config).state_dict().items()}
        if len(expected) == len(shapes) and all(
            expected.get(_first_rename(key, renames)) == shape for key, shape in shapes.items()
        ):
            return width
    raise ValueError(
        f"The layer sizes fit none of EfficientAT's MobileNet widths {EFFICIENTAT_WIDTHS}; if the model is another "
        "width, pass width_multiplier (--width-multiplier)."
    )


def _first_rename(key: str, renames: Renames) -> str | None:
    for pattern, replacement in renames:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def read_audioset_labels(path: str | os.PathLike) -> dict[int, str]:
    """`{index: display_name}` from AudioSet's `class_labels_indices.csv` (columns index, mid, display_name)."""
    rows = read_table_rows(path)
    if not rows or not {"index", "display_name"} <= set(rows[0]):
        raise ValueError(f"{path} is not AudioSet's class_labels_indices.csv (needs columns index and display_name).")
    return {int(row["index"]): row["display_name"] for row in rows}


@register_converter("efficientat")
def convert_efficientat(
    source: str | os.PathLike | dict[str, torch.Tensor],
    with_head: bool = True,
    pooling: str | None = None,
    width_multiplier: float | None = None,
    id2label: dict | None = None,
) -> ConvertedCheckpoint:
    """
    Convert an EfficientAT MobileNet (`mn*_as*.pt`, the state dict of its `MN` with the `mlp` head; Schmid, Koutini
    and Widmer, ICASSP 2023) into an [`EfficientATForAudioClassification`] (or an [`EfficientATModel`] without the
    head), with PaSST's front end, which EfficientAT's `AugmentMelSTFT` is (32 kHz, 128 Kaldi mel bands 0-15 kHz,
    `(log + 4.5) / 5`).

    Args:
        source: path of the `.pt` file, or the state dict itself.
        with_head: convert the AudioSet head (multi-label: `problem_type="multi_label_classification"`).
        pooling: `pooler_output` of the converted model (default: frequency-preserving; `"mean"` is EfficientAT's
            own embedding). The head reads the mean either way.
        width_multiplier: the model's width (default: inferred from the layer sizes, e.g. 0.4 for `mn04`).
        id2label: names of the head's outputs (e.g. [`read_audioset_labels`]; the checkpoint does not store them).
    """
    state = source if isinstance(source, dict) else load_original_state_dict(source)
    state, wrapper_keys = unwrap_encoder_state(state)
    if "features.0.0.weight" not in state or "features.1.block.0.0.weight" not in state:
        raise ValueError(
            "Not an EfficientAT MobileNet state dict: it has no features.0 stem and features.1.block inverted "
            "residual (dynamic `dymn` models and other families are not supported)."
        )
    if not any(key.startswith("classifier.5.") for key in state) and any(k.startswith("classifier.") for k in state):
        raise ValueError("Only EfficientAT's `mlp` head (classifier.2 and classifier.5) is supported.")
    width = width_multiplier or _efficientat_width(state)
    has_head = EFFICIENTAT_HEAD.weight_key in state
    with_head = has_head and with_head
    config_fields = dict(width_multiplier=width)
    if pooling is not None:
        config_fields["pooling"] = pooling
    if with_head:
        config_fields.update(label_overrides(state[EFFICIENTAT_HEAD.weight_key].shape[0], id2label))
        config_fields["problem_type"] = "multi_label_classification"
        config_fields["classifier_hidden_size"] = state["classifier.2.weight"].shape[0]
    config = EfficientATConfig(**config_fields)
    renames = efficientat_renames(config) + (EFFICIENTAT_HEAD.renames if with_head else [])
    unused = [] if with_head else [EFFICIENTAT_HEAD.pattern]
    state, unused_keys = rename_keys(state, renames, unused, "efficientat")
    unused_keys = wrapper_keys + unused_keys
    model = build_model(config, state, with_head)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    notes = [] if width_multiplier else [f"width multiplier {width} inferred from the layer sizes"]
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)
