"""
An exported ONNX folder behind the package's torch-side entry points: `embed` (`--backend onnxruntime`) and
`pipeline("audio-classification")`.

What runs where: the front end (decoding, resampling, log-mel: `RespAudioFeatureExtractor` with the folder's
`preprocessor_config.json`) runs in torch exactly as for the eager model; the network and the pooling run in ONNX
Runtime ([`OnnxAudioModel`]); the pipeline's sigmoid or softmax and top-k run in torch on the logits ONNX Runtime
returns.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..export.onnx_runtime import CONFIG_FILE, ONNX_FILE, OnnxAudioModel
from .encoder import CONFIG_FIELDS_WITHOUT_EFFECT, AudioEncoder, compact_config_value

BACKENDS = ("torch", "onnxruntime")


def _load_config(folder: Path):
    from transformers import AutoConfig

    import resp_audio_hf  # noqa: F401  (registers the model types)

    return AutoConfig.from_pretrained(folder)


def _load_feature_extractor(folder: Path, config):
    from ..feature_extraction_resp_audio import RespAudioFeatureExtractor

    if (folder / "preprocessor_config.json").is_file():
        return RespAudioFeatureExtractor.from_pretrained(folder)
    return RespAudioFeatureExtractor.from_model_config(config)


class OnnxAudioEncoder(AudioEncoder):
    """
    [`AudioEncoder`] (what `embed` and `bench` extract with) over an exported folder: features from the folder's
    feature extractor in torch, embeddings (`pooler_output`) from ONNX Runtime. Long clips (over
    `LONG_CLIP_SECONDS`) are embedded alone, whole; the graph has no streaming path.

    Args:
        folder: a folder written by `resp-audio-hf export --format onnx`.
        intra_op_num_threads: ONNX Runtime threads per operator (default: its own choice).
    """

    def __init__(self, folder: str | os.PathLike, intra_op_num_threads: int | None = None):
        folder = Path(folder)
        self.runtime = OnnxAudioModel(folder, intra_op_num_threads=intra_op_num_threads)
        self.config = _load_config(folder)
        self.model = None
        self.feature_extractor = _load_feature_extractor(folder, self.config)
        self.model_id = str(folder)
        self.device = torch.device("cpu")
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self._fe_accepts_padding = True
        self._forward_accepts_any = False
        self._forward_names = {"input_values", "attention_mask"}
        self._fingerprint = None
        self.streams_long_clips = False

    def fingerprint(self) -> str:
        """SHA-256 of `model.onnx` (its weights are inside)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(b"onnx:")
            with open(self.runtime.folder / ONNX_FILE, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            self._fingerprint = digest.hexdigest()[:24]
        return self._fingerprint

    def model_signature(self) -> dict:
        return {
            k: compact_config_value(v)
            for k, v in sorted(self.config.to_dict().items())
            if k not in CONFIG_FIELDS_WITHOUT_EFFECT
        } | {"backend": "onnxruntime"}

    @property
    def pooling(self) -> str | None:
        return getattr(self.config, "pooling", None)

    @property
    def embedding_dim(self) -> int | None:
        size = getattr(self.config, "pooled_size", None)
        return int(size) if size is not None else None

    def embed(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        mask = inputs.get("attention_mask")
        outputs = self.runtime(inputs["input_values"].numpy(), None if mask is None else mask.numpy())
        return outputs["pooler_output"].astype(np.float32, copy=False)


class OnnxRuntimeForAudioClassification(torch.nn.Module):
    """
    An exported classifier folder as the model of transformers' `pipeline("audio-classification", ...)`: its
    `forward` takes the feature extractor's tensors and returns the logits ONNX Runtime computes. Build the pipeline
    with [`onnx_audio_classification_pipeline`].
    """

    main_input_name = "input_values"
    input_modalities = ("audio",)

    def __init__(self, folder: str | os.PathLike, intra_op_num_threads: int | None = None):
        super().__init__()
        folder = Path(folder)
        self.runtime = OnnxAudioModel(folder, intra_op_num_threads=intra_op_num_threads)
        if "logits" not in self.runtime.output_names:
            raise ValueError(
                f"{folder / ONNX_FILE} is an encoder (outputs {self.runtime.output_names}); export a classifier, "
                "without --no-head, for the audio-classification pipeline."
            )
        self.config = _load_config(folder)
        self.name_or_path = str(folder)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        mask = None if attention_mask is None else attention_mask.numpy()
        logits = self.runtime(input_values.numpy(), mask)["logits"]
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))


def onnx_audio_classification_pipeline(folder: str | os.PathLike, **kwargs):
    """`pipeline("audio-classification")` (the package's `RespAudioClassificationPipeline`) running the exported
    classifier in `folder` with ONNX Runtime; `kwargs` go to `transformers.pipeline` (`top_k`, ...)."""
    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    model = OnnxRuntimeForAudioClassification(folder)
    feature_extractor = _load_feature_extractor(Path(folder), model.config)
    # transformers logs an error for a model class it does not list for the task, though it runs it all the same;
    # this one stands in for the exported classifier, so the message would only mislead.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity(transformers_logging.CRITICAL)
    try:
        return pipeline("audio-classification", model=model, feature_extractor=feature_extractor, **kwargs)
    finally:
        transformers_logging.set_verbosity(verbosity)


def is_onnx_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder `resp-audio-hf export --format onnx` wrote."""
    path = Path(path)
    return (path / ONNX_FILE).is_file() and (path / CONFIG_FILE).is_file()


__all__ = [
    "BACKENDS",
    "OnnxAudioEncoder",
    "OnnxRuntimeForAudioClassification",
    "is_onnx_folder",
    "onnx_audio_classification_pipeline",
]
