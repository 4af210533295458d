"""Streaming embedding extraction with a resumable on-disk cache.

Audio is decoded one clip at a time inside ``torch.utils.data.DataLoader`` workers (resampled to the
encoder's rate by FFmpeg) and featurised in the workers; only one batch of audio is alive at a time,
so peak memory does not grow with the dataset. Embeddings are written in fixed-size shards through
temporary files + ``os.replace``; an interrupted run keeps its finished shards and a re-run computes
only the rest. The cache key covers the model (weights fingerprint), the task's item list and the
preprocessing, so changing any of them never reuses stale vectors.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data._io import atomic_path, atomic_save_npy, atomic_write_json, stable_hash
from ..data.audio import load_audio
from ..data.corpora import is_missing
from ..progress import progress_bar
from .threads import threads_beside_workers, torch_threads

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


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

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device="cpu",
        revision: str | None = None,
        trust_remote_code: bool = False,
        config_overrides: dict | None = None,
    ):
        """Load any transformers audio encoder (``resp_audio`` models included) from a folder or the Hub.

        ``config_overrides`` replace fields of the saved config before the model is built (e.g. ``pooling``).
        """
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        import resp_audio_hf  # noqa: F401  (registers the resp_audio model type with the Auto classes)

        kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
        config = AutoConfig.from_pretrained(name_or_path, **kwargs, **(config_overrides or {}))
        model = AutoModel.from_pretrained(name_or_path, config=config, **kwargs)
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError) as error:
            if config.model_type != "resp_audio":
                raise ValueError(
                    f"{name_or_path} has no feature extractor (preprocessor_config.json): {error}"
                ) from error
            from resp_audio_hf import RespAudioFeatureExtractor

            # A resp_audio checkpoint saved without its preprocessor: the config fully determines the front end.
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

    def preprocessing_signature(self) -> dict:
        """The feature extractor's settings (large arrays such as filterbanks replaced by their digest)."""
        to_dict = getattr(self.feature_extractor, "to_dict", None)
        config = to_dict() if callable(to_dict) else {"class": type(self.feature_extractor).__name__}
        return {k: _compact(v) for k, v in config.items() if not k.startswith("_") and k != "processor_class"}

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


class FileClipDataset(torch.utils.data.Dataset):
    """Decodes one file (or one segment of it) per item at ``sampling_rate``.

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
        return {
            "items": stable_hash([self.paths, self.starts, self.ends], length=32),
            "n": len(self),
            "max_duration": self.max_duration,
            "sampling_rate": self.sampling_rate,
        }

    def __getitem__(self, index: int) -> dict:
        start, end = self.starts[index], self.ends[index]
        start = None if is_missing(start) else float(start)
        end = None if is_missing(end) else float(end)
        if self.max_duration is not None:
            end = (start or 0.0) + self.max_duration if end is None else min(end, (start or 0.0) + self.max_duration)
        audio, rate = load_audio(self.paths[index], self.sampling_rate, start, end)
        return {"index": index, "audio": audio, "sampling_rate": rate}


class ArrayClipDataset(torch.utils.data.Dataset):
    """In-memory clips (e.g. synthetic demo audio), resampled to ``sampling_rate`` on access."""

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
            import torchaudio.functional as F

            audio = F.resample(audio, self.clip_rate, self.sampling_rate)
        return {"index": index, "audio": audio.numpy(), "sampling_rate": self.sampling_rate}


class FeatureCollator:
    """``collate_fn`` that featurises a list of clips (runs inside DataLoader workers)."""

    def __init__(self, encoder: AudioEncoder):
        self.encoder = encoder

    def __call__(self, items: list[dict]) -> dict:
        rates = {item["sampling_rate"] for item in items}
        if rates != {self.encoder.sampling_rate}:
            raise ValueError(
                f"Clips arrive at {sorted(rates)} Hz but the encoder expects {self.encoder.sampling_rate} Hz."
            )
        return {
            "index": torch.tensor([item["index"] for item in items]),
            "inputs": self.encoder.featurize([item["audio"] for item in items]),
        }


def _worker_init(_):
    # Several workers each using every core would oversubscribe the CPU.
    torch.set_num_threads(1)


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
        worker_init_fn=_worker_init if num_workers > 0 else None,
        persistent_workers=False,
    )


# --------------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------------


@dataclass
class EmbeddingCache:
    """Sharded on-disk store of one embedding matrix.

    Layout: ``<root>/<key>/meta.json`` (what the key stands for), ``shard_00000.npy`` ... while
    extraction runs, and ``embeddings.npy`` once complete (the shards are then removed).
    """

    root: Path
    key: str
    n_items: int
    shard_size: int = 256

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.key

    @property
    def final_path(self) -> Path:
        return self.directory / "embeddings.npy"

    def n_shards(self) -> int:
        return (self.n_items + self.shard_size - 1) // self.shard_size

    def shard_path(self, shard: int) -> Path:
        return self.directory / f"shard_{shard:05d}.npy"

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min(self.n_items, (shard + 1) * self.shard_size))

    def complete_shards(self) -> set[int]:
        done = set()
        for shard in range(self.n_shards()):
            path = self.shard_path(shard)
            if path.exists():
                try:
                    array = np.load(path, mmap_mode="r")
                    if array.shape[0] == len(self.shard_range(shard)) and np.isfinite(array).all():
                        done.add(shard)
                except (ValueError, OSError):
                    logger.warning("Ignoring unreadable cache shard %s; it will be recomputed.", path)
        return done

    def load(self) -> np.ndarray | None:
        if not self.final_path.exists():
            return None
        array = np.load(self.final_path)
        if array.shape[0] != self.n_items or not np.isfinite(array).all():
            logger.warning(
                "Cached embeddings %s do not match the data (shape %s); recomputing.", self.final_path, array.shape
            )
            return None
        return array

    def consolidate(self, dim: int) -> np.ndarray:
        """Join the shards into ``embeddings.npy`` (written to a temp file, then renamed)."""
        with atomic_path(self.final_path, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.n_items, dim))
            for shard in range(self.n_shards()):
                block = self.shard_range(shard)
                out[block.start : block.stop] = np.load(self.shard_path(shard))
            out.flush()
            del out
        for shard in range(self.n_shards()):
            self.shard_path(shard).unlink(missing_ok=True)
        return np.load(self.final_path)


def embedding_cache_key(encoder: AudioEncoder, dataset, extra: dict | None = None) -> tuple[str, dict]:
    """Cache key (and the description it hashes) for ``encoder`` x ``dataset`` x preprocessing."""
    description = {
        "format": CACHE_FORMAT_VERSION,
        "model": {"id": encoder.model_id, "fingerprint": encoder.fingerprint()},
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
) -> np.ndarray:
    """Embed every clip of ``data`` with ``encoder``; ``[n_items, dim]`` float32, row i = item i.

    Args:
        encoder: the :class:`AudioEncoder`.
        data: a clip dataset (items ``{"index", "audio", "sampling_rate"}``), or a ``DataLoader`` over
            one whose ``collate_fn`` is a :class:`FeatureCollator` (use :func:`make_dataloader`). With a
            dataset, a DataLoader with ``num_workers`` workers is built here and, on resume, only the
            unfinished items are loaded.
        cache_dir: directory for the resumable cache (``None``: no cache).
        cache_extra: additional facts that must change the cache key (e.g. the task id).
        shard_size: items per cache shard (the unit of resumption).
    """
    loader = data if isinstance(data, torch.utils.data.DataLoader) else None
    dataset = loader.dataset if loader is not None else data
    base_dataset = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    n_items = len(dataset)
    if n_items == 0:
        raise ValueError("No clips to embed.")

    cache = None
    if cache_dir is not None:
        key, description = embedding_cache_key(encoder, dataset, cache_extra)
        cache = EmbeddingCache(Path(cache_dir), key, n_items, shard_size)
        cached = cache.load()
        if cached is not None:
            return cached
        cache.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache.directory / "meta.json", description)
        done = cache.complete_shards()
    else:
        cache = EmbeddingCache(Path(os.devnull), "", n_items, max(n_items, 1))
        done = set()

    todo = [i for shard in range(cache.n_shards()) if shard not in done for i in cache.shard_range(shard)]
    if loader is None:
        loader = make_dataloader(dataset, encoder, batch_size=batch_size, num_workers=num_workers, indices=todo)
        remaining = len(todo)
    else:
        remaining = n_items

    buffers: dict[int, np.ndarray] = {}
    filled: dict[int, int] = {}
    in_memory: np.ndarray | None = None  # only without a cache
    dim = None
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
                shards = {i // cache.shard_size for i in indices}
                if shards <= done:
                    continue  # an external loader re-yields items whose shard is already on disk
                vectors = encoder.embed(batch["inputs"])
                bad = ~np.isfinite(vectors).all(axis=1)
                if bad.any():
                    names = ", ".join(_describe(base_dataset, indices[int(j)]) for j in np.flatnonzero(bad)[:5])
                    raise ValueError(
                        f"The encoder produced NaN/inf embeddings for: {names}. Check these files (silence, clipping, "
                        "decode errors)."
                    )
                dim = vectors.shape[1]
                if cache_dir is None:
                    if in_memory is None:
                        in_memory = np.empty((n_items, dim), dtype=np.float32)
                    in_memory[indices] = vectors
                else:
                    for row, index in zip(vectors, indices):
                        shard = index // cache.shard_size
                        if shard in done:
                            continue
                        if shard not in buffers:
                            buffers[shard] = np.empty((len(cache.shard_range(shard)), dim), dtype=np.float32)
                            filled[shard] = 0
                        buffers[shard][index - cache.shard_range(shard).start] = row
                        filled[shard] += 1
                        if filled[shard] == buffers[shard].shape[0]:
                            atomic_save_npy(cache.shard_path(shard), buffers.pop(shard))
                            done.add(shard)
                bar.update(len(indices))
    finally:
        bar.close()

    if cache_dir is None:
        return in_memory
    missing = set(range(cache.n_shards())) - done
    if missing:
        raise RuntimeError(
            f"Embedding extraction ended with {len(missing)} unfinished cache shard(s) in {cache.directory}; the DataLoader did not yield every item."
        )
    if dim is None:
        dim = int(np.load(cache.shard_path(0), mmap_mode="r").shape[1])
    return cache.consolidate(dim)


def clear_cache(cache_dir: str | os.PathLike) -> None:
    """Remove every cached embedding under ``cache_dir``."""
    shutil.rmtree(cache_dir, ignore_errors=True)


def cache_entries(cache_dir: str | os.PathLike) -> list[dict]:
    """Descriptions (``meta.json``) of the cache entries under ``cache_dir``."""
    entries = []
    for meta in sorted(Path(cache_dir).glob("*/meta.json")):
        with open(meta, encoding="utf-8") as handle:
            entries.append(
                {"key": meta.parent.name, "complete": (meta.parent / "embeddings.npy").exists(), **json.load(handle)}
            )
    return entries
