"""
Run a model folder written by `resp-audio-hf export --format onnx` with ONNX Runtime, importing neither torch nor
transformers: numpy, onnxruntime and the standard library only.

This module runs the network, not the front end: its input is the normalised log-mel frames
(`input_values` `[batch, frames, num_mel_bins]`) and their frame mask (`attention_mask` `[batch, frames]`) that
`RespAudioFeatureExtractor` (torch) computes, saved beside the model as `preprocessor_config.json`. Compute the
features where torch is available (or once, ahead of time), and run the network here.

Importing `resp_audio_hf` imports torch and transformers (its `__init__` registers the model types), so a process
without torch loads this file by its path, e.g.

    import importlib.util
    spec = importlib.util.spec_from_file_location("onnx_runtime", "<site-packages>/resp_audio_hf/export/onnx_runtime.py")
    onnx_runtime = importlib.util.module_from_spec(spec); spec.loader.exec_module(onnx_runtime)
    model = onnx_runtime.OnnxAudioModel("exported-folder")

The two families' graphs take different inputs, and [`OnnxAudioModel`] hides the difference:

- a ViT (`resp_audio`) graph takes `input_values` and `attention_mask`: padding is masked out of attention and
  pooling inside the graph, as the eager model masks it, so a padded batch runs in one call;
- an EfficientAT graph takes `input_values` only, every clip of the batch at full length: the eager model encodes
  each group of equal-length clips of a padded batch at that length (a CNN sees zero padding), so this runner does the
  same, one session call per distinct length, and gives each clip exactly the output it gets alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ONNX_FILE = "model.onnx"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
# Outputs a graph may have: the clip embedding (always) and a classifier's logits (models with a head).
OUTPUT_NAMES = ("pooler_output", "logits")


class OnnxAudioModel:
    """
    An exported model folder (`model.onnx`, `config.json`, `preprocessor_config.json`) in an ONNX Runtime session.

    Args:
        folder: the folder `resp-audio-hf export --format onnx` wrote.
        providers: ONNX Runtime execution providers (default: `["CPUExecutionProvider"]`).
        intra_op_num_threads: threads of one operator (default: ONNX Runtime's choice).

    Attributes:
        config (`dict`): the model's `config.json` (`model_type`, `pooling`, `id2label`, ...).
        input_names (`tuple[str]`): the graph's inputs; `attention_mask` among them for the ViT graphs.
        output_names (`tuple[str]`): `pooler_output`, and `logits` for a classifier.
    """

    def __init__(self, folder: str | os.PathLike, providers=None, intra_op_num_threads: int | None = None):
        import onnxruntime

        self.folder = Path(folder)
        onnx_file = self.folder / ONNX_FILE
        if not onnx_file.is_file():
            raise FileNotFoundError(
                f"{self.folder} has no {ONNX_FILE}; write one with `resp-audio-hf export --format onnx MODEL "
                f"{self.folder}`."
            )
        config_file = self.folder / CONFIG_FILE
        if not config_file.is_file():
            raise FileNotFoundError(f"{self.folder} has no {CONFIG_FILE} beside its {ONNX_FILE}.")
        self.config = json.loads(config_file.read_text(encoding="utf-8"))
        options = onnxruntime.SessionOptions()
        if intra_op_num_threads is not None:
            options.intra_op_num_threads = int(intra_op_num_threads)
        self.session = onnxruntime.InferenceSession(
            str(onnx_file), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
        self.input_names = tuple(node.name for node in self.session.get_inputs())
        self.output_names = tuple(node.name for node in self.session.get_outputs())
        if "input_values" not in self.input_names:
            raise ValueError(f"{onnx_file} takes {self.input_names}, not input_values: it was not written by export.")

    @property
    def takes_mask(self) -> bool:
        """Whether the graph masks padding itself (ViT graphs), rather than needing each clip at its own length."""
        return "attention_mask" in self.input_names

    def __call__(self, input_values: np.ndarray, attention_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """
        `{output name: [batch, ...] float32}` for log-mel frames `input_values` `[batch, frames, num_mel_bins]` and
        their mask `attention_mask` `[batch, frames]` (1 for real frames, 0 for padding after them; `None`: no
        padding), as the feature extractor returns them.
        """
        input_values = np.ascontiguousarray(input_values, dtype=np.float32)
        if input_values.ndim != 3:
            raise ValueError(
                f"input_values must be [batch, frames, num_mel_bins] log-mel frames, got shape {input_values.shape}."
            )
        batch, frames, _ = input_values.shape
        if attention_mask is None:
            attention_mask = np.ones((batch, frames), dtype=np.int64)
        attention_mask = np.asarray(attention_mask)
        if attention_mask.shape != (batch, frames):
            raise ValueError(
                f"attention_mask has shape {attention_mask.shape} but input_values has {batch} clips of {frames} "
                "frames: pass the mask the feature extractor returned with these input_values."
            )
        if self.takes_mask:
            feeds = {"input_values": input_values, "attention_mask": attention_mask.astype(np.int64)}
            return dict(zip(self.output_names, self.session.run(None, feeds)))
        # EfficientAT: one call per distinct clip length, each clip cut to its own frames (see the module docstring).
        lengths = np.maximum(attention_mask.sum(axis=1).astype(np.int64), 1)
        outputs: dict[str, np.ndarray] = {}
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            results = self.session.run(None, {"input_values": input_values[rows, :length]})
            for name, values in zip(self.output_names, results):
                if name not in outputs:
                    outputs[name] = np.empty((batch, *values.shape[1:]), dtype=values.dtype)
                outputs[name][rows] = values
        return outputs


__all__ = ["CONFIG_FILE", "ONNX_FILE", "OUTPUT_NAMES", "PREPROCESSOR_FILE", "OnnxAudioModel"]
