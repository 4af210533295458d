"""hear21passt's PaSST-S checkpoints to [`RespAudioModel`] / [`RespAudioForAudioClassification`]."""

from __future__ import annotations

import os

import torch

from ..feature_extraction_resp_audio import RespAudioFeatureExtractor
from .common import (
    TIMM_VIT_RENAMES,
    ClassifierLayout,
    ConvertedCheckpoint,
    Renames,
    build_model,
    default_window_frames,
    encoder_shape,
    largest_stride,
    load_original_state_dict,
    published_config,
    register_converter,
    rename_with_optional_head,
    resize_note,
    resize_time_axis,
    torch_layer_norm_head_overrides,
    unwrap_encoder_state,
)

# hear21passt `PaSST` (the released passt-s-*.pt state dicts).
PASST_RENAMES: Renames = TIMM_VIT_RENAMES + [
    (r"^dist_token$", "embeddings.distillation_token"),
    (r"^new_pos_embed$", "embeddings.prefix_position_embeddings"),
    (r"^freq_new_pos_embed$", "embeddings.frequency_position_embeddings"),
    (r"^time_new_pos_embed$", "embeddings.time_position_embeddings"),
]
PASST_HEAD = ClassifierLayout.layer_norm_linear("head")
# PaSST's forward feeds (CLS + distillation) / 2 to `head` only; `head_dist` is trained but never used at inference.
PASST_UNUSED = [r"^head_dist\."]


@register_converter("passt")
def convert_passt(
    source: str | os.PathLike | dict[str, torch.Tensor],
    window_frames: int | None = None,
    with_head: bool = True,
    pooling: str | None = None,
    num_attention_heads: int | None = None,
    num_mel_bins: int = 128,
    id2label: dict | None = None,
) -> ConvertedCheckpoint:
    """
    Convert a hear21passt `PaSST` state dict (the released `passt-s-*.pt` files, or `PaSST.state_dict()`).

    Args:
        source: path of the `.pt` file, or the state dict itself.
        window_frames: frames of one window of the converted model; defaults to the checkpoint's own clip length.
            Shorter keeps the first time position embeddings, longer interpolates them linearly.
        with_head: convert the AudioSet head (`head`: LayerNorm + Linear on (CLS + distillation) / 2) into a
            [`RespAudioForAudioClassification`] with `pooling="cls"`; otherwise convert the encoder only.
        pooling: pooling of an encoder-only conversion (default: the RespAudio default, frequency-preserving).
        num_attention_heads: attention heads (default: hidden size / 64, true of all released PaSST models).
        num_mel_bins: mel bins of the front end the checkpoint was trained on.
        id2label: names of the head's outputs (the checkpoint does not store them).
    """
    state = source if isinstance(source, dict) else load_original_state_dict(source)
    state, wrapper_keys = unwrap_encoder_state(state)
    if "time_new_pos_embed" not in state:
        raise ValueError(
            "Not a PaSST state dict: it has no time_new_pos_embed (PaSST's separate time/frequency position "
            f"embeddings); its keys start {sorted(state)[:5]}. For an AST or M2D checkpoint use --family ast or "
            "--family m2d."
        )
    state, unused_keys, with_head, pooling = rename_with_optional_head(
        state, PASST_RENAMES, PASST_UNUSED, PASST_HEAD, with_head, pooling, "passt"
    )
    unused_keys = wrapper_keys + unused_keys

    shape = encoder_shape(state, num_attention_heads)
    patch = shape["patch_size"]
    frequency_patches = state["embeddings.frequency_position_embeddings"].shape[2]
    time_patches = state["embeddings.time_position_embeddings"].shape[3]
    # hear21passt does not store its stride; released models use 10 (overlapping) or 16, equal along both axes.
    stride = largest_stride(num_mel_bins, patch, frequency_patches)
    preset = published_config("passt")
    notes = [f"patch stride {stride} inferred from {frequency_patches} frequency patches of {num_mel_bins} mel bins"]
    checkpoint_window_frames = default_window_frames(preset.window_frames, patch, stride, time_patches)
    overrides = dict(
        shape,
        num_mel_bins=num_mel_bins,
        frequency_stride=stride,
        time_stride=stride,
        window_frames=window_frames or checkpoint_window_frames,
        num_prefix_tokens=state["embeddings.prefix_position_embeddings"].shape[1],
    )
    if pooling is not None:
        overrides["pooling"] = pooling
    if with_head:
        overrides.update(torch_layer_norm_head_overrides(state, id2label))
    config = published_config("passt", **overrides)
    if config.num_time_patches != time_patches:
        state["embeddings.time_position_embeddings"] = resize_time_axis(
            state["embeddings.time_position_embeddings"], config.num_time_patches, dim=3
        )
        notes.append(resize_note(time_patches, config.num_time_patches))
    model = build_model(config, state, with_head)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)
