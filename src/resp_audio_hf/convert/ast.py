"""AST checkpoints (YuanGongND/ast state dicts and transformers' Hub folders) to [`RespAudioModel`] /
[`RespAudioForAudioClassification`]."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..feature_extraction_resp_audio import FRONT_ENDS, RespAudioFeatureExtractor
from .common import (
    TIMM_VIT_RENAMES,
    ClassifierLayout,
    ConvertedCheckpoint,
    Renames,
    build_model,
    default_window_frames,
    encoder_shape,
    fuse_qkv,
    label_overrides,
    layer_renames,
    load_original_state_dict,
    published_config,
    register_converter,
    rename_with_optional_head,
    resize_flat_positions,
    resize_note,
    strip_prefix,
    torch_layer_norm_head_overrides,
    unwrap_encoder_state,
)

# YuanGongND/ast `ASTModel` state dict, after removing the DataParallel `module.` and the `v.` (timm DeiT) prefixes.
AST_ORIGINAL_RENAMES: Renames = TIMM_VIT_RENAMES + [
    (r"^dist_token$", "embeddings.distillation_token"),
    (r"^pos_embed$", "embeddings.position_embeddings"),
]
AST_ORIGINAL_HEAD = ClassifierLayout.layer_norm_linear("mlp_head")
# The ImageNet heads of the DeiT backbone, which AST replaces by `mlp_head` and never calls.
AST_ORIGINAL_UNUSED = [r"^head\.", r"^head_dist\."]

# transformers' ASTModel / ASTForAudioClassification, after removing the `audio_spectrogram_transformer.` prefix.
# Query, key and value are renamed to temporary names here and fused into our `attention.qkv` by `fuse_qkv`.
AST_HF_RENAMES: Renames = [
    (r"^embeddings\.cls_token$", "embeddings.cls_token"),
    (r"^embeddings\.distillation_token$", "embeddings.distillation_token"),
    (r"^embeddings\.position_embeddings$", "embeddings.position_embeddings"),
    (r"^embeddings\.patch_embeddings\.projection\.", "embeddings.patch_embeddings.projection."),
    # Hub layout (what save_pretrained writes).
    *layer_renames(
        r"encoder\.layer",
        {
            "layernorm_before": "layernorm_before",
            "attention.attention.query": "attention.query",
            "attention.attention.key": "attention.key",
            "attention.attention.value": "attention.value",
            "attention.output.dense": "attention.proj",
            "layernorm_after": "layernorm_after",
            "intermediate.dense": "mlp.fc1",
            "output.dense": "mlp.fc2",
        },
    ),
    # In-memory layout of transformers >= 5 (`ASTModel.state_dict()`).
    *layer_renames(
        "layers",
        {
            "layernorm_before": "layernorm_before",
            "attention.q_proj": "attention.query",
            "attention.k_proj": "attention.key",
            "attention.v_proj": "attention.value",
            "attention.o_proj": "attention.proj",
            "layernorm_after": "layernorm_after",
            "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        },
    ),
    (r"^layernorm\.", "layernorm."),
]
AST_HF_HEAD_RENAMES: Renames = [
    (r"^classifier\.layernorm\.", "classifier.layernorm."),
    (r"^classifier\.dense\.", "classifier.dense."),
]
AST_HF_HEAD = ClassifierLayout("classifier.dense.weight", AST_HF_HEAD_RENAMES, r"^classifier\.")

# The dataset statistics YuanGongND/ast normalises with (AudioSet's): the ast front end's mean, and half its std, as
# ASTFeatureExtractor divides by twice the dataset std.
AST_NORM_STATS = (FRONT_ENDS["ast"].defaults["mean"], FRONT_ENDS["ast"].defaults["std"] / 2)


@register_converter("ast")
def convert_ast(
    source: str | os.PathLike | dict[str, torch.Tensor],
    window_frames: int | None = None,
    with_head: bool = True,
    pooling: str | None = None,
    num_attention_heads: int | None = None,
    norm_mean: float | None = None,
    norm_std: float | None = None,
    id2label: dict | None = None,
) -> ConvertedCheckpoint:
    """
    Convert an Audio Spectrogram Transformer: a transformers folder (`config.json` plus `model.safetensors` or
    `pytorch_model.bin`, as `MIT/ast-finetuned-audioset-10-10-0.4593`; its `preprocessor_config.json` sets the front
    end) or an original YuanGongND/ast state dict (`audioset_10_10_0.4593.pth`).

    Args:
        source: the folder, the original `.pth` file, or an original state dict.
        window_frames: frames of one window of the converted model (default: the checkpoint's).
        with_head: convert the classifier (`classifier` / `mlp_head`) into a [`RespAudioForAudioClassification`].
        pooling: pooling of an encoder-only conversion.
        num_attention_heads: heads of an original state dict (default: hidden size / 64); folders state it.
        norm_mean, norm_std: the dataset statistics the model was trained with (AST's `norm_mean`/`norm_std`),
            for original state dicts; default AudioSet's. Folders take them from `preprocessor_config.json`.
        id2label: names of the classifier's outputs for an original state dict; folders store them.
    """
    folder = Path(source) if not isinstance(source, dict) and Path(source).is_dir() else None
    if folder is not None:
        return _convert_ast_folder(folder, window_frames, with_head, pooling)
    state = source if isinstance(source, dict) else load_original_state_dict(source)
    state, wrapper_keys = unwrap_encoder_state(state)
    if any(key.startswith(("audio_spectrogram_transformer.", "embeddings.")) for key in state):
        raise ValueError(
            "This looks like a transformers AST state dict; pass the folder holding it and its config.json."
        )
    state = strip_prefix(state, "v.")
    if "pos_embed" not in state or "dist_token" not in state:
        raise ValueError(
            "Not an original AST state dict (no v.pos_embed / v.dist_token). For PaSST or M2D use --family passt/m2d."
        )
    state, unused_keys, with_head, pooling = rename_with_optional_head(
        state, AST_ORIGINAL_RENAMES, AST_ORIGINAL_UNUSED, AST_ORIGINAL_HEAD, with_head, pooling, "ast"
    )
    unused_keys = wrapper_keys + unused_keys

    shape = encoder_shape(state, num_attention_heads)
    preset = published_config("ast")
    # YuanGongND/ast trains every released model with 128 mel bins and strides 10 x 10.
    frequency_patches = preset.num_frequency_rows
    grid_tokens = state["embeddings.position_embeddings"].shape[1] - 2
    if grid_tokens % frequency_patches:
        raise ValueError(
            f"pos_embed holds {grid_tokens} patch positions, not a multiple of the {frequency_patches} frequency "
            "patches of AST's 128 mel bins with stride 10."
        )
    time_patches = grid_tokens // frequency_patches
    overrides = dict(
        shape,
        frequency_stride=preset.frequency_stride,
        time_stride=preset.time_stride,
        layer_norm_eps=1e-6,  # timm DeiT's, not transformers' 1e-12
        window_frames=default_window_frames(
            preset.window_frames, shape["patch_size"], preset.time_stride, time_patches
        ),
    )
    if with_head:
        overrides.update(torch_layer_norm_head_overrides(state, id2label))
    mean = AST_NORM_STATS[0] if norm_mean is None else norm_mean
    std = AST_NORM_STATS[1] if norm_std is None else norm_std
    return _finish_ast(state, overrides, window_frames, with_head, pooling, dict(mean=mean, std=std), unused_keys)


def _convert_ast_folder(folder: Path, window_frames, with_head, pooling) -> ConvertedCheckpoint:
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; pass a transformers AST folder or an original .pth.")
    ast_config = json.loads(config_path.read_text())
    if ast_config.get("model_type") != "audio-spectrogram-transformer":
        raise ValueError(f"{config_path} describes a {ast_config.get('model_type')!r} model, not an AST.")
    state = _load_folder_weights(folder)
    state = strip_prefix(state, "audio_spectrogram_transformer.")
    state, unused_keys, with_head, pooling = rename_with_optional_head(
        state, AST_HF_RENAMES, [], AST_HF_HEAD, with_head, pooling, "ast"
    )
    state = fuse_qkv(state)

    shape = encoder_shape(state, ast_config["num_attention_heads"])
    overrides = dict(
        shape,
        num_mel_bins=ast_config["num_mel_bins"],
        window_frames=ast_config["max_length"],
        frequency_stride=ast_config["frequency_stride"],
        time_stride=ast_config["time_stride"],
        layer_norm_eps=ast_config["layer_norm_eps"],
        hidden_act=ast_config["hidden_act"],
    )
    if with_head:
        overrides.update(label_overrides(state["classifier.dense.weight"].shape[0], ast_config.get("id2label")))
    front_end = dict(mean=AST_NORM_STATS[0], std=AST_NORM_STATS[1])
    preprocessor_path = folder / "preprocessor_config.json"
    if preprocessor_path.is_file():
        preprocessor = json.loads(preprocessor_path.read_text())
        front_end.update({k: preprocessor[k] for k in ("mean", "std", "sampling_rate") if k in preprocessor})
        if not preprocessor.get("do_normalize", True):
            front_end.update(mean=0.0, std=0.5)  # `_finish_ast` doubles std as ASTFeatureExtractor does
    return _finish_ast(state, overrides, window_frames, with_head, pooling, front_end, unused_keys)


def _load_folder_weights(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return load_original_state_dict(folder / name)
    raise FileNotFoundError(f"{folder} has no model.safetensors or pytorch_model.bin.")


def _finish_ast(state, overrides, window_frames, with_head, pooling, front_end, unused_keys) -> ConvertedCheckpoint:
    sampling_rate = int(front_end.get("sampling_rate", FRONT_ENDS["ast"].defaults["sampling_rate"]))
    if pooling is not None:
        overrides["pooling"] = pooling
    checkpoint_time_patches = (overrides["window_frames"] - overrides["patch_size"]) // overrides["time_stride"] + 1
    overrides["window_frames"] = window_frames or overrides["window_frames"]
    config = published_config("ast", sampling_rate=sampling_rate, **overrides)
    notes = []
    if config.num_time_patches != checkpoint_time_patches:
        state["embeddings.position_embeddings"] = resize_flat_positions(
            state["embeddings.position_embeddings"], 2, config.num_frequency_rows, config.num_time_patches
        )
        notes.append(resize_note(checkpoint_time_patches, config.num_time_patches))
    model = build_model(config, state, with_head)
    mean, std = float(front_end["mean"]), float(front_end["std"])
    # Kaldi fbank: 25 ms Hann windows every 10 ms, FFT rounded up to a power of two, mel bands up to Nyquist.
    win_length, hop_length = round(0.025 * sampling_rate), round(0.010 * sampling_rate)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(
        config,
        win_length=win_length,
        hop_length=hop_length,
        n_fft=1 << (win_length - 1).bit_length(),
        f_max=sampling_rate / 2,
        mean=mean,
        std=2 * std,  # ASTFeatureExtractor divides by twice the dataset std
        padding_value=(0.0 - mean) / (2 * std),  # it pads the log-mel with zeros before normalising
    )
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)
