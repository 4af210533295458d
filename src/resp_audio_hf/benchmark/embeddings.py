"""Streaming embedding extraction with a resumable on-disk cache.

Audio is decoded one clip at a time inside ``torch.utils.data.DataLoader`` workers (resampled to the
encoder's rate by FFmpeg, channels averaged: ``resp_audio_hf.data.audio.load_audio``) and featurised in the workers; only one batch of audio is alive at a time,
so peak memory does not grow with the dataset. Embeddings are written in fixed-size shards through
temporary files + ``os.replace``; an interrupted run keeps its finished shards and a re-run computes
only the rest. Each entry is read and written under its own lock, and checked against SHA-256 checksums
before it is used (``embedding_cache.EmbeddingCache``), so runs may share a cache folder and a damaged
entry is recomputed, never served. The cache key covers everything that changes an embedding: the model's configuration
(pooling included), its weights, the feature extractor's settings, the items (paths, segment bounds,
file sizes and modification times) and the preprocessing. Every entry stores what its key stands for and
its width, and is checked against them before it is used, so a stale or foreign entry is recomputed,
never loaded.

A clip that cannot be embedded (an undecodable file, NaN/inf or silent audio, a NaN/inf embedding)
costs only itself: it is recorded by item index with its reason, and the caller gets every failure
at once (:class:`ClipFailureError`, or ``return_failures=True``) rather than the first one.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data._io import stable_hash
from ..configuration_resp_audio import MODEL_TYPES
from ..data.audio import DECODE_ROUTE, AudioDecodeError, load_audio
from ..data.corpus_table import is_missing
from ..progress import progress_bar
from .embedding_cache import EmbeddingCache, cache_entries  # noqa: F401  (cache_entries: public here too)
from .threads import threads_beside_workers, torch_threads

logger = logging.getLogger(__name__)

# 3: shards named with their checksum, meta.json records the checksums of the complete entry.
CACHE_FORMAT_VERSION = 3
# Model types whose config has a `pooling` choice that `--pooling` may replace: this package's (`MODEL_TYPES`).
POOLING_MODEL_TYPES = tuple(MODEL_TYPES)
# Without a windowed streaming path (models other than resp_audio), clips longer than this go alone in their batch.
LONG_CLIP_SECONDS = 30.0
# Windows a resp_audio encoder on CPU streams at a time through a long clip (on GPU: its config.window_batch_size).
LONG_CLIP_WINDOWS_AT_ONCE_ON_CPU = 4

# Config fields that name, version or format a model's outputs without changing the embedding it computes.
_CONFIG_FIELDS_WITHOUT_EFFECT = frozenset(
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


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------


def _compact(value):
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


def _damaged_weights(name_or_path, error: Exception) -> ValueError:
    """A clear error for weights that cannot be read (safetensors' own names no file)."""
    files = sorted(Path(name_or_path).glob("*.safetensors")) if Path(name_or_path).is_dir() else []
    where = ", ".join(str(path) for path in files) or f"the weights of {name_or_path}"
    message = f"{where} could not be read ({error}): the file is damaged or incomplete (an interrupted download or copy?)."
    return ValueError(message + " Download or copy the model again.")


def _model_not_found(name_or_path, error: Exception) -> Exception:
    """``error`` of loading a model's configuration, with what was looked at: transformers' own message names
    neither the folder nor the Hub id when the Hub cannot be reached."""
    from ..data.download import offline_mode

    if Path(name_or_path).is_dir():
        model_type = _folder_model_type(Path(name_or_path))
        if model_type is not None:
            return ValueError(
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
    return (OSError if isinstance(error, OSError) else ValueError)(f"{where}: {error}")


class AudioEncoder:
    """A transformers audio model plus its feature extractor, returning one vector per clip.

    The vector is ``pooler_output`` when the model returns one, otherwise the mean of
    ``last_hidden_state`` over time (over unpadded frames when the attention mask matches the hidden
    states' length).

    Args:
        model: a ``PreTrainedModel`` (put in eval mode here).
        feature_extractor: its feature extractor (must expose ``sampling_rate``).
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
        """Load any transformers audio encoder (``resp_audio`` models included) from a folder or the Hub.

        ``pooling`` replaces the ``config.pooling`` of a ``resp_audio`` model (``freq_preserving``, ``mean``, ``cls``)
        or an ``efficientat`` one (``freq_preserving``, ``mean``); other models have no such choice and raise
        ``ValueError``.
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
                raise ValueError(
                    f"pooling={pooling!r} applies to {' and '.join(POOLING_MODEL_TYPES)} models only; {name_or_path} is a "
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
                raise ValueError(
                    f"{name_or_path} has no feature extractor (preprocessor_config.json): {error}"
                ) from error
            from resp_audio_hf import RespAudioFeatureExtractor

            # A checkpoint of this package saved without its preprocessor: the config fully determines the front end.
            feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
        return cls(model, feature_extractor, model_id=str(name_or_path), device=device)

    @classmethod
    def from_preset(cls, preset: str, *, seed: int = 0, device="cpu", **overrides):
        """A randomly initialised ``RespAudioModel`` from a preset (demos and tests; seeded, so reproducible)."""
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
        """The model's configuration (``config.to_dict()`` without fields that do not change embeddings)."""
        config = getattr(self.model, "config", None)
        if config is None:
            return {"class": type(self.model).__name__}
        return {
            k: _compact(v) for k, v in sorted(config.to_dict().items()) if k not in _CONFIG_FIELDS_WITHOUT_EFFECT
        }

    @property
    def pooling(self) -> str | None:
        """``config.pooling`` of a ``resp_audio`` model (``None`` for models without that choice)."""
        return getattr(getattr(self.model, "config", None), "pooling", None)

    @property
    def embedding_dim(self) -> int | None:
        """Width of the embeddings when the config states it (``resp_audio``: ``pooled_size``), else ``None``."""
        size = getattr(getattr(self.model, "config", None), "pooled_size", None)
        return int(size) if size is not None else None

    def preprocessing_signature(self) -> dict:
        """The feature extractor's settings (large arrays such as filterbanks replaced by their digest)."""
        to_dict = getattr(self.feature_extractor, "to_dict", None)
        config = to_dict() if callable(to_dict) else {"class": type(self.feature_extractor).__name__}
        return {k: _compact(v) for k, v in config.items() if not k.startswith("_") and k != "processor_class"}

    def is_long(self, num_samples: int) -> bool:
        """Whether a clip of ``num_samples`` samples (at ``sampling_rate``) is embedded on its own: for ``resp_audio``
        encoders, a clip longer than one encoder window; for other models, one over ``LONG_CLIP_SECONDS``."""
        if self.streams_long_clips:
            # EfficientAT streams windows of its own (`stream_window_frames`); resp_audio encoders their config's.
            window = getattr(self.model, "stream_window_frames", None) or self.model.config.window_frames
            return self.feature_extractor.num_frames(num_samples) > window
        return num_samples > LONG_CLIP_SECONDS * self.sampling_rate

    def embed_long(self, audio) -> np.ndarray:
        """``[dim]`` float32 embedding of one clip at ``sampling_rate``, of any length: ``resp_audio`` encoders stream
        it window by window (``RespAudioModel.pool_frame_stream``), other models embed it alone."""
        if not self.streams_long_clips:
            return self.embed(self.featurize([audio]))[0]
        blocks = self.feature_extractor.frame_blocks(audio, self.sampling_rate)
        # On CPU a ViT-B window holds about 60 MB of activations; a few at a time run as fast as many.
        windows = None if self.device.type == "cuda" else LONG_CLIP_WINDOWS_AT_ONCE_ON_CPU
        return self.model.pool_frame_stream(blocks, windows_at_once=windows)[0].float().cpu().numpy()

    def featurize(self, clips: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """Feature-extractor inputs for a list of mono clips at ``self.sampling_rate``."""
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
        """``[batch, dim]`` float32 embeddings for featurised inputs."""
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


# --------------------------------------------------------------------------------------------------
# Clip datasets
# --------------------------------------------------------------------------------------------------


def _file_stat(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # decoding will name the file; the key just records that it was absent
    return stat.st_size, stat.st_mtime_ns


class FileClipDataset(torch.utils.data.Dataset):
    """Decodes one file (or one segment of it) per item at ``sampling_rate`` (``load_audio``, the files' route).

    Args:
        paths: audio files.
        sampling_rate: decode/resample rate (the encoder's).
        starts, ends: optional segment bounds in seconds (``None`` entries = whole file).
        max_duration: keep only the first ``max_duration`` seconds of each clip. Off by default;
            when set it is part of the cache key and the results metadata.
    """

    def __init__(
        self, paths: Sequence[str], sampling_rate: int, starts=None, ends=None, max_duration: float | None = None
    ):
        self.paths = [str(p) for p in paths]
        self.sampling_rate = int(sampling_rate)
        self.starts = list(starts) if starts is not None else [None] * len(self.paths)
        self.ends = list(ends) if ends is not None else [None] * len(self.paths)
        self.max_duration = max_duration
        if not (len(self.starts) == len(self.ends) == len(self.paths)):
            raise ValueError("paths, starts and ends must have the same length")

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, index: int) -> str:
        start, end = self.starts[index], self.ends[index]
        segment = "" if start is None and end is None else f" [{start}-{end} s]"
        return self.paths[index] + segment

    def signature(self) -> dict:
        """What the embeddings of these items depend on: paths, segment bounds, and each file's size and
        modification time (a file replaced in place gets new embeddings)."""
        return {
            "items": stable_hash([self.paths, self.starts, self.ends, [_file_stat(p) for p in self.paths]], length=32),
            "n": len(self),
            "max_duration": self.max_duration,
            "sampling_rate": self.sampling_rate,
            "decode": DECODE_ROUTE,
        }

    def __getitem__(self, index: int) -> dict:
        start, end = self.starts[index], self.ends[index]
        start = None if is_missing(start) else float(start)
        end = None if is_missing(end) else float(end)
        if self.max_duration is not None:
            end = (start or 0.0) + self.max_duration if end is None else min(end, (start or 0.0) + self.max_duration)
        try:
            audio, rate = load_audio(self.paths[index], self.sampling_rate, start, end)
        except AudioDecodeError as error:
            # One bad file must not end the extraction: the loop records it under this item's index.
            return {"index": index, "error": error.reason}
        return {"index": index, "audio": audio, "sampling_rate": rate}


class ArrayClipDataset(torch.utils.data.Dataset):
    """In-memory mono clips (e.g. synthetic demo audio), resampled to ``sampling_rate`` on access by torchaudio, as
    the feature extractor resamples arrays."""

    def __init__(
        self, clips: Sequence[np.ndarray], clip_rate: int, sampling_rate: int, names: Sequence[str] | None = None
    ):
        self.clips = list(clips)
        self.clip_rate = int(clip_rate)
        self.sampling_rate = int(sampling_rate)
        self.names = list(names) if names is not None else [f"clip {i}" for i in range(len(self.clips))]

    def __len__(self) -> int:
        return len(self.clips)

    def describe(self, index: int) -> str:
        return self.names[index]

    def signature(self) -> dict:
        import hashlib

        digest = hashlib.sha256()
        for clip in self.clips:
            digest.update(np.ascontiguousarray(clip, dtype=np.float32).tobytes())
            digest.update(str(len(clip)).encode())
        return {
            "items": digest.hexdigest()[:32],
            "n": len(self),
            "clip_rate": self.clip_rate,
            "sampling_rate": self.sampling_rate,
        }

    def __getitem__(self, index: int) -> dict:
        audio = torch.as_tensor(np.asarray(self.clips[index], dtype=np.float32))
        if self.clip_rate != self.sampling_rate:
            from ..resampling import resample  # torchaudio's filter, in bounded memory at any pair of rates

            audio = resample(audio, self.clip_rate, self.sampling_rate)
        return {"index": index, "audio": audio.numpy(), "sampling_rate": self.sampling_rate}


def _refusal_reason(error: Exception) -> str:
    """The feature extractor's message for a single clip, without its batch position ("Audio clip 0 ...")."""
    return "refused by the feature extractor: " + re.sub(r"^Audio clip \d+", "the clip", str(error))


class FeatureCollator:
    """``collate_fn`` that featurises a list of clips (runs inside DataLoader workers).

    Batches are ``{"index", "inputs", "failed", "long"}``: ``failed`` lists ``(item index, reason)`` for the
    clips that could not be decoded or that the feature extractor refused (e.g. silent audio), so one
    bad file costs only itself; ``inputs`` is ``None`` when every clip of the batch failed. Clips
    longer than one encoder window (``AudioEncoder.is_long``) are not featurised here but passed on as
    ``long``, ``(item index, audio tensor)`` pairs, each embedded alone by ``AudioEncoder.embed_long``:
    the other clips are padded only up to the longest of them, never up to an hour-long recording.
    """

    def __init__(self, encoder: AudioEncoder):
        self.encoder = encoder

    def __call__(self, items: list[dict]) -> dict:
        failed = [(item["index"], item["error"]) for item in items if "error" in item]
        items = [item for item in items if "error" not in item]
        rates = {item["sampling_rate"] for item in items}
        if items and rates != {self.encoder.sampling_rate}:
            raise ValueError(
                f"Clips arrive at {sorted(rates)} Hz but the encoder expects {self.encoder.sampling_rate} Hz."
            )
        # A tensor crosses from a DataLoader worker in shared memory; a numpy array would be pickled (copied).
        long = [
            (item["index"], torch.as_tensor(item["audio"]))
            for item in items
            if self.encoder.is_long(len(item["audio"]))
        ]
        items = [item for item in items if not self.encoder.is_long(len(item["audio"]))]
        try:
            inputs = self.encoder.featurize([item["audio"] for item in items]) if items else None
        except ValueError:
            # Find the clips the feature extractor refuses one by one; featurise the others together.
            kept = []
            for item in items:
                try:
                    self.encoder.featurize([item["audio"]])
                except ValueError as error:
                    failed.append((item["index"], _refusal_reason(error)))
                else:
                    kept.append(item)
            if len(kept) == len(items):
                raise  # no single clip is to blame: a genuine error, not a bad recording
            items = kept
            inputs = self.encoder.featurize([item["audio"] for item in items]) if items else None
        return {
            "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
            "inputs": inputs,
            "failed": failed,
            "long": long,
        }


def make_dataloader(
    dataset, encoder: AudioEncoder, batch_size: int = 16, num_workers: int = 0, indices: Sequence[int] | None = None
):
    """DataLoader that decodes and featurises in ``num_workers`` processes, in dataset order."""
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    return torch.utils.data.DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=FeatureCollator(encoder),
        persistent_workers=False,
    )


def embedding_cache_key(encoder: AudioEncoder, dataset, extra: dict | None = None) -> tuple[str, dict]:
    """Cache key (and the description it hashes) for ``encoder`` x ``dataset`` x preprocessing."""
    description = {
        "format": CACHE_FORMAT_VERSION,
        "model": {"id": encoder.model_id, "fingerprint": encoder.fingerprint(), "config": encoder.model_signature()},
        "preprocessing": encoder.preprocessing_signature(),
        "data": dataset.signature() if hasattr(dataset, "signature") else {"n": len(dataset)},
        "extra": extra or {},
    }
    return stable_hash(description, length=32), description


# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------


def _describe(dataset, index: int) -> str:
    return dataset.describe(index) if hasattr(dataset, "describe") else f"item {index}"


class ClipFailureError(ValueError):
    """Some clips could not be embedded; ``failures`` maps each item index to ``(name, reason)``."""

    def __init__(self, failures: dict[int, tuple[str, str]], n_items: int):
        self.failures = failures
        listing = "; ".join(f"{name}: {reason}" for name, reason in failures.values())
        super().__init__(f"{len(failures)} of {n_items} clip(s) could not be embedded: {listing}")


def extract_embeddings(
    encoder: AudioEncoder,
    data,
    *,
    cache_dir: str | os.PathLike | None = None,
    cache_extra: dict | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    shard_size: int = 256,
    progress: bool = True,
    desc: str = "embedding",
    return_failures: bool = False,
):
    """Embed every clip of ``data`` with ``encoder``; ``[n_items, dim]`` float32, row i = item i.

    A clip that cannot be embedded (undecodable, NaN/inf or silent audio the feature extractor
    refuses, a NaN/inf embedding) does not stop the others: every clip is attempted, and then a
    :class:`ClipFailureError` names each failed one with its reason, unless ``return_failures``.

    Args:
        encoder: the :class:`AudioEncoder`.
        data: a clip dataset (items ``{"index", "audio", "sampling_rate"}``), or a ``DataLoader`` over
            one whose ``collate_fn`` is a :class:`FeatureCollator` (use :func:`make_dataloader`). With a
            dataset, a DataLoader with ``num_workers`` workers is built here and, on resume, only the
            unfinished items are loaded.
        cache_dir: directory for the resumable cache (``None``: no cache).
        cache_extra: additional facts that must change the cache key (e.g. the task id).
        shard_size: items per cache shard (the unit of resumption).
        return_failures: return ``(embeddings, {item index: reason})`` instead of raising; the rows of
            failed items are NaN. Raises all the same when no clip at all could be embedded.
    """
    loader = data if isinstance(data, torch.utils.data.DataLoader) else None
    dataset = loader.dataset if loader is not None else data
    base_dataset = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    n_items = len(dataset)
    if n_items == 0:
        raise ValueError("No clips to embed.")

    run = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress, "desc": desc}

    def finish(features: np.ndarray, failures: dict[int, str]):
        if failures and (len(failures) == n_items or not return_failures):
            raise ClipFailureError({i: (_describe(base_dataset, i), failures[i]) for i in sorted(failures)}, n_items)
        return (features, dict(sorted(failures.items()))) if return_failures else features

    if cache_dir is None:
        cache = EmbeddingCache(Path(os.devnull), "", n_items, max(n_items, 1))
        return finish(*_compute_rows(encoder, dataset, loader, cache, set(), {}, in_cache=False, **run))
    key, description = embedding_cache_key(encoder, dataset, cache_extra)
    cache = EmbeddingCache(Path(cache_dir), key, n_items, shard_size, description, encoder.embedding_dim)
    # The whole read-compute-write of an entry holds its lock: a second run on the same entry waits, then reads it.
    with cache.locked():
        failures = cache.load_failures()
        cached = cache.load(failures)
        if cached is not None:
            logger.info("%s: all %d embeddings read from the cache entry %s.", desc, n_items, cache.directory)
            return finish(cached, failures)
        done = cache.prepare(failures)
        if done:
            logger.info(
                "%s: resuming from the cache entry %s (%d of %d shards already computed).",
                desc, cache.directory, len(done), cache.n_shards(),
            )
        failures = {i: reason for i, reason in failures.items() if i // shard_size in done}
        return finish(*_compute_rows(encoder, dataset, loader, cache, done, failures, in_cache=True, **run))


def _compute_rows(
    encoder, dataset, loader, cache: EmbeddingCache, done: set[int], failures: dict[int, str], *, in_cache: bool,
    batch_size: int, num_workers: int, progress: bool, desc: str,
) -> tuple[np.ndarray, dict[int, str]]:
    """`(embeddings, failures)` of every item, the shards in `done` read from `cache`, the others computed (and
    written to `cache` when `in_cache`)."""
    n_items = len(dataset)

    todo = [i for shard in range(cache.n_shards()) if shard not in done for i in cache.shard_range(shard)]
    if loader is None:
        loader = make_dataloader(dataset, encoder, batch_size=batch_size, num_workers=num_workers, indices=todo)
        remaining = len(todo)
    else:
        remaining = n_items

    # Finished rows per unwritten shard (None = failed); a shard is written once all its items are in.
    pending: dict[int, dict[int, np.ndarray | None]] = {}
    in_memory: dict[int, np.ndarray] = {}  # only without a cache
    dim = None

    def write_full_shards():
        for shard in [s for s, rows in pending.items() if len(rows) == len(cache.shard_range(s))]:
            rows = pending.pop(shard)
            block = np.full((len(rows), dim), np.nan, dtype=np.float32)
            for index, vector in rows.items():
                if vector is not None:
                    block[index - cache.shard_range(shard).start] = vector
            if failures or cache.failures_path.exists():
                cache.save_failures(failures)  # before the shard, so its NaN rows are always explained
            cache.write_shard(shard, block)
            done.add(shard)

    bar = progress_bar(remaining, desc=desc, unit="clip", enabled=progress)
    try:
        # The encoder's threads would otherwise compete with the workers for the same cores.
        with torch_threads(threads_beside_workers(loader.num_workers)):
            for batch in loader:
                if not (isinstance(batch, dict) and "index" in batch and "inputs" in batch):
                    raise TypeError(
                        "DataLoader batches must come from FeatureCollator (build the loader with make_dataloader)."
                    )
                indices = batch["index"].tolist()
                failed = dict(batch.get("failed", ()))
                long = list(batch.get("long", ()))
                if {i // cache.shard_size for i in indices + list(failed) + [i for i, _ in long]} <= done:
                    continue  # an external loader re-yields items whose shard is already on disk
                rows: dict[int, np.ndarray | None] = dict.fromkeys(failed)
                embedded = list(zip(indices, encoder.embed(batch["inputs"]))) if indices else []
                for index, audio in long:
                    try:
                        embedded.append((index, encoder.embed_long(audio)))
                    except ValueError as error:  # the feature extractor refuses the clip (silent, NaN, ...)
                        rows[index], failed[index] = None, _refusal_reason(error)
                if embedded:
                    dim = embedded[0][1].shape[0]
                    for index, vector in embedded:
                        if np.isfinite(vector).all():
                            rows[index] = vector
                        else:
                            rows[index] = None
                            failed[index] = "the encoder produced a NaN/inf embedding"
                for index, vector in rows.items():
                    shard = index // cache.shard_size
                    if shard in done:
                        continue
                    if index in failed:
                        failures[index] = failed[index]
                    if not in_cache:
                        if vector is not None:
                            in_memory[index] = vector
                    else:
                        pending.setdefault(shard, {})[index] = vector
                if in_cache and dim is not None:
                    write_full_shards()
                bar.update(len(rows))
    finally:
        bar.close()

    if dim is None and done:
        dim = int(cache.read_shard(min(done), failures).shape[1])
    if dim is None:  # nothing was embedded, in this run or before
        if not failures:
            raise RuntimeError("The DataLoader yielded no items to embed.")
        return np.empty((n_items, 0), dtype=np.float32), failures
    if not in_cache:
        features = np.full((n_items, dim), np.nan, dtype=np.float32)
        for index, vector in in_memory.items():
            features[index] = vector
        return features, failures
    write_full_shards()
    missing = set(range(cache.n_shards())) - done
    if missing:
        raise RuntimeError(
            f"Embedding extraction ended with {len(missing)} unfinished cache shard(s) in {cache.directory}; the "
            "DataLoader did not yield every item."
        )
    return cache.consolidate(dim, failures), failures
