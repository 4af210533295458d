"""What a corpus is in this package: its static facts ([`CorpusSpec`]), what its builder (each corpus module's
`corpus_rows`) is given ([`CorpusScan`]) and the table of recordings that comes out ([`CorpusTable`])."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .build_report import BuildReport
from .files import FileIndex
from .opera_files import OperaFiles


class CorpusNotFoundError(FileNotFoundError):
    """No directory for a corpus under the data root."""


@dataclass(frozen=True)
class CorpusSpec:
    """Static facts about one corpus.

    Attributes:
        name: registry key.
        title: human-readable name.
        dirnames: accepted folder names under a data root (first existing wins).
        access: `"open"` (scripted download), `"manual"` (open but needs a browser/many parts)
            or `"request"` (the owners must grant access).
        homepage: where to obtain it.
        license: licence as stated by the owners.
        split_column: column holding the corpus' official partition, if it has one.
    """

    name: str
    title: str
    dirnames: tuple[str, ...]
    access: str
    homepage: str
    license: str
    split_column: str | None = None


@dataclass
class CorpusScan:
    """What a corpus builder reads and fills.

    Attributes:
        root: the corpus folder.
        index: every file under `root`, looked up by path, name or stem.
        opera: OPERA's pinned files (some corpora take a metadata file from there when the folder lacks it).
        report: the build report the builder names unusable files in.
    """

    root: Path
    index: FileIndex
    opera: OperaFiles
    report: BuildReport


@dataclass
class CorpusTable:
    """One corpus as a table of recordings.

    Attributes:
        name: registry name of the corpus (`"icbhi"`, `"kauh"`, ...).
        root: the scanned directory.
        records: pandas DataFrame, one row per usable recording. Always has `audio` (absolute path),
            `file` (identifier relative to the corpus) and `subject_id`; label columns depend on
            the corpus (see each builder).
        report: what was missing, corrupt or unlabelled.
        split_column: column holding an official partition, if the corpus has one.
    """

    name: str
    root: Path
    records: object
    report: BuildReport
    split_column: str | None = None

    def to_dataset_dict(self, sampling_rate: int | None = None):
        """`datasets.DatasetDict` with an `Audio` column (torchcodec decoding, optional resampling)."""
        return records_to_dataset_dict(self.records, self.split_column, sampling_rate)


def records_to_dataset_dict(records, split_column: str | None = None, sampling_rate: int | None = None):
    """Convert a records frame into a `DatasetDict` keyed by `split_column` (or one `all` split)."""
    import datasets

    frame = records.reset_index(drop=True)
    features_cast = datasets.Audio(sampling_rate=sampling_rate)

    def to_dataset(part):
        columns = {c: _column_values(part[c]) for c in part.columns}
        dataset = datasets.Dataset.from_dict(columns)
        return dataset.cast_column("audio", features_cast)

    if split_column is None:
        return datasets.DatasetDict({"all": to_dataset(frame)})
    splits = {}
    for split_name in _ordered_splits(frame[split_column].unique()):
        part = frame[frame[split_column] == split_name].reset_index(drop=True)
        splits[str(split_name)] = to_dataset(part)
    return datasets.DatasetDict(splits)


def _column_values(series) -> list:
    # pandas NA/NaN must become None for Arrow; numpy scalars become Python scalars.
    values = series.tolist()
    return [None if is_missing(v) else v for v in values]


def is_missing(value) -> bool:
    """`None` or a float NaN (how pandas marks an absent value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ordered_splits(names) -> list:
    order = {"train": 0, "validation": 1, "val": 1, "test": 2}
    return sorted(names, key=lambda n: (order.get(str(n), 3), str(n)))
