"""Clip datasets: what [`extract_embeddings`] reads. Each item is one decoded clip at the encoder's rate, or the reason
it could not be decoded, so that one bad recording costs only itself.

Every clip dataset implements [`ClipDataset`]: files (or segments of them) decoded by FFmpeg ([`FileClipDataset`],
what `bench` and `embed` on files use), clips held in memory ([`ArrayClipDataset`], the demo's and the tests'), and a
`datasets` audio column ([`DatasetClipDataset`], `embed --dataset`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from ..data.audio import DECODE_ROUTE, AudioDecodeError, load_audio
from ..data.corpus_table import is_missing
from ..data.file_io import stable_hash


@runtime_checkable
class ClipDataset(Protocol):
    """What a clip dataset gives extraction.

    Attributes:
        sampling_rate: the rate (Hz) every clip is delivered at: the encoder's.
    """

    sampling_rate: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item `index`: `{"index", "audio" (1-D float32 at sampling_rate), "sampling_rate"}`, or `{"index", "error"}`
        with the reason when the clip cannot be decoded."""
        ...

    def describe(self, index: int) -> str:
        """A human name for item `index` (a path, a path and segment, a dataset row), used in failure reports."""
        ...

    def signature(self) -> dict:
        """What the clips depend on (items, rate, decoding route), hashed into the embedding cache key: a changed
        item must change it."""
        ...


def _file_stat(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None  # decoding will name the file; the key just records that it was absent
    return stat.st_size, stat.st_mtime_ns


class FileClipDataset(torch.utils.data.Dataset):
    """Decodes one file (or one segment of it) per item at `sampling_rate` (`load_audio`, the files' route).

    Args:
        paths: audio files.
        sampling_rate: decode/resample rate (the encoder's).
        starts, ends: optional segment bounds in seconds (`None` entries = whole file).
        max_duration: keep only the first `max_duration` seconds of each clip. Off by default;
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
    """In-memory mono clips (e.g. synthetic demo audio), resampled to `sampling_rate` on access by torchaudio, as
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


class DatasetClipDataset(torch.utils.data.Dataset):
    """Clips of a `datasets` audio column, decoded from their files as `bench` decodes files (`load_audio`), whatever
    rate the column was cast to."""

    def __init__(self, dataset, audio_column: str, sampling_rate: int, names: Sequence[str]):
        from datasets import Audio

        self.dataset = dataset.cast_column(audio_column, Audio(decode=False))
        self.audio_column = audio_column
        self.sampling_rate = int(sampling_rate)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self, index: int) -> str:
        return self.names[index]

    def signature(self) -> dict:
        return {"dataset": self.dataset._fingerprint, "column": self.audio_column, "n": len(self),
                "sampling_rate": self.sampling_rate, "decode": DECODE_ROUTE}

    def __getitem__(self, index: int) -> dict:
        # A bad row is reported under its index (as FileClipDataset does), so it costs only itself.
        try:
            audio, rate = load_audio(self.dataset[index][self.audio_column], self.sampling_rate)
        except AudioDecodeError as error:
            return {"index": index, "error": error.reason}
        return {"index": index, "audio": audio, "sampling_rate": rate}
