"""
ONNX export of both model families: what `resp-audio-hf export --format onnx` runs.

The exported graph is the network from log-mel frames to the clip embedding (`pooler_output`, with the pooling of
the model's config inside the graph) and, for a classifier, its `logits`. The front end (`RespAudioFeatureExtractor`:
resampling, STFT, mel filters, normalisation) stays in torch; its settings are saved beside the graph, so the folder
holds `model.onnx`, `config.json` (the model's configuration: pooling, labels) and `preprocessor_config.json`.
[`resp_audio_hf.export.onnx_runtime.OnnxAudioModel`] runs the folder with numpy and onnxruntime alone.

The time axis (and the batch) are dynamic:

- ViT (`resp_audio`): the graph takes `input_values` `[batch, frames, mel]` and `attention_mask` `[batch, frames]`.
  It always cuts the frames into the model's windows (`RespAudioModel._windows`), the last one padded and masked,
  encodes them all in one batch and pools over the real patches of every window. The eager model encodes a clip of
  at most one window unpadded; masked keys change nothing in attention and masked patches nothing in the pooling, so
  both give the same output (within float round-off), but a short clip costs one whole window here. A padded batch
  runs in one call, padding masked as in eager.
- EfficientAT: the graph takes `input_values` only, every clip at its full length; `OnnxAudioModel` runs each group
  of equal-length clips of a padded batch apart, as the eager model does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..configuration_resp_audio import find_model_type
from ..data.file_io import atomic_folder
from .onnx_runtime import CONFIG_FILE, ONNX_FILE, PREPROCESSOR_FILE

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx",)
# Outputs must equal the eager model's within this on real clips (tests and `--check`).
ONNX_TOLERANCE = 1e-4


class ViTExportGraph(nn.Module):
    """`RespAudioModel` (and optionally its classification head) from frames and frame mask to its outputs, windowed
    the same way for every length (see the module docstring)."""

    # Padded batches: the graph takes the frame mask, and needs one patch of frames.
    takes_attention_mask = True

    def __init__(self, encoder, classifier: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor):
        from ..pooling import pool_embeddings

        model, config = self.encoder, self.encoder.config
        batch, num_frames, _ = input_values.shape
        time_mask = model.time_mask(attention_mask, num_frames, batch, input_values.device)
        windows, window_masks, padded_mask = model.split_into_windows(input_values, time_mask)
        num_windows = windows.shape[0] // batch
        tokens, frequency_rows, window_masks = model.embeddings(windows, window_masks)
        prefix_tokens = config.num_prefix_tokens
        prefix_mask = torch.ones(tokens.shape[0], prefix_tokens, dtype=torch.bool, device=tokens.device)
        key_mask = torch.cat([prefix_mask, window_masks.repeat(1, frequency_rows)], dim=1)
        hidden, _, _ = model.encoder(tokens, key_mask)
        hidden = model.layernorm(hidden)
        dim, window_patches = hidden.shape[-1], config.num_time_patches
        # Means over the real patches of every window of a clip (and of its prefix tokens over its real windows): the
        # sums `RespAudioModel._encode_in_windows` and `frequency_row_means` take, in one step.
        grid = hidden[:, prefix_tokens:].reshape(batch, num_windows, frequency_rows, window_patches, dim)
        weights = padded_mask.reshape(batch, num_windows, 1, window_patches, 1).to(hidden.dtype)
        row_means = (grid * weights).sum(dim=(1, 3)) / weights.sum(dim=(1, 3)).clamp_min(1.0)
        real_windows = padded_mask.reshape(batch, num_windows, window_patches).any(dim=2)
        window_weights = real_windows.to(hidden.dtype)[:, :, None, None]
        prefix = hidden[:, :prefix_tokens].reshape(batch, num_windows, prefix_tokens, dim)
        prefix = (prefix * window_weights).sum(dim=1) / window_weights.sum(dim=1)
        pooled = pool_embeddings(config.pooling, row_means, prefix)
        if self.classifier is None:
            return (pooled,)
        return pooled, self.classifier(pooled)


class EfficientATExportGraph(nn.Module):
    """`EfficientATModel` (and optionally its head) on clips of one length, from frames to `pooler_output` (the
    config's pooling) and the head's logits (which read the mean over frequency and time)."""

    takes_attention_mask = False

    def __init__(self, encoder, classifier: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.classifier = classifier

    def forward(self, input_values: torch.Tensor):
        last, _ = self.encoder.feature_maps(input_values, False)
        frequency_means = last.mean(dim=3)  # [batch, channels, F']: every column is real, clips are unpadded
        if self.encoder.config.pooling == "freq_preserving":
            pooled = frequency_means.transpose(1, 2).reshape(last.shape[0], -1)
        else:
            pooled = frequency_means.mean(dim=2)
        if self.classifier is None:
            return (pooled,)
        return pooled, self.classifier(frequency_means.mean(dim=2))


@dataclass
class ExportedModel:
    """What [`export_onnx`] wrote."""

    folder: Path
    model_type: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def export_graph(model) -> nn.Module:
    """The graph to export for a loaded model: an encoder (`RespAudioModel`, `EfficientATModel`) or a classifier of
    either family (`*ForAudioClassification`), in eval mode."""
    classifier = getattr(model, "classifier", None)
    encoder = model.base_model if classifier is not None else model
    return _graph_class(model.config)(encoder, classifier).eval()


def _graph_class(config) -> type[nn.Module]:
    """The export graph of a configuration's model type, as its record names it."""
    return find_model_type(config).export_graph_class


def _example_inputs(model, feature_extractor) -> dict[str, torch.Tensor]:
    """Features of two clips of different lengths (2.5 and 1.5 model windows for a ViT, so that the traced graph
    windows and pads), for tracing."""
    rate = feature_extractor.sampling_rate
    window_frames = getattr(model.config, "window_frames", 400)
    seconds = window_frames * feature_extractor.hop_length / rate
    generator = np.random.default_rng(0)
    clips = [0.1 * generator.standard_normal(int(s * seconds * rate)).astype(np.float32) for s in (2.5, 1.5)]
    features = feature_extractor(clips, sampling_rate=rate, return_tensors="pt")
    inputs = {"input_values": features["input_values"]}
    if _graph_class(model.config).takes_attention_mask:
        inputs["attention_mask"] = features["attention_mask"].long()
    else:
        inputs["input_values"] = inputs["input_values"][:1]  # unpadded clips only
    return inputs


def export_onnx(
    model,
    feature_extractor,
    output_dir: str | os.PathLike,
    *,
    opset_version: int | None = None,
    overwrite: bool = False,
) -> ExportedModel:
    """
    Export `model` (a `resp_audio` or `efficientat` encoder or classifier) to `output_dir/model.onnx` with dynamic
    batch and time axes, and save its configuration (`config.json`) and `feature_extractor`'s
    (`preprocessor_config.json`) beside it. The folder is written elsewhere and moved into place at the end, so a
    failed export leaves no half-written folder. Needs the `onnx` extra (onnx, onnxscript, onnxruntime).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a folder.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} is not empty; choose a new folder or pass overwrite=True (--overwrite).")
    model = model.eval().to("cpu")
    graph = export_graph(model)
    inputs = _example_inputs(model, feature_extractor)
    batch = torch.export.Dim("batch")
    if graph.takes_attention_mask:
        frames = torch.export.Dim("frames", min=model.config.patch_size)
        dynamic_shapes = {"input_values": {0: batch, 1: frames}, "attention_mask": {0: batch, 1: frames}}
    else:
        dynamic_shapes = {"input_values": {0: batch, 1: torch.export.Dim("frames", min=1)}}
    output_names = ["pooler_output"] + (["logits"] if graph.classifier is not None else [])
    with torch.no_grad():
        program = torch.onnx.export(
            graph, (), kwargs=inputs, dynamo=True, input_names=list(inputs), output_names=output_names,
            dynamic_shapes=dynamic_shapes, opset_version=opset_version, external_data=False, verbose=False,
        )
    with atomic_folder(output_dir) as staging:
        program.save(str(staging / ONNX_FILE))
        # to_json_file rather than save_pretrained: the folder holds no weights and no remote code, only settings.
        model.config.to_json_file(staging / CONFIG_FILE)
        feature_extractor.to_json_file(staging / PREPROCESSOR_FILE)
    return ExportedModel(output_dir, model.config.model_type, tuple(inputs), tuple(output_names))


def eager_outputs(model, features) -> dict[str, np.ndarray]:
    """The eager model's `pooler_output` (and `logits` for a classifier) for features from its feature extractor:
    the reference the exported graph is held to."""
    with torch.no_grad():
        if getattr(model, "classifier", None) is None:
            return {"pooler_output": model(**features).pooler_output.numpy()}
        encoder_output = model.base_model(**features)
        return {"pooler_output": encoder_output.pooler_output.numpy(), "logits": model(**features).logits.numpy()}


def max_differences(model, feature_extractor, folder: str | os.PathLike, clips, sampling_rate: int) -> dict[str, float]:
    """
    `{output name: max |eager - ONNX Runtime|}` over `clips` (arrays at `sampling_rate`), featurised together as one
    padded batch by `feature_extractor` and run by the eager `model` and by the exported folder.
    """
    from .onnx_runtime import OnnxAudioModel

    features = feature_extractor(list(clips), sampling_rate=sampling_rate, return_tensors="pt")
    expected = eager_outputs(model.eval(), features)
    got = OnnxAudioModel(folder)(features["input_values"].numpy(), features["attention_mask"].numpy())
    return {name: float(np.abs(expected[name] - got[name]).max()) for name in expected}


def load_model_for_export(
    model: str | None = None,
    *,
    preset: str | None = None,
    pooling: str | None = None,
    with_head: bool = True,
    revision: str | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
):
    """
    `(model, feature_extractor)` to export: a folder or Hub id (its classifier when it has one and `with_head`, else
    its encoder), or a randomly initialised `RespAudioModel` preset (smoke tests). `pooling` replaces the config's
    pooling of an encoder or of an EfficientAT classifier (whose head reads the mean whatever the pooling); a ViT
    classifier's head was trained on its own pooling, so another one is refused.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

    from .. import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel

    if (model is None) == (preset is None):
        raise ValueError("Give exactly one of a model (folder or Hub id) and a preset.")
    if preset is not None:
        config = RespAudioConfig.from_preset(preset, **({"pooling": pooling} if pooling else {}))
        torch.manual_seed(seed)
        return RespAudioModel(config).eval(), RespAudioFeatureExtractor.from_model_config(config)
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(model, **kwargs)
    is_classifier = any(name.endswith("ForAudioClassification") for name in (config.architectures or []))
    use_head = is_classifier and with_head
    if pooling is not None and pooling != getattr(config, "pooling", None):
        if use_head and find_model_type(config).head_reads_pooler_output:
            raise ValueError(
                f"{model} is a classifier whose head reads its {config.pooling!r} pooling; export it with that "
                f"pooling, or pass --no-head to export its encoder with pooling={pooling!r}."
            )
        config = type(config).from_dict({**config.to_dict(), "pooling": pooling})
    auto_class = AutoModelForAudioClassification if use_head else AutoModel
    loaded = auto_class.from_pretrained(model, config=config, **kwargs).eval()
    try:
        feature_extractor = RespAudioFeatureExtractor.from_pretrained(model, **kwargs)
    except OSError:
        feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    return loaded, feature_extractor


__all__ = [
    "EXPORT_FORMATS",
    "ONNX_TOLERANCE",
    "EfficientATExportGraph",
    "ExportedModel",
    "ViTExportGraph",
    "eager_outputs",
    "export_graph",
    "export_onnx",
    "load_model_for_export",
    "max_differences",
]
