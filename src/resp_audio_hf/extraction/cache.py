"""The on-disk entries of the embedding cache: one lock per entry, a checksum per shard and per entry.

One entry holds one embedding matrix (one model x one list of clips x one preprocessing, see
[`embedding_cache_key`]). Several processes may share a cache folder (`bench`'s default cache is shared by
every run of a user): an entry is read and written only under its lock (`<root>/<key>.lock`, an OS file lock that is
released when its process ends, even by `kill -9`), so a second run on the same entry waits for the first and then
reads what it wrote, and runs on other entries never wait. Every shard carries the SHA-256 of its rows in its file name,
and a complete entry records the SHA-256 of `embeddings.npy` and of `failed.json` in `meta.json` (written last):
a shard or entry whose bytes were flipped, truncated or emptied is named in a warning, dropped and recomputed, never
served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.file_io import (
    atomic_path,
    atomic_save_npy,
    atomic_write_json,
    sha256_file,
    stable_hash,
)
from .clips import ClipDataset

if TYPE_CHECKING:
    from .encoder import AudioEncoder

logger = logging.getLogger(__name__)

# 3: shards named with their checksum, meta.json records the checksums of the complete entry.
CACHE_FORMAT_VERSION = 3

# Characters of a shard's SHA-256 kept in its file name (64 bits: a corrupted shard cannot match by chance).
SHARD_DIGEST_CHARS = 16
# How long a run waits silently for another run's lock before it says that it waits.
LOCK_NOTICE_SECONDS = 1.0


def rows_digest(block: np.ndarray) -> str:
    """SHA-256 (first `SHARD_DIGEST_CHARS` hex digits) of a float32 matrix: its shape, then its bytes."""
    block = np.ascontiguousarray(block, dtype=np.float32)
    digest = hashlib.sha256(repr(block.shape).encode())
    digest.update(block.tobytes())
    return digest.hexdigest()[:SHARD_DIGEST_CHARS]


def _is_stale_temporary(path: Path) -> bool:
    """A temporary file `atomic_path` left behind when its process was killed (`.<name>.<random>.tmp[.npy]`)."""
    return path.name.startswith(".") and ".tmp" in path.name


def embedding_cache_key(encoder: AudioEncoder, dataset, extra: dict | None = None) -> tuple[str, dict]:
    """Cache key (and the description it hashes) for `encoder` x `dataset` x preprocessing."""
    description = {
        "format": CACHE_FORMAT_VERSION,
        "model": {"id": encoder.model_id, "fingerprint": encoder.fingerprint(), "config": encoder.model_signature()},
        "preprocessing": encoder.preprocessing_signature(),
        "data": dataset.signature() if isinstance(dataset, ClipDataset) else {"n": len(dataset)},
        "extra": extra or {},
    }
    return stable_hash(description, length=32), description


@dataclass
class EmbeddingCache:
    """Sharded on-disk store of one embedding matrix.

    Layout: `<root>/<key>/meta.json` (the description the key hashes; `embedding_dim` and the checksums are
    added once the entry is complete), `shard_00000.<sha256 of its rows>.npy` ... while extraction runs, and
    `embeddings.npy` once complete (the shards are then removed); `<root>/<key>.lock` is the entry's lock. An entry
    is used only when its `meta.json` hashes to its key (it was written for exactly these settings), its files match
    their checksums and every array has the recorded width, which must also equal `dim` when the model states its
    width in advance; anything else is named in a warning and recomputed. Items that could not be embedded have NaN
    rows and are named, with the reason, in `failed.json` (written before the shard that holds them); any other
    non-finite row makes a shard or file invalid. Read and write an entry only inside [`locked`].

    Attributes:
        root: the cache folder.
        key: `stable_hash(description)` (see [`embedding_cache_key`]).
        n_items: rows of the matrix.
        shard_size: rows per shard (the unit of resumption).
        description: what the key stands for (written to `meta.json`).
        dim: expected width, or `None` when only the computation tells it.
    """

    root: Path
    key: str
    n_items: int
    shard_size: int = 256
    description: dict | None = None
    dim: int | None = None

    @property
    def directory(self) -> Path:
        return Path(self.root) / self.key

    @property
    def final_path(self) -> Path:
        return self.directory / "embeddings.npy"

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"

    @property
    def failures_path(self) -> Path:
        return self.directory / "failed.json"

    @property
    def lock_path(self) -> Path:
        # Beside the entry, not inside it: a rejected entry's folder is removed while the lock is held.
        return Path(self.root) / f"{self.key}.lock"

    def n_shards(self) -> int:
        return (self.n_items + self.shard_size - 1) // self.shard_size

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min(self.n_items, (shard + 1) * self.shard_size))

    def shard_files(self, shard: int) -> list[Path]:
        """The files on disk for `shard` (normally none or one)."""
        return sorted(self.directory.glob(f"shard_{shard:05d}.*.npy"))

    # ------------------------------------------------------------------ the lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this entry's lock: another process using the same entry waits until this one is done."""
        try:
            from filelock import FileLock, Timeout
        except ImportError as error:  # a dependency of huggingface_hub, so normally always there
            raise ImportError(
                "The embedding cache needs the filelock package: pip install 'resp_audio_hf[data]' (or --no-cache)."
            ) from error
        Path(self.root).mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=LOCK_NOTICE_SECONDS)
        except Timeout:
            logger.warning(
                "Cache entry %s is in use by another process (lock %s); waiting for it to finish.",
                self.directory, self.lock_path,
            )
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ failures

    def load_failures(self) -> dict[int, str]:
        """`{item index: reason}` of the items recorded as failed (empty when none). An unreadable or malformed
        `failed.json` is named in a warning and removed: the shards and matrix whose NaN rows it explained are then
        rejected by their own checks and recomputed."""
        if not self.failures_path.exists():
            return {}
        try:
            with open(self.failures_path, encoding="utf-8") as handle:
                payload = json.load(handle)
            if not isinstance(payload, dict):
                raise TypeError(f"expected a JSON object, found {type(payload).__name__}")
            failures = {int(index): str(reason) for index, reason in payload.items()}
            if any(not 0 <= index < self.n_items for index in failures):
                raise ValueError(f"an item index outside 0..{self.n_items - 1}")
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as error:
            logger.warning("Ignoring corrupt cache file %s (%s); the entry is recomputed.", self.failures_path, error)
            self.failures_path.unlink(missing_ok=True)
            return {}
        return failures

    def save_failures(self, failures: dict[int, str]) -> None:
        atomic_write_json(self.failures_path, {str(i): failures[i] for i in sorted(failures)})

    @staticmethod
    def _failed_rows_match(array: np.ndarray, start: int, failures: dict[int, str]) -> bool:
        """The non-finite rows of `array` (item `start` onwards) are exactly the recorded failures."""
        nonfinite = {start + int(row) for row in np.flatnonzero(~np.isfinite(array).all(axis=1))}
        return nonfinite == {i for i in failures if start <= i < start + array.shape[0]}

    # ------------------------------------------------------------------ meta.json

    def stored_meta(self) -> tuple[dict | None, str | None]:
        """`(meta.json's content, None)` when it was written for this key, else `(None, why not)`."""
        try:
            with open(self.meta_path, encoding="utf-8") as handle:
                meta = json.load(handle)
        except FileNotFoundError:
            return None, f"{self.meta_path} is missing"
        except (OSError, ValueError, UnicodeDecodeError) as error:
            return None, f"{self.meta_path} is unreadable ({error})"
        if not isinstance(meta, dict):
            return None, f"{self.meta_path} holds a {type(meta).__name__}, not a JSON object"
        description = {k: v for k, v in meta.items() if k not in _COMPLETION_FIELDS}
        if stable_hash(description, length=len(self.key)) != self.key:
            return None, f"{self.meta_path} describes other settings than its folder name (the key) stands for"
        return meta, None

    def _width_ok(self, width: int) -> bool:
        return self.dim is None or width == self.dim

    # ------------------------------------------------------------------ shards

    def write_shard(self, shard: int, block: np.ndarray) -> Path:
        """Write `shard`'s rows atomically, named with their checksum (one file: no separate checksum to lose)."""
        for stale in self.shard_files(shard):
            stale.unlink(missing_ok=True)
        return atomic_save_npy(self.directory / f"shard_{shard:05d}.{rows_digest(block)}.npy", block)

    def _verified_shard(self, path: Path, shard: int, failures: dict[int, str]) -> tuple[np.ndarray | None, str]:
        """`(rows, "")` of a shard file that matches its checksum, its range, the width and `failures`; else
        `(None, why not)`."""
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            return None, f"unreadable ({error})"
        block = self.shard_range(shard)
        if array.dtype != np.float32 or array.ndim != 2 or array.shape[0] != len(block):
            return None, f"shape {array.shape} {array.dtype}, expected ({len(block)}, width) float32"
        if rows_digest(array) != path.name.split(".")[1]:
            return None, "its rows do not match the checksum in its name (corrupted)"
        if not self._width_ok(array.shape[1]):
            return None, f"{array.shape[1]}-wide rows, expected {self.dim}"
        if not self._failed_rows_match(array, block.start, failures):
            return None, "its NaN rows are not the failures recorded in failed.json"
        return array, ""

    def read_shard(self, shard: int, failures: dict[int, str] | None = None) -> np.ndarray | None:
        """The rows of `shard` from a file that passes every check, or `None`; files that fail are named in a warning
        and removed."""
        for path in self.shard_files(shard):
            array, problem = self._verified_shard(path, shard, failures or {})
            if array is not None:
                return array
            logger.warning("Ignoring cache shard %s: %s; it will be recomputed.", path, problem)
            path.unlink(missing_ok=True)
        return None

    def complete_shards(self, failures: dict[int, str] | None = None) -> set[int]:
        """Shards on disk that pass every check, all of one width (the expected one when known)."""
        done, width = set(), self.dim
        for shard in range(self.n_shards()):
            array = self.read_shard(shard, failures)
            if array is None:
                continue
            if width is not None and array.shape[1] != width:
                logger.warning("Ignoring cache shard %s: %d-wide rows, other shards are %d wide.",
                               self.shard_files(shard)[0], array.shape[1], width)
                continue
            width = array.shape[1]
            done.add(shard)
        return done

    # ------------------------------------------------------------------ the whole entry

    def load(self, failures: dict[int, str] | None = None) -> np.ndarray | None:
        """The complete matrix, or `None` when there is none that passes every check (each rejection is named in a
        warning; non-finite values are allowed only in the rows of recorded `failures`)."""
        if not self.final_path.exists():
            return None
        array, problem = self._verified_matrix(failures or {})
        if array is None:
            logger.warning("Cache entry %s: %s; recomputing it.", self.directory, problem)
        return array

    def _verified_matrix(self, failures: dict[int, str]) -> tuple[np.ndarray | None, str]:
        meta, problem = self.stored_meta()
        if meta is None:
            return None, problem
        width = meta.get("embedding_dim")
        if not isinstance(width, int) or "embeddings_sha256" not in meta:
            return None, f"{self.meta_path} records no width or checksum (the run that wrote it did not finish)"
        if not self._width_ok(width):
            return None, f"it holds {width}-wide embeddings, the model gives {self.dim}"
        if sha256_file(self.final_path) != meta["embeddings_sha256"]:
            return None, f"{self.final_path} does not match its checksum in meta.json (corrupted or truncated)"
        recorded_failures = sha256_file(self.failures_path) if self.failures_path.exists() else None
        if recorded_failures != meta.get("failures_sha256"):
            return None, f"{self.failures_path} is not the one written with the embeddings"
        try:
            array = np.load(self.final_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            return None, f"{self.final_path} is unreadable ({error})"
        if array.ndim != 2 or array.shape != (self.n_items, width):
            return None, f"{self.final_path} has shape {array.shape}, expected ({self.n_items}, {width})"
        if not self._failed_rows_match(array, 0, failures):
            return None, f"the NaN rows of {self.final_path} are not the failures recorded in failed.json"
        return array, ""

    def prepare(self, failures: dict[int, str] | None = None) -> set[int]:
        """Make the entry ready for (resumed) extraction and return its finished shards.

        Files left by an entry written for other settings are removed, as are a rejected final matrix and the
        temporary files of a run that was killed (only the lock holder writes here, so none is in use)."""
        if self.directory.exists():
            meta, _ = self.stored_meta()
            if meta is None:
                shutil.rmtree(self.directory)
            else:
                self.final_path.unlink(missing_ok=True)
                for path in self.directory.iterdir():
                    if _is_stale_temporary(path):
                        path.unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.meta_path, self.description or {})
        return self.complete_shards(failures)

    def consolidate(self, dim: int, failures: dict[int, str] | None = None) -> np.ndarray:
        """Join the shards into `embeddings.npy` (written to a temp file, then renamed), then record the width and
        the checksums in `meta.json`, last: an entry interrupted before that is never loaded."""
        if not self._width_ok(dim):
            raise RuntimeError(
                f"The encoder produced {dim}-wide embeddings but its configuration states {self.dim}; "
                f"nothing was cached in {self.directory}."
            )
        shards = []
        for shard in range(self.n_shards()):
            array = self.read_shard(shard, failures)
            if array is None:
                raise RuntimeError(f"Cache shard {shard} of {self.directory} vanished or was corrupted while finishing.")
            shards.append(array)
        with atomic_path(self.final_path, suffix=".npy") as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.n_items, dim))
            for shard, array in enumerate(shards):
                block = self.shard_range(shard)
                out[block.start : block.stop] = array
            out.flush()
            del out
            checksum = sha256_file(tmp)
        failures_checksum = sha256_file(self.failures_path) if self.failures_path.exists() else None
        atomic_write_json(
            self.meta_path,
            {**(self.description or {}), "embedding_dim": int(dim), "embeddings_sha256": checksum,
             "failures_sha256": failures_checksum},
        )
        for shard in range(self.n_shards()):
            for path in self.shard_files(shard):
                path.unlink(missing_ok=True)
        return np.load(self.final_path, allow_pickle=False)


# The fields `consolidate` adds to the description in meta.json once the entry is complete.
_COMPLETION_FIELDS = ("embedding_dim", "embeddings_sha256", "failures_sha256")


def cache_entries(cache_dir: str | os.PathLike) -> list[dict]:
    """Descriptions (`meta.json`) of the cache entries under `cache_dir`."""
    entries = []
    for meta in sorted(Path(cache_dir).glob("*/meta.json")):
        with open(meta, encoding="utf-8") as handle:
            entries.append(
                {"key": meta.parent.name, "complete": (meta.parent / "embeddings.npy").exists(), **json.load(handle)}
            )
    return entries


__all__ = ["EmbeddingCache", "cache_entries", "rows_digest"]
