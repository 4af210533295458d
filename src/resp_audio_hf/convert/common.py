"""
The conversion machinery every family's converter shares: loading original checkpoints safely, unwrapping training
wrappers, renaming keys by explicit tables, building the model its family's record names and saving the folder; and
`CONVERTERS`, the registry each family's module adds its converter to.

Key renames are explicit tables of regular expressions, tried in order. Every original key must be renamed or match
a table of keys known to be unused by the encoder (decoders, EMA targets, unused heads), and every weight of the
model must be filled: a checkpoint of an unexpected layout fails with the offending keys instead of loading half its
weights.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from ..configuration_efficientat import EfficientATConfig
from ..configuration_resp_audio import MODEL_FAMILIES, RespAudioConfig, find_model_type
from ..data.file_io import atomic_folder
from ..feature_extraction_resp_audio import RespAudioFeatureExtractor

FAMILIES = tuple(MODEL_FAMILIES)
Renames = list[tuple[str, str]]


class ClassifierLayout(NamedTuple):
    """Where a checkpoint layout keeps its optional classifier head."""

    weight_key: str  # present only in checkpoints that carry the classifier
    renames: Renames  # applied when the classifier is converted
    pattern: str  # all its keys, set aside as unused when only the encoder is converted

    @classmethod
    def layer_norm_linear(cls, name: str) -> ClassifierLayout:
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


# Prefixes that training and inference wrappers put in front of an encoder's keys: DataParallel's and DDP's `module.`,
# hear21passt's `PasstBasicWrapper` (`get_basic_model` / `load_model`: `net.`), Lightning-style modules' `model.`.
WRAPPER_PREFIXES = ("module.", "net.", "model.")
# Entries of those wrappers that hold no encoder weight: hear21passt's `device_proxy` marker and its `mel.` front end
# (buffers of `AugmentMelSTFT`, which forks save as persistent; the feature extractor recomputes them).
WRAPPER_EXTRAS = [r"^device_proxy$", r"^mel\."]

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


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
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


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
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


def encoder_shape(state: dict[str, torch.Tensor], num_attention_heads: int | None) -> dict:
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


def largest_stride(num_bins: int, patch_size: int, num_patches: int) -> int:
    """The largest stride (<= patch size) that cuts `num_bins` into `num_patches` patches."""
    for stride in range(patch_size, 0, -1):
        if (num_bins - patch_size) // stride + 1 == num_patches:
            return stride
    raise ValueError(
        f"No patch stride turns {num_bins} bins into {num_patches} patches of {patch_size}; pass the stride explicitly."
    )


def default_window_frames(preset_window_frames: int, patch_size: int, stride: int, time_patches: int) -> int:
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


def resize_flat_positions(
    positions: torch.Tensor, num_prefix_tokens: int, frequency_patches: int, num_time_patches: int
) -> torch.Tensor:
    """`[1, P + F' * T, D]` (frequency-major) -> `[1, P + F' * num_time_patches, D]`."""
    prefix, grid = positions[:, :num_prefix_tokens], positions[:, num_prefix_tokens:]
    grid = grid.reshape(1, frequency_patches, -1, positions.shape[-1])
    grid = resize_time_axis(grid, num_time_patches, dim=2)
    return torch.cat([prefix, grid.reshape(1, -1, positions.shape[-1])], dim=1)


# ---------------------------------------------------------------------------------------------------- building


def published_config(family: str, **overrides) -> RespAudioConfig:
    """The configuration of `family`'s published encoder (its first preset, e.g. `resp-passt`), with `overrides`."""
    return RespAudioConfig.from_preset(next(iter(MODEL_FAMILIES[family].presets)), **overrides)


def build_model(
    config: RespAudioConfig | EfficientATConfig, state: dict[str, torch.Tensor], with_head: bool
) -> PreTrainedModel:
    """Instantiate the model and load `state` (encoder keys unprefixed), requiring every weight to be filled."""
    record = find_model_type(config)
    encoder_class, classifier_class = record.base_model_class, record.classifier_class
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


def rename_with_optional_head(
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


def label_overrides(num_labels: int, id2label: dict | None) -> dict:
    if id2label is None:
        return dict(num_labels=num_labels)
    id2label = {int(index): label for index, label in id2label.items()}
    if len(id2label) != num_labels:
        raise ValueError(f"The classifier has {num_labels} outputs but {len(id2label)} label names were given.")
    return dict(id2label=id2label, label2id={label: index for index, label in id2label.items()})


def torch_layer_norm_head_overrides(state: dict[str, torch.Tensor], id2label: dict | None) -> dict:
    """Config fields of a converted LayerNorm + Linear head trained with torch's `nn.LayerNorm` (PaSST's `head`,
    original AST's `mlp_head`): its labels, and torch's eps instead of the configuration's own."""
    num_labels = state["classifier.dense.weight"].shape[0]
    return {**label_overrides(num_labels, id2label), "classifier_layer_norm_eps": TORCH_LAYER_NORM_EPS}


def resize_note(old: int, new: int) -> str:
    if new < old:
        return f"time position embedding: kept the first {new} of its {old} columns"
    return f"time position embedding: linearly interpolated from {old} to {new} columns (fine-tune before use)"


# ------------------------------------------------------------------------------------------- registry and saving

# Each family's converter, registered by its module with `@register_converter(family)` (convert/<family>.py).
CONVERTERS: dict[str, Callable[..., ConvertedCheckpoint]] = {}


def register_converter(family: str):
    """Register the decorated function as the converter of `family`, a key of `MODEL_FAMILIES`."""
    if family not in MODEL_FAMILIES:
        raise ValueError(f"No model family {family!r} in MODEL_FAMILIES; known: {FAMILIES}.")

    def register(converter: Callable[..., ConvertedCheckpoint]) -> Callable[..., ConvertedCheckpoint]:
        CONVERTERS[family] = converter
        return converter

    return register


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
