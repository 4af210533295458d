"""Streaming embedding extraction with a resumable on-disk cache.

Audio is decoded one clip at a time inside `torch.utils.data.DataLoader` workers (resampled to the
encoder's rate by FFmpeg, channels averaged: `resp_audio_hf.data.audio.load_audio`) and featurised in the workers; only one batch of audio is alive at a time,
so peak memory does not grow with the dataset. Embeddings are written in fixed-size shards through
temporary files + `os.replace`; an interrupted run keeps its finished shards and a re-run computes
only the rest. Each entry is read and written under its own lock, and checked against SHA-256 checksums
before it is used ([`EmbeddingCache`], `resp_audio_hf.extraction.cache`), so runs may share a cache folder and a damaged
entry is recomputed, never served. The cache key covers everything that changes an embedding: the model's configuration
(pooling included), its weights, the feature extractor's settings, the items (paths, segment bounds,
file sizes and modification times) and the preprocessing. Every entry stores what its key stands for and
its width, and is checked against them before it is used, so a stale or foreign entry is recomputed,
never loaded.

A clip that cannot be embedded (an undecodable file, NaN/inf or silent audio, a NaN/inf embedding)
costs only itself: it is recorded by item index with its reason, and the caller gets every failure
at once ([`ClipFailureError`], or `return_failures=True`) rather than the first one.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..progress import progress_bar
from .cache import EmbeddingCache, embedding_cache_key
from .clips import ClipDataset
from .encoder import AudioEncoder
from .threads import threads_beside_workers, torch_threads

logger = logging.getLogger(__name__)


def _refusal_reason(error: Exception) -> str:
    """The feature extractor's message for a single clip, without its batch position ("Audio clip 0 ...")."""
    return "refused by the feature extractor: " + re.sub(r"^Audio clip \d+", "the clip", str(error))


class FeatureCollator:
    """`collate_fn` that featurises a list of clips (runs inside DataLoader workers).

    Batches are `{"index", "inputs", "failed", "long"}`: `failed` lists `(item index, reason)` for the
    clips that could not be decoded or that the feature extractor refused (e.g. silent audio), so one
    bad file costs only itself; `inputs` is `None` when every clip of the batch failed. Clips
    longer than one encoder window (`AudioEncoder.is_long`) are not featurised here but passed on as
    `long`, `(item index, audio tensor)` pairs, each embedded alone by `AudioEncoder.embed_long`:
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
    """DataLoader that decodes and featurises in `num_workers` processes, in dataset order."""
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    return torch.utils.data.DataLoader(
        subset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=FeatureCollator(encoder),
        persistent_workers=False,
    )


def _describe(dataset, index: int) -> str:
    return dataset.describe(index) if isinstance(dataset, ClipDataset) else f"item {index}"


class ClipFailureError(ValueError):
    """Some clips could not be embedded; `failures` maps each item index to `(name, reason)`."""

    def __init__(self, failures: dict[int, tuple[str, str]], n_items: int):
        self.failures = failures
        listing = "; ".join(f"{name}: {reason}" for name, reason in failures.values())
        super().__init__(f"{len(failures)} of {n_items} clip(s) could not be embedded: {listing}")


def extract_embeddings(
    encoder: AudioEncoder,
    data: ClipDataset | torch.utils.data.DataLoader,
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
    """Embed every clip of `data` with `encoder`; `[n_items, dim]` float32, row i = item i.

    A clip that cannot be embedded (undecodable, NaN/inf or silent audio the feature extractor
    refuses, a NaN/inf embedding) does not stop the others: every clip is attempted, and then a
    [`ClipFailureError`] names each failed one with its reason, unless `return_failures`.

    Args:
        encoder: the [`AudioEncoder`].
        data: a [`ClipDataset`] (items `{"index", "audio", "sampling_rate"}`), or a `DataLoader` over
            one whose `collate_fn` is a [`FeatureCollator`] (use [`make_dataloader`]). With a
            dataset, a DataLoader with `num_workers` workers is built here and, on resume, only the
            unfinished items are loaded.
        cache_dir: directory for the resumable cache (`None`: no cache).
        cache_extra: additional facts that must change the cache key (e.g. the task id).
        shard_size: items per cache shard (the unit of resumption).
        return_failures: return `(embeddings, {item index: reason})` instead of raising; the rows of
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
