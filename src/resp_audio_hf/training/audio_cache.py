"""Pre-decoded corpora: each clip decoded, downmixed and resampled once to the model's rate, kept on disk as float32.

Decoding and resampling whole files every step costs about a third of a small model's CPU training time. With
`data.cache_dir` set, every local corpus is decoded once into `<cache_dir>/<label>-<rate>hz-<key>/`: `samples.f32`
(all clips end to end, memory-mapped when read) and `index.json` (paths, offsets, the files that could not be used and
why). The key is a SHA-256 of the sampling rate, the storage format, the decode route and every file's path, size and
modification time, so an edited, added or removed file gives a new key and a fresh decode: a cache is never stale.
Folders are written under a temporary name and renamed when complete, so a killed build leaves nothing that looks
finished.

Clips are decoded by `resp_audio_hf.data.audio.load_audio`, the route of `bench` and of uncached crops, and stored as
float32, so a cached clip is bit for bit the clip decoded without the cache (float16, the format before, halved the
disk but moved each sample by up to 2^-11 of its value).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from pathlib import Path

import numpy as np
import torch

from ..data.audio import DECODE_ROUTE, AudioDecodeError, load_audio
from ..data.file_io import atomic_write_json, publish_folder, remove_tree

logger = logging.getLogger(__name__)

CACHE_FORMAT = "resp-audio-decoded-v2-float32"
SAMPLES_NAME = "samples.f32"
INDEX_NAME = "index.json"


def file_fingerprints(paths: list[str]) -> list[list]:
    """`[path, size, mtime_ns]` of each file (a missing file is fingerprinted as such and later reported unusable)."""
    entries = []
    for path in paths:
        try:
            stat = os.stat(path)
            entries.append([path, stat.st_size, stat.st_mtime_ns])
        except OSError:
            entries.append([path, -1, -1])
    return entries


def cache_key(paths: list[str], sampling_rate: int) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "decode": DECODE_ROUTE,
        "sampling_rate": sampling_rate,
        "files": file_fingerprints(paths),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


class _DecodeEach(torch.utils.data.Dataset):
    """Decodes file `i` in a DataLoader worker: `(float32 samples, None)` or `(None, reason)`."""

    def __init__(self, paths: list[str], sampling_rate: int):
        self.paths, self.sampling_rate = paths, sampling_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            waveform, _ = load_audio(self.paths[index], self.sampling_rate)
        except AudioDecodeError as error:
            return None, error.reason
        return waveform, None


class DecodedCorpus:
    """
    The usable clips of one corpus, in its row order, as float32 arrays read from a memory map.

    Attributes:
        paths: the files of the usable clips (row `i` of this corpus is `paths[i]`).
        unusable: `{path: reason}` of the files that could not be decoded, left out.
        folder: the cache folder.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX_NAME).read_text(encoding="utf-8"))
        self.key = index["key"]
        self.sampling_rate = index["sampling_rate"]
        self.paths: list[str] = index["paths"]
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.unusable: dict[str, str] = index["unusable"]
        total = int(self.offsets[-1])
        self.samples = (
            np.memmap(self.folder / SAMPLES_NAME, dtype=np.float32, mode="r", shape=(total,))
            if total
            else np.zeros(0, np.float32)
        )

    def __len__(self) -> int:
        return len(self.paths)

    def clip(self, row: int) -> np.ndarray:
        """Clip `row` (a copy: the crops of a batch must not hold the memory map)."""
        return np.array(self.samples[self.offsets[row] : self.offsets[row + 1]], dtype=np.float32)


def decoded_corpus(
    paths: list[str], sampling_rate: int, cache_dir: str | os.PathLike, label: str, num_workers: int = 0
) -> DecodedCorpus:
    """The cached decode of `paths` at `sampling_rate`, built on first use (decoding in `num_workers` processes)."""
    key = cache_key(paths, sampling_rate)
    safe_label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label) or "corpus"
    cache_dir = Path(cache_dir)
    folder = cache_dir / f"{safe_label}-{sampling_rate}hz-{key[:16]}"
    if (folder / INDEX_NAME).is_file():
        corpus = DecodedCorpus(folder)
        if corpus.key == key:
            logger.info("Corpus %s: %d decoded clips from the cache %s.", label, len(corpus), folder)
            return corpus
        remove_tree(folder)  # a 64-bit prefix collision: rebuild rather than serve another file list
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{folder.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    logger.info("Corpus %s: decoding %d files to %d Hz into %s.", label, len(paths), sampling_rate, folder)
    kept, offsets, unusable = [], [0], {}
    loader = torch.utils.data.DataLoader(
        _DecodeEach(paths, sampling_rate), batch_size=None, num_workers=num_workers, collate_fn=lambda item: item
    )
    try:
        with open(tmp / SAMPLES_NAME, "wb") as handle:
            for path, (waveform, reason) in zip(paths, loader):
                if waveform is None:
                    unusable[path] = reason
                    logger.warning("Corpus %s: skipping unusable file %s: %s", label, path, reason)
                    continue
                handle.write(waveform.tobytes())
                kept.append(path)
                offsets.append(offsets[-1] + waveform.shape[0])
            handle.flush()
            os.fsync(handle.fileno())
        index = {
            "format": CACHE_FORMAT,
            "key": key,
            "sampling_rate": sampling_rate,
            "label": label,
            "paths": kept,
            "offsets": offsets,
            "unusable": unusable,
        }
        atomic_write_json(tmp / INDEX_NAME, index, sort_keys=True)
        publish_folder(tmp, folder)
    except BaseException:
        remove_tree(tmp)
        raise
    return DecodedCorpus(folder)
