"""M2D checkpoints (nttcslab/m2d `checkpoint-*.pth`, the settings in the folder name) to [`RespAudioModel`]."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..configuration_resp_audio import MODEL_FAMILIES
from ..feature_extraction_resp_audio import FRONT_ENDS, RespAudioFeatureExtractor
from .common import (
    TIMM_VIT_RENAMES,
    ConvertedCheckpoint,
    Renames,
    build_model,
    encoder_shape,
    load_original_state_dict,
    published_config,
    register_converter,
    rename_keys,
    resize_flat_positions,
    resize_note,
    strip_prefix,
)

# M2D `checkpoint-*.pth` (its `model` entry): the timm encoder plus its fixed sine-cosine table.
M2D_RENAMES: Renames = TIMM_VIT_RENAMES + [
    (r"^pos_embed$", "embeddings.position_embeddings"),
]
# Pre-training parts (EMA target encoder, decoder/predictor, mask token, offline-teacher and CLAP projections) and
# the heads of EVAR fine-tuning runs, which are not part of the audio encoder. `norm_stats` goes to the front end.
M2D_UNUSED = [
    r"^target_",
    r"^decoder_",
    r"^mask_token$",
    r"^offline_predictor\.",
    r"^predictor\.",
    r"^audio_proj\.",
    r"^text_proj\.",
    r"^text_encoder\.",
    r"^module\.",
]
# Prefixes of the same encoder as saved by M2D's RuntimeM2D (`backbone.`) and by EVAR fine-tuning.
M2D_PREFIXES = ("module.ar.runtime.backbone.", "backbone.")
# M2D's `LocalViT` defaults (the m2d front end's), used by its 2022 checkpoints that carry no `norm_stats`.
M2D_DEFAULT_NORM_STATS = (FRONT_ENDS["m2d"].defaults["mean"], FRONT_ENDS["m2d"].defaults["std"])
# Spectrogram settings of M2D's runtime per sampling-rate tag of the checkpoint name: the m2d front end's, changed as
# the M2D family's record says.
M2D_FRONT_END_BY_RATE = {
    tag: {
        **{key: FRONT_ENDS["m2d"].defaults[key] for key in ("sampling_rate", "n_fft", "win_length", "hop_length",
                                                           "f_min", "f_max")},
        **variant,
    }
    for tag, variant in MODEL_FAMILIES["m2d"].front_end_variants.items()
}


@dataclass
class M2DName:
    """What an M2D checkpoint's folder name states, e.g. `m2d_vit_base-80x608p16x16-221006-mr7`."""

    model: str
    num_mel_bins: int
    window_frames: int
    patch_size: int
    sampling_rate_tag: str


def parse_m2d_name(name: str) -> M2DName:
    """Parse `<model>-<mel>x<frames>p<patch>x<patch>[p<16k|32k>][p...]-...` as M2D's runtime does."""
    match = re.match(r"^([^-]+)-(\d+)x(\d+)p(\d+)x(\d+)(?:p(16k|32k))?(?:p[^-]*)?(?:-|$)", name)
    if not match:
        raise ValueError(
            f"Cannot read input and patch sizes from {name!r}. M2D checkpoints live in folders named like "
            "'m2d_vit_base-80x608p16x16-221006-mr7' (<model>-<mel bins>x<frames>p<patch>x<patch>[p16k|p32k]); "
            "keep the released folder name."
        )
    model, mels, frames, patch_f, patch_t, rate = match.groups()
    if patch_f != patch_t:
        raise ValueError(f"{name!r} has non-square {patch_f}x{patch_t} patches; RespAudio supports square patches.")
    return M2DName(model, int(mels), int(frames), int(patch_f), rate or "16k")


@register_converter("m2d")
def convert_m2d(
    source: str | os.PathLike,
    window_frames: int | None = None,
    pooling: str | None = None,
    num_attention_heads: int | None = None,
) -> ConvertedCheckpoint:
    """
    Convert an M2D checkpoint (`<name>/checkpoint-*.pth`; its `model` entry also holds the target encoder, decoder
    and predictor, which are left out). Input size, patch size and sampling rate come from the folder name (or the
    file name), the normalisation statistics from the checkpoint's `norm_stats` (M2D's 2022 default when absent).
    The encoder is converted; heads of EVAR fine-tuning runs (BatchNorm + Linear) are left out.

    Args:
        source: the `.pth` file inside its released folder.
        window_frames: frames of one window (default: the checkpoint's input length); longer interpolates the time
            columns of the position table linearly, shorter keeps the first ones.
        pooling: pooling of the converted model (default: the RespAudio default, frequency-preserving).
        num_attention_heads: attention heads (default: hidden size / 64, true of M2D's ViT-Base and ViT-Large).
    """
    path = Path(source)
    try:
        name = parse_m2d_name(path.parent.name)
    except ValueError:
        name = parse_m2d_name(path.stem)
    if name.sampling_rate_tag not in M2D_FRONT_END_BY_RATE:
        raise ValueError(f"Unknown M2D sampling-rate tag {name.sampling_rate_tag!r}.")
    state = load_original_state_dict(path)
    for prefix in M2D_PREFIXES:
        state = strip_prefix(state, prefix)
    if "pos_embed" not in state or "cls_token" not in state:
        raise ValueError(
            "Not an M2D checkpoint: it has no pos_embed / cls_token of a timm VisionTransformer. For PaSST or AST "
            "use --family passt/ast."
        )
    norm_stats = state.pop("norm_stats", None)
    mean, std = M2D_DEFAULT_NORM_STATS if norm_stats is None else (float(norm_stats[0]), float(norm_stats[1]))
    notes = []
    if norm_stats is None:
        notes.append(f"no norm_stats in the checkpoint: using M2D's 2022 defaults {M2D_DEFAULT_NORM_STATS}")
    state, unused_keys = rename_keys(state, M2D_RENAMES, M2D_UNUSED, "m2d")

    shape = encoder_shape(state, num_attention_heads)
    if shape["patch_size"] != name.patch_size:
        raise ValueError(f"The name states {name.patch_size}-wide patches, the weights {shape['patch_size']}.")
    frequency_patches = name.num_mel_bins // name.patch_size
    time_patches = name.window_frames // name.patch_size
    positions = state["embeddings.position_embeddings"]
    if positions.shape[1] != 1 + frequency_patches * time_patches:
        raise ValueError(
            f"pos_embed has {positions.shape[1]} positions but a {name.num_mel_bins}x{name.window_frames} input with "
            f"{name.patch_size}x{name.patch_size} patches needs 1 + {frequency_patches * time_patches}; does the "
            "folder name belong to this checkpoint?"
        )
    front_end = M2D_FRONT_END_BY_RATE[name.sampling_rate_tag]
    overrides = dict(
        shape,
        num_mel_bins=name.num_mel_bins,
        frequency_stride=name.patch_size,
        time_stride=name.patch_size,
        sampling_rate=front_end["sampling_rate"],
        window_frames=window_frames or name.window_frames,
    )
    if pooling is not None:
        overrides["pooling"] = pooling
    config = published_config("m2d", **overrides)
    if config.num_time_patches != time_patches:
        state["embeddings.position_embeddings"] = resize_flat_positions(
            positions, 1, frequency_patches, config.num_time_patches
        )
        notes.append(resize_note(time_patches, config.num_time_patches))
    model = build_model(config, state, with_head=False)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config, **front_end, mean=mean, std=std)
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)
