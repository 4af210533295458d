"""
Conversion of the original PaSST, AST, M2D and EfficientAT checkpoints into Hugging Face folders.

One function per family ([`convert_passt`], [`convert_ast`], [`convert_m2d`]) turns the original weights into a
[`RespAudioModel`], or a [`RespAudioForAudioClassification`] when the checkpoint carries a classifier;
[`convert_efficientat`] turns EfficientAT's MobileNets into an [`EfficientATForAudioClassification`] (or
[`EfficientATModel`]). Each comes with the [`RespAudioFeatureExtractor`] that reproduces the family's front end; [`save_converted`] writes both as one folder
(config, safetensors weights, preprocessor config and the remote-code files).

Key renames are explicit tables of regular expressions, tried in order. Every original key must be renamed or match
a table of keys known to be unused by the encoder (decoders, EMA targets, unused heads), and every weight of the
RespAudio model must be filled: a checkpoint of an unexpected layout fails with the offending keys instead of loading
half its weights.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file

from transformers import PreTrainedModel

from .configuration_efficientat import EfficientATConfig
from .configuration_resp_audio import MODEL_FAMILIES, RespAudioConfig
from .data._io import atomic_folder, read_table_rows
from .feature_extraction_resp_audio import FRONT_ENDS, RespAudioFeatureExtractor
from .modeling_efficientat import EfficientATForAudioClassification, EfficientATModel
from .modeling_resp_audio import RespAudioForAudioClassification, RespAudioModel

FAMILIES = tuple(MODEL_FAMILIES)
# The encoder and the classifier class of each configuration.
MODEL_CLASSES = {
    RespAudioConfig: (RespAudioModel, RespAudioForAudioClassification),
    EfficientATConfig: (EfficientATModel, EfficientATForAudioClassification),
}
Renames = list[tuple[str, str]]


class ClassifierLayout(NamedTuple):
    """Where a checkpoint layout keeps its optional classifier head."""

    weight_key: str  # present only in checkpoints that carry the classifier
    renames: Renames  # applied when the classifier is converted
    pattern: str  # all its keys, set aside as unused when only the encoder is converted

    @classmethod
    def layer_norm_linear(cls, name: str) -> "ClassifierLayout":
        """The `nn.Sequential(LayerNorm, Linear)` head called `name` of PaSST and the original AST."""
        renames = [(rf"^{name}\.0\.", "classifier.layernorm."), (rf"^{name}\.1\.", "classifier.dense.")]
        return cls(f"{name}.1.weight", renames, rf"^{name}\.")


# ---------------------------------------------------------------------------------------------------- key tables

# timm's VisionTransformer layout, shared by PaSST, the original AST (a timm DeiT) and M2D.
def layer_renames(source_layers: str, sublayers: dict[str, str]) -> Renames:
    """Renames of every numbered layer under `source_layers` (a regex prefix) onto our `encoder.layers.<i>.`, one per
    `{source sublayer: our sublayer}` entry, in the dict's order."""
    return [
        (rf"^{source_layers}\.(\d+)\.{re.escape(source)}\.", rf"encoder.layers.\1.{target}.")
        for source, target in sublayers.items()
    ]


# timm's VisionTransformer layout, shared by PaSST, the original AST (a timm DeiT) and M2D.
TIMM_VIT_RENAMES: Renames = [
    (r"^patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
    (r"^cls_token$", "embeddings.cls_token"),
    *layer_renames(
        "blocks",
        {
            "norm1": "layernorm_before",
            "attn.qkv": "attention.qkv",
            "attn.proj": "attention.proj",
            "norm2": "layernorm_after",
            "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        },
    ),
    (r"^norm\.", "layernorm."),
]

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

# YuanGongND/ast `ASTModel` state dict, after removing the DataParallel `module.` and the `v.` (timm DeiT) prefixes.
AST_ORIGINAL_RENAMES: Renames = TIMM_VIT_RENAMES + [
    (r"^dist_token$", "embeddings.distillation_token"),
    (r"^pos_embed$", "embeddings.position_embeddings"),
]
AST_ORIGINAL_HEAD = ClassifierLayout.layer_norm_linear("mlp_head")
# The ImageNet heads of the DeiT backbone, which AST replaces by `mlp_head` and never calls.
AST_ORIGINAL_UNUSED = [r"^head\.", r"^head_dist\."]

# transformers' ASTModel / ASTForAudioClassification, after removing the `audio_spectrogram_transformer.` prefix.
# Query, key and value are renamed to temporary names here and fused into our `attention.qkv` by `_fuse_qkv`.
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
# Prefixes that training and inference wrappers put in front of an encoder's keys: DataParallel's and DDP's `module.`,
# hear21passt's `PasstBasicWrapper` (`get_basic_model` / `load_model`: `net.`), Lightning-style modules' `model.`.
WRAPPER_PREFIXES = ("module.", "net.", "model.")
# Entries of those wrappers that hold no encoder weight: hear21passt's `device_proxy` marker and its `mel.` front end
# (buffers of `AugmentMelSTFT`, which forks save as persistent; the feature extractor recomputes them).
WRAPPER_EXTRAS = [r"^device_proxy$", r"^mel\."]
M2D_PREFIXES = ("module.ar.runtime.backbone.", "backbone.")
# M2D's `LocalViT` defaults (the m2d front end's), used by its 2022 checkpoints that carry no `norm_stats`.
M2D_DEFAULT_NORM_STATS = (FRONT_ENDS["m2d"].defaults["mean"], FRONT_ENDS["m2d"].defaults["std"])
# Spectrogram settings of M2D's runtime per sampling-rate tag of the checkpoint name: the m2d front end's, changed as
# the M2D family's record says.
M2D_FRONTENDS = {
    tag: {
        **{key: FRONT_ENDS["m2d"].defaults[key] for key in ("sampling_rate", "n_fft", "win_length", "hop_length",
                                                           "f_min", "f_max")},
        **variant,
    }
    for tag, variant in MODEL_FAMILIES["m2d"].front_end_variants.items()
}
# The dataset statistics YuanGongND/ast normalises with (AudioSet's): the ast front end's mean, and half its std, as
# ASTFeatureExtractor divides by twice the dataset std.
AST_NORM_STATS = (FRONT_ENDS["ast"].defaults["mean"], FRONT_ENDS["ast"].defaults["std"] / 2)

# LayerNorm epsilon of PaSST's and the original AST's classifier heads (PyTorch's default), which differs from the
# 1e-6 of their encoders.
TORCH_LAYER_NORM_EPS = 1e-5
# ViT-Tiny/Small/Base/Large all use 64-dimensional attention heads; the head count is not stored in the weights.
VIT_HEAD_DIM = 64


@dataclass
class ConvertedCheckpoint:
    """
    The result of converting one original checkpoint.

    Args:
        model: the RespAudio model holding the converted weights (in eval mode).
        feature_extractor: the front end matching the checkpoint's training spectrograms.
        unused_keys: original keys that were deliberately left out (decoders, EMA targets, unused heads).
        notes: human-readable remarks on choices the conversion made (inferred strides, resized embeddings).
    """

    model: PreTrainedModel
    feature_extractor: RespAudioFeatureExtractor
    unused_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- loading


def load_original_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """
    Tensors of an original checkpoint file (`.pt`/`.pth`/`.bin` pickles or `.safetensors`). Pickles are opened with
    `torch.load(weights_only=True)`, which never runs code from the file; `argparse.Namespace` (the training
    arguments MAE-style checkpoints such as M2D's carry) is the only class allowed besides tensors and containers.
    A `{"model": ...}` or `{"state_dict": ...}` wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint file at {path}.")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        blocked = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        what = f"the Python object {blocked.group(1)}" if blocked else "Python objects other than tensors"
        raise ValueError(
            f"{path} contains {what}, so it cannot be loaded safely (torch.load(weights_only=True)); loading it "
            "would run code from the file. If you trust its source, re-save only its tensors, e.g. "
            "torch.save(torch.load(path, weights_only=False)['model'], 'clean.pth'), and convert that file."
        ) from error
    except (RuntimeError, EOFError) as error:  # truncated downloads, files that are not PyTorch checkpoints
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({error}); download it again.") from error
    return _unwrap_state_dict(content, path)


def _unwrap_state_dict(content, path: Path) -> dict[str, torch.Tensor]:
    for wrapper in ("model", "state_dict"):
        if isinstance(content, dict) and isinstance(content.get(wrapper), dict):
            content = content[wrapper]
            break
    if not isinstance(content, dict) or not content:
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors).")
    not_tensors = [key for key, value in content.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path} is not a plain state dict: entries {not_tensors[:5]} are not tensors.")
    return dict(content)


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove `prefix` from the keys that carry it (AST's `v.`, M2D's `backbone.`), leaving the others as they are."""
    return {(key[len(prefix) :] if key.startswith(prefix) else key): value for key, value in state.items()}


def unwrap_encoder_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """
    The encoder's own keys of a state dict saved from a known wrapper, and the wrapper's other keys (left out).

    A prefix of `WRAPPER_PREFIXES` is removed when every key carries it, or every key but the wrapper entries that
    hold no encoder weight (`WRAPPER_EXTRAS`, e.g. hear21passt's `device_proxy`); nested wrappers (`module.net.`)
    are unwrapped in turn. Keys of any other layout are left as they are, for the renames to accept or reject.
    """
    left_out: list[str] = []
    unwrapped = True
    while unwrapped:
        unwrapped = False
        for prefix in WRAPPER_PREFIXES:
            inside = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            outside = [key for key in state if not key.startswith(prefix)]
            if inside and all(any(re.search(pattern, key) for pattern in WRAPPER_EXTRAS) for key in outside):
                state, unwrapped = inside, True
                left_out += outside
                break
    return state, left_out


# ---------------------------------------------------------------------------------------------------- renaming


def rename_keys(
    state: dict[str, torch.Tensor], renames: Renames, unused: list[str], family: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """
    Apply the first matching rename of `renames` to every key. Keys matching `unused` are set aside; any other key
    that no rename matches is an error, since silently ignoring it could change the model's output.
    """
    renamed, left_out, unknown = {}, [], []
    for key, value in state.items():
        for pattern, replacement in renames:
            if re.search(pattern, key):
                renamed[re.sub(pattern, replacement, key)] = value
                break
        else:
            if any(re.search(pattern, key) for pattern in unused):
                left_out.append(key)
            else:
                unknown.append(key)
    if unknown:
        architecture = MODEL_FAMILIES[family].architecture
        raise ValueError(
            f"Unexpected keys for a {architecture} checkpoint: {sorted(unknown)[:10]}"
            f"{' ...' if len(unknown) > 10 else ''}. Is --family right? Layers of these names are not part of the "
            f"{architecture} encoder this converter knows, and ignoring them could change the model's output."
        )
    return renamed, left_out


def _fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Concatenate separate query/key/value projections into one `attention.qkv` (rows: query, key, value)."""
    fused = {}
    for key, value in state.items():
        match = re.match(r"^(.*\.attention)\.query\.(weight|bias)$", key)
        if match:
            base, kind = match.groups()
            parts = [state.get(f"{base}.{name}.{kind}") for name in ("query", "key", "value")]
            if any(part is None for part in parts):
                raise ValueError(f"{base} has a query {kind} but lacks the key or value {kind}.")
            fused[f"{base}.qkv.{kind}"] = torch.cat(parts, dim=0)
        elif not re.match(r"^.*\.attention\.(key|value)\.(weight|bias)$", key):
            fused[key] = value
    return fused


def _num_layers(state: dict[str, torch.Tensor]) -> int:
    indices = {int(m.group(1)) for key in state if (m := re.match(r"^encoder\.layers\.(\d+)\.", key))}
    if not indices or indices != set(range(len(indices))):
        raise ValueError(f"Transformer layers are missing or not numbered 0..N-1: found {sorted(indices)}.")
    return len(indices)


def _encoder_shape(state: dict[str, torch.Tensor], num_attention_heads: int | None) -> dict:
    """Sizes of the Transformer read from the (renamed) weights."""
    required = [
        "embeddings.cls_token", "embeddings.patch_embeddings.projection.weight", "encoder.layers.0.mlp.fc1.weight"
    ]
    missing = [key for key in required if key not in state]
    if missing:
        raise ValueError(f"The checkpoint lacks {missing}; it is not a complete encoder.")
    hidden_size = state["embeddings.cls_token"].shape[-1]
    projection = state["embeddings.patch_embeddings.projection.weight"]
    if projection.shape[1] != 1 or projection.shape[2] != projection.shape[3]:
        raise ValueError(
            f"Patch embedding of shape {tuple(projection.shape)}: expected one input channel and square patches."
        )
    if num_attention_heads is None:
        if hidden_size % VIT_HEAD_DIM:
            raise ValueError(
                f"Cannot infer the number of attention heads for hidden size {hidden_size} (the weights do not "
                f"store it); pass num_attention_heads (--num-attention-heads)."
            )
        num_attention_heads = hidden_size // VIT_HEAD_DIM
    return dict(
        hidden_size=hidden_size,
        num_hidden_layers=_num_layers(state),
        num_attention_heads=num_attention_heads,
        intermediate_size=state["encoder.layers.0.mlp.fc1.weight"].shape[0],
        qkv_bias="encoder.layers.0.attention.qkv.bias" in state,
        patch_size=projection.shape[-1],
    )


def _largest_stride(num_bins: int, patch_size: int, num_patches: int) -> int:
    """The largest stride (<= patch size) that cuts `num_bins` into `num_patches` patches."""
    for stride in range(patch_size, 0, -1):
        if (num_bins - patch_size) // stride + 1 == num_patches:
            return stride
    raise ValueError(
        f"No patch stride turns {num_bins} bins into {num_patches} patches of {patch_size}; pass the stride explicitly."
    )


def _default_window_frames(preset_window_frames: int, patch_size: int, stride: int, time_patches: int) -> int:
    """The preset's clip length when it gives the checkpoint's time patches, else the shortest one that does."""
    if (preset_window_frames - patch_size) // stride + 1 == time_patches:
        return preset_window_frames
    return (time_patches - 1) * stride + patch_size


# ---------------------------------------------------------------------------------------------------- time resizing


def resize_time_axis(table: torch.Tensor, num_time_patches: int, dim: int) -> torch.Tensor:
    """
    Fit a position table to `num_time_patches` columns along `dim`: keep the first columns when fewer are needed
    (what PaSST's and M2D's runtimes do for shorter input, so outputs on short clips are unchanged), and interpolate
    linearly when more are needed (positions the model never saw in training: fine-tune before trusting them).
    """
    current = table.shape[dim]
    if num_time_patches <= current:
        return table.narrow(dim, 0, num_time_patches).clone()
    moved = table.movedim(dim, -1)
    flat = moved.reshape(-1, 1, current).double()
    stretched = torch.nn.functional.interpolate(flat, size=num_time_patches, mode="linear", align_corners=False)
    stretched = stretched.to(table.dtype).reshape(*moved.shape[:-1], num_time_patches)
    return stretched.movedim(-1, dim).contiguous()


def _resize_flat_positions(
    positions: torch.Tensor, num_prefix_tokens: int, frequency_patches: int, num_time_patches: int
) -> torch.Tensor:
    """`[1, P + F' * T, D]` (frequency-major) -> `[1, P + F' * num_time_patches, D]`."""
    prefix, grid = positions[:, :num_prefix_tokens], positions[:, num_prefix_tokens:]
    grid = grid.reshape(1, frequency_patches, -1, positions.shape[-1])
    grid = resize_time_axis(grid, num_time_patches, dim=2)
    return torch.cat([prefix, grid.reshape(1, -1, positions.shape[-1])], dim=1)


# ---------------------------------------------------------------------------------------------------- building


def _published_config(family: str, **overrides) -> RespAudioConfig:
    """The configuration of `family`'s published encoder (its first preset, e.g. `resp-passt`), with `overrides`."""
    return RespAudioConfig.from_preset(next(iter(MODEL_FAMILIES[family].presets)), **overrides)


def _build_model(
    config: RespAudioConfig | EfficientATConfig, state: dict[str, torch.Tensor], with_head: bool
) -> PreTrainedModel:
    """Instantiate the model and load `state` (encoder keys unprefixed), requiring every weight to be filled."""
    encoder_class, classifier_class = MODEL_CLASSES[type(config)]
    if with_head:
        model = classifier_class(config)
        state = {(key if key.startswith("classifier.") else f"{model.base_model_prefix}.{key}"): value
                 for key, value in state.items()}
    else:
        model = encoder_class(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"The converted weights do not fit {type(model).__name__}: missing {missing[:10]}, unexpected "
            f"{unexpected[:10]}. The checkpoint's layout differs from what this converter supports."
        )
    wrong_shapes = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(expected[key].shape)}"
        for key, value in state.items()
        if value.shape != expected[key].shape
    ]
    if wrong_shapes:
        raise ValueError("Converted weights have unexpected shapes: " + "; ".join(wrong_shapes[:10]))
    # Integer buffers (BatchNorm's num_batches_tracked) stay integers.
    state = {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def _with_head_or_pooling(has_head: bool, with_head: bool, pooling: str | None, family: str) -> tuple[bool, str | None]:
    """Whether to convert the classifier and which pooling the converted model uses."""
    with_head = has_head and with_head
    if with_head and pooling not in (None, "cls"):
        raise ValueError(
            f"The {MODEL_FAMILIES[family].architecture} classifier was trained on the CLS/distillation tokens; converting it needs pooling='cls' "
            f"(got {pooling!r}). Convert the encoder only (with_head=False / --no-head) to choose another pooling."
        )
    return with_head, ("cls" if with_head else pooling)


def _rename_with_optional_head(
    state: dict[str, torch.Tensor],
    renames: Renames,
    unused: list[str],
    head: ClassifierLayout,
    with_head: bool,
    pooling: str | None,
    family: str,
) -> tuple[dict[str, torch.Tensor], list[str], bool, str | None]:
    """
    Rename the keys of a checkpoint that may carry a classifier (PaSST and both AST layouts).

    The classifier is converted when the checkpoint has one and `with_head` asks for it; otherwise its keys are set
    aside as unused rather than rejected as unknown, so the encoder of a fine-tuned checkpoint converts on its own.
    Returns the renamed state, the keys left out, and the resolved `with_head` and `pooling`.
    """
    with_head, pooling = _with_head_or_pooling(head.weight_key in state, with_head, pooling, family)
    renames = renames + (head.renames if with_head else [])
    unused = unused + ([] if with_head else [head.pattern])
    state, unused_keys = rename_keys(state, renames, unused, family)
    return state, unused_keys, with_head, pooling


def _label_overrides(num_labels: int, id2label: dict | None) -> dict:
    if id2label is None:
        return dict(num_labels=num_labels)
    id2label = {int(index): label for index, label in id2label.items()}
    if len(id2label) != num_labels:
        raise ValueError(f"The classifier has {num_labels} outputs but {len(id2label)} label names were given.")
    return dict(id2label=id2label, label2id={label: index for index, label in id2label.items()})


# ---------------------------------------------------------------------------------------------------- PaSST


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
    state, unused_keys, with_head, pooling = _rename_with_optional_head(
        state, PASST_RENAMES, PASST_UNUSED, PASST_HEAD, with_head, pooling, "passt"
    )
    unused_keys = wrapper_keys + unused_keys

    shape = _encoder_shape(state, num_attention_heads)
    patch = shape["patch_size"]
    frequency_patches = state["embeddings.frequency_position_embeddings"].shape[2]
    time_patches = state["embeddings.time_position_embeddings"].shape[3]
    # hear21passt does not store its stride; released models use 10 (overlapping) or 16, equal along both axes.
    stride = _largest_stride(num_mel_bins, patch, frequency_patches)
    preset = _published_config("passt")
    notes = [f"patch stride {stride} inferred from {frequency_patches} frequency patches of {num_mel_bins} mel bins"]
    checkpoint_window_frames = _default_window_frames(preset.window_frames, patch, stride, time_patches)
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
        overrides.update(_label_overrides(state["classifier.dense.weight"].shape[0], id2label))
        overrides["classifier_layer_norm_eps"] = TORCH_LAYER_NORM_EPS
    config = _published_config("passt", **overrides)
    if config.num_time_patches != time_patches:
        state["embeddings.time_position_embeddings"] = resize_time_axis(
            state["embeddings.time_position_embeddings"], config.num_time_patches, dim=3
        )
        notes.append(_resize_note(time_patches, config.num_time_patches))
    model = _build_model(config, state, with_head)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)


def _resize_note(old: int, new: int) -> str:
    if new < old:
        return f"time position embedding: kept the first {new} of its {old} columns"
    return f"time position embedding: linearly interpolated from {old} to {new} columns (fine-tune before use)"


# ---------------------------------------------------------------------------------------------------- AST


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
    state = _strip_prefix(state, "v.")
    if "pos_embed" not in state or "dist_token" not in state:
        raise ValueError(
            "Not an original AST state dict (no v.pos_embed / v.dist_token). For PaSST or M2D use --family passt/m2d."
        )
    state, unused_keys, with_head, pooling = _rename_with_optional_head(
        state, AST_ORIGINAL_RENAMES, AST_ORIGINAL_UNUSED, AST_ORIGINAL_HEAD, with_head, pooling, "ast"
    )
    unused_keys = wrapper_keys + unused_keys

    shape = _encoder_shape(state, num_attention_heads)
    preset = _published_config("ast")
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
        window_frames=_default_window_frames(
            preset.window_frames, shape["patch_size"], preset.time_stride, time_patches
        ),
    )
    if with_head:
        overrides.update(_label_overrides(state["classifier.dense.weight"].shape[0], id2label))
        overrides["classifier_layer_norm_eps"] = TORCH_LAYER_NORM_EPS
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
    state = _strip_prefix(state, "audio_spectrogram_transformer.")
    state, unused_keys, with_head, pooling = _rename_with_optional_head(
        state, AST_HF_RENAMES, [], AST_HF_HEAD, with_head, pooling, "ast"
    )
    state = _fuse_qkv(state)

    shape = _encoder_shape(state, ast_config["num_attention_heads"])
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
        overrides.update(_label_overrides(state["classifier.dense.weight"].shape[0], ast_config.get("id2label")))
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
    config = _published_config("ast", sampling_rate=sampling_rate, **overrides)
    notes = []
    if config.num_time_patches != checkpoint_time_patches:
        state["embeddings.position_embeddings"] = _resize_flat_positions(
            state["embeddings.position_embeddings"], 2, config.num_frequency_rows, config.num_time_patches
        )
        notes.append(_resize_note(checkpoint_time_patches, config.num_time_patches))
    model = _build_model(config, state, with_head)
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


# ---------------------------------------------------------------------------------------------------- M2D


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
    if name.sampling_rate_tag not in M2D_FRONTENDS:
        raise ValueError(f"Unknown M2D sampling-rate tag {name.sampling_rate_tag!r}.")
    state = load_original_state_dict(path)
    for prefix in M2D_PREFIXES:
        state = _strip_prefix(state, prefix)
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

    shape = _encoder_shape(state, num_attention_heads)
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
    front_end = M2D_FRONTENDS[name.sampling_rate_tag]
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
    config = _published_config("m2d", **overrides)
    if config.num_time_patches != time_patches:
        state["embeddings.position_embeddings"] = _resize_flat_positions(
            positions, 1, frequency_patches, config.num_time_patches
        )
        notes.append(_resize_note(time_patches, config.num_time_patches))
    model = _build_model(config, state, with_head=False)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config, **front_end, mean=mean, std=std)
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)


# ---------------------------------------------------------------------------------------------------- EfficientAT

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
    from .modeling_efficientat import MOBILENET_V3_LARGE_BLOCKS

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
    from .modeling_efficientat import EfficientATModel

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
        config_fields.update(_label_overrides(state[EFFICIENTAT_HEAD.weight_key].shape[0], id2label))
        config_fields["problem_type"] = "multi_label_classification"
        config_fields["classifier_hidden_size"] = state["classifier.2.weight"].shape[0]
    config = EfficientATConfig(**config_fields)
    renames = efficientat_renames(config) + (EFFICIENTAT_HEAD.renames if with_head else [])
    unused = [] if with_head else [EFFICIENTAT_HEAD.pattern]
    state, unused_keys = rename_keys(state, renames, unused, "efficientat")
    unused_keys = wrapper_keys + unused_keys
    model = _build_model(config, state, with_head)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    notes = [] if width_multiplier else [f"width multiplier {width} inferred from the layer sizes"]
    return ConvertedCheckpoint(model, feature_extractor, unused_keys, notes)


# ---------------------------------------------------------------------------------------------------- saving

# Each family's converter, as its record names it.
CONVERTERS = {name: globals()[family.converter] for name, family in MODEL_FAMILIES.items()}


def save_converted(converted: ConvertedCheckpoint, output_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """
    Write the model (config.json, model.safetensors, remote-code files) and the feature extractor
    (preprocessor_config.json) to `output_dir`. Everything is written to a temporary sibling folder first and moved
    into place at the end, so a failure never leaves a half-written folder behind. The folder and its files get the
    permissions `mkdir` and `open` give under the caller's umask.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} is not empty; choose a new folder or pass overwrite=True (--overwrite).")
    with atomic_folder(output_dir) as staging:
        converted.model.save_pretrained(staging)
        converted.feature_extractor.save_pretrained(staging)
    return output_dir


def convert_checkpoint(
    family: str, source: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool = False, **options
) -> ConvertedCheckpoint:
    """Convert `source` of `family` (`passt`, `ast`, `m2d` or `efficientat`) and save it to `output_dir`; returns the conversion."""
    if family not in CONVERTERS:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}.")
    output_dir = Path(output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:  # fail before the slow part
        raise FileExistsError(f"{output_dir} is not empty; choose a new folder or pass overwrite=True (--overwrite).")
    converted = CONVERTERS[family](source, **options)
    save_converted(converted, output_dir, overwrite=overwrite)
    return converted


__all__ = [
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
