"""The encoder side of extraction: [`AudioEncoder`] (a transformers audio model plus its feature extractor, one vector
per clip) and [`load_encoder`], the one loader `embed` and `bench` build it with (a folder or Hub id, a random-weight
preset, or an exported ONNX folder). A model that cannot be loaded raises [`EncoderLoadError`], naming the folder or Hub
id and the fix.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..configuration_resp_audio import MODEL_TYPES

# Model types whose config has a `pooling` choice that `--pooling` may replace: this package's (`MODEL_TYPES`).
POOLING_MODEL_TYPES = tuple(MODEL_TYPES)
# Without a windowed streaming path (models other than resp_audio), clips longer than this go alone in their batch.
LONG_CLIP_SECONDS = 30.0

# Config fields that name, version or format a model's outputs without changing the embedding it computes.
CONFIG_FIELDS_WITHOUT_EFFECT = frozenset(
    {
        "transformers_version",
        "_name_or_path",
        "_commit_hash",
        "architectures",
        "auto_map",
        "output_hidden_states",
        "output_attentions",
        "return_dict",
        "id2label",
        "label2id",
        "problem_type",
    }
)


class EncoderLoadError(ValueError):
    """A folder or Hub id that cannot be loaded as an encoder (not found, not a model, damaged weights, no feature
    extractor, an option the model does not have); the message names what was looked at and the fix."""


def compact_config_value(value):
    """JSON-friendly stand-in for a config value: arrays and long lists become a content digest."""
    import hashlib

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) or (isinstance(value, (list, tuple)) and len(value) > 64):
        data = np.ascontiguousarray(np.asarray(value, dtype=np.float64)).tobytes()
        return {"sha256": hashlib.sha256(data).hexdigest()[:16], "shape": list(np.shape(value))}
    return value


def _folder_model_type(folder: Path) -> str | None:
    """The `model_type` a folder's config.json names, or None when it has no readable one."""
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return model_type if isinstance(model_type, str) else None


def _damaged_weights(name_or_path, error: Exception) -> EncoderLoadError:
    """A clear error for weights that cannot be read (safetensors' own names no file)."""
    files = sorted(Path(name_or_path).glob("*.safetensors")) if Path(name_or_path).is_dir() else []
    where = ", ".join(str(path) for path in files) or f"the weights of {name_or_path}"
    message = f"{where} could not be read ({error}): the file is damaged or incomplete (an interrupted download or copy?)."
    return EncoderLoadError(message + " Download or copy the model again.")


def _model_not_found(name_or_path, error: Exception) -> EncoderLoadError:
    """`error` of loading a model's configuration, with what was looked at: transformers' own message names
    neither the folder nor the Hub id when the Hub cannot be reached."""
    from ..data.download import offline_mode

    if Path(name_or_path).is_dir():
        model_type = _folder_model_type(Path(name_or_path))
        if model_type is not None:
            return EncoderLoadError(
                f"{name_or_path}/config.json names model_type {model_type!r}, which this transformers does not know: "
                "install the package that defines it (or a newer transformers), or pass --trust-remote-code if the "
                "folder carries its own code."
            )
        where = f"{name_or_path} is a folder but not a model folder (config.json with a model_type)"
    else:
        hub = "HF_HUB_OFFLINE is set, so the Hub was not asked" if offline_mode() == "HF_HUB_OFFLINE" else (
            "loading it from the Hub failed"
        )
        where = f"{name_or_path} is not a local folder, and {hub}"
    return EncoderLoadError(f"{where}: {error}")


class AudioEncoder:
    """A transformers audio model plus its feature extractor, returning one vector per clip.

    The vector is `pooler_output` when the model returns one, otherwise the mean of
    `last_hidden_state` over time (over unpadded frames when the attention mask matches the hidden
    states' length).

    Args:
        model: a `PreTrainedModel` (put in eval mode here).
        feature_extractor: its feature extractor (must expose `sampling_rate`).
        model_id: name recorded in results and cache keys (path, hub id or preset).
        device: where the model runs.
    """

    def __init__(self, model, feature_extractor, model_id: str, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.feature_extractor = feature_extractor
        self.model_id = model_id
        self.device = torch.device(device)
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self._fe_accepts_padding = "padding" in inspect.signature(feature_extractor.__call__).parameters
        forward_parameters = inspect.signature(model.forward).parameters
        self._forward_accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in forward_parameters.values())
        self._forward_names = set(forward_parameters)
        self._fingerprint: str | None = None
        # resp_audio encoders featurise and encode a long clip window by window (bounded memory); other models get
        # it alone in a batch of one, so that no short clip is ever padded up to it.
        self.streams_long_clips = callable(getattr(model, "pool_frame_stream", None)) and callable(
            getattr(feature_extractor, "frame_blocks", None)
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device="cpu",
        revision: str | None = None,
        trust_remote_code: bool = False,
        pooling: str | None = None,
    ):
        """Load any transformers audio encoder (`resp_audio` models included) from a folder or the Hub.

        `pooling` replaces the `config.pooling` of a `resp_audio` model (`freq_preserving`, `mean`, `cls`)
        or an `efficientat` one (`freq_preserving`, `mean`); other models have no such choice and raise
        [`EncoderLoadError`], as does a model that cannot be loaded.
        """
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        import resp_audio_hf  # noqa: F401  (registers the resp_audio model type with the Auto classes)

        kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as error:
            raise _model_not_found(name_or_path, error) from error
        if pooling is not None:
            if config.model_type not in POOLING_MODEL_TYPES:
                raise EncoderLoadError(
                    f"pooling={pooling!r} applies to {' and '.join(POOLING_MODEL_TYPES)} models only; "
                    f"{name_or_path} is a "
                    f"{config.model_type!r} model, whose pooling is fixed by its architecture."
                )
            # from_dict runs the config's own validation of the pooling name.
            config = type(config).from_dict({**config.to_dict(), "pooling": pooling})
            kwargs["config"] = config
        try:
            model = AutoModel.from_pretrained(name_or_path, **kwargs)
        except Exception as error:
            if type(error).__name__ == "SafetensorError" or "deserializ" in str(error):
                raise _damaged_weights(name_or_path, error) from error
            raise
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as error:
            if config.model_type not in MODEL_TYPES:
                raise EncoderLoadError(
                    f"{name_or_path} has no feature extractor (preprocessor_config.json): {error}"
                ) from error
            from resp_audio_hf import RespAudioFeatureExtractor

            # A checkpoint of this package saved without its preprocessor: the config fully determines the front end.
            feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
        return cls(model, feature_extractor, model_id=str(name_or_path), device=device)

    @classmethod
    def from_preset(cls, preset: str, *, seed: int = 0, device="cpu", **overrides):
        """A randomly initialised `RespAudioModel` from a preset (demos and tests; seeded, so reproducible)."""
        from resp_audio_hf import (
            RespAudioConfig,
            RespAudioFeatureExtractor,
            RespAudioModel,
        )

        config = RespAudioConfig.from_preset(preset, **overrides)
        torch.manual_seed(seed)
        model = RespAudioModel(config)
        return cls(
            model,
            RespAudioFeatureExtractor.from_model_config(config),
            model_id=f"preset:{preset}:seed{seed}",
            device=device,
        )

    def fingerprint(self) -> str:
        """SHA-256 over the model's parameters and buffers (so a retrained checkpoint gets a new cache)."""
        if self._fingerprint is None:
            import hashlib

            digest = hashlib.sha256()
            digest.update(type(self.model).__name__.encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(str(tuple(tensor.shape)).encode())
                digest.update(
                    tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                    if tensor.numel()
                    else b""
                )
            self._fingerprint = digest.hexdigest()[:24]
        return self._fingerprint

    def model_signature(self) -> dict:
        """The model's configuration (`config.to_dict()` without fields that do not change embeddings)."""
        config = getattr(self.model, "config", None)
        if config is None:
            return {"class": type(self.model).__name__}
        return {
            k: compact_config_value(v) for k, v in sorted(config.to_dict().items()) if k not in CONFIG_FIELDS_WITHOUT_EFFECT
        }

    @property
    def pooling(self) -> str | None:
        """`config.pooling` of a `resp_audio` model (`None` for models without that choice)."""
        return getattr(getattr(self.model, "config", None), "pooling", None)

    @property
    def embedding_dim(self) -> int | None:
        """Width of the embeddings when the config states it (`resp_audio`: `pooled_size`), else `None`."""
        size = getattr(getattr(self.model, "config", None), "pooled_size", None)
        return int(size) if size is not None else None

    def preprocessing_signature(self) -> dict:
        """The feature extractor's settings (large arrays such as filterbanks replaced by their digest)."""
        to_dict = getattr(self.feature_extractor, "to_dict", None)
        config = to_dict() if callable(to_dict) else {"class": type(self.feature_extractor).__name__}
        return {k: compact_config_value(v) for k, v in config.items() if not k.startswith("_") and k != "processor_class"}

    def is_long(self, num_samples: int) -> bool:
        """Whether a clip of `num_samples` samples (at `sampling_rate`) is embedded on its own: for `resp_audio`
        encoders, a clip longer than one encoder window; for other models, one over `LONG_CLIP_SECONDS`."""
        if self.streams_long_clips:
            # EfficientAT streams windows of its own (`stream_window_frames`); resp_audio encoders their config's.
            window = getattr(self.model, "stream_window_frames", None) or self.model.config.window_frames
            return self.feature_extractor.num_frames(num_samples) > window
        return num_samples > LONG_CLIP_SECONDS * self.sampling_rate

    def embed_long(self, audio) -> np.ndarray:
        """`[dim]` float32 embedding of one clip at `sampling_rate`, of any length: `resp_audio` encoders stream
        it window by window (`RespAudioModel.pool_frame_stream`), other models embed it alone."""
        if not self.streams_long_clips:
            return self.embed(self.featurize([audio]))[0]
        blocks = self.feature_extractor.frame_blocks(audio, self.sampling_rate)
        return self.model.pool_frame_stream(blocks)[0].float().cpu().numpy()

    def featurize(self, clips: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Feature-extractor inputs for a list of mono clips at `self.sampling_rate`."""
        kwargs: dict[str, Any] = {"sampling_rate": self.sampling_rate, "return_tensors": "pt"}
        if self._fe_accepts_padding:
            kwargs["padding"] = True
        batch = self.feature_extractor(list(clips), **kwargs)
        return {
            k: v
            for k, v in batch.items()
            if isinstance(v, torch.Tensor) and (self._forward_accepts_any or k in self._forward_names)
        }

    @torch.inference_mode()
    def embed(self, inputs: dict[str, torch.Tensor]) -> np.ndarray:
        """`[batch, dim]` float32 embeddings for featurised inputs."""
        outputs = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None or pooled.ndim != 2:
            hidden = outputs.last_hidden_state
            if hidden.ndim != 3:
                raise ValueError(
                    f"Cannot pool last_hidden_state of shape {tuple(hidden.shape)}; expected [batch, time, dim]."
                )
            mask = inputs.get("attention_mask")
            if mask is not None and mask.shape[1] == hidden.shape[1]:
                weights = mask.to(hidden.device, hidden.dtype).unsqueeze(-1)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            else:
                pooled = hidden.mean(dim=1)
        return pooled.float().cpu().numpy()


def load_encoder(
    model: str | None = None,
    *,
    preset: str | None = None,
    pooling: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str = "cpu",
    backend: str = "torch",
) -> AudioEncoder:
    """
    The [`AudioEncoder`] for a folder / Hub id (`model`) or a random-weight preset, with `pooling` set in the model's
    config (resp_audio and efficientat models only): what `embed` and `bench` load. `backend="onnxruntime"`: `model` is
    a folder written by `resp-audio-hf export --format onnx`, whose graph runs in ONNX Runtime (the features are
    computed in torch).

    Raises:
        EncoderLoadError: the model cannot be loaded (named, with the reason and the fix).
        ValueError: the arguments themselves are inconsistent (neither or both of `model` and `preset`, an unknown
            backend or pooling).
    """
    from ..pooling import POOLINGS

    if (model is None) == (preset is None):
        raise ValueError("Give exactly one of a model (folder or Hub id) and a preset.")
    if backend == "onnxruntime":
        return _onnx_encoder(model, pooling=pooling, device=device)
    if backend != "torch":
        raise ValueError(f"backend must be torch or onnxruntime, got {backend!r}.")
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
    if preset is not None:
        return AudioEncoder.from_preset(preset, device=device, **({"pooling": pooling} if pooling else {}))
    # A pooling for another model type is refused there, naming the model.
    return AudioEncoder.from_pretrained(
        model, device=device, revision=revision, trust_remote_code=trust_remote_code, pooling=pooling
    )


def _onnx_encoder(model: str | None, *, pooling: str | None, device: str):
    if model is None:
        raise ValueError("--backend onnxruntime runs an exported folder: give it as --model, not a --preset.")
    from .onnx_encoder import OnnxAudioEncoder, is_onnx_folder

    if not is_onnx_folder(model):
        raise EncoderLoadError(
            f"{model} is not an exported ONNX folder (model.onnx with config.json); write one with "
            f"`resp-audio-hf export --format onnx --model {model} FOLDER`."
        )
    if device != "cpu":
        raise ValueError(f"--backend onnxruntime runs on the CPU; drop --device {device}.")
    encoder = OnnxAudioEncoder(model)
    if pooling is not None and pooling != encoder.pooling:
        raise EncoderLoadError(
            f"{model} was exported with pooling {encoder.pooling!r} inside its graph; export it again with "
            f"--pooling {pooling} to embed with that pooling."
        )
    return encoder
