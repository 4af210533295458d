"""What a corpus or task build found, and everything it could not use, by name: [`BuildReport`]."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

logger = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a builder found, and everything it could not use (by name).

    Attributes:
        name: corpus or task name.
        root: directory that was scanned.
        n_usable: rows with a decodable audio file.
        missing: files listed by the metadata that are not on disk.
        corrupt: `{"path", "reason"}` for files that exist but cannot be decoded.
        unlabelled: audio files present on disk that the metadata does not label.
        duplicates: file name -> paths, for recordings present more than once with different
            contents (which copy is meant is unknown, so none is used).
        excluded: reason -> file identifiers removed on purpose by a task definition
            (e.g. ICBHI diagnoses other than COPD/healthy for T7).
        notes: free-form remarks (e.g. which metadata file was used).
    """

    name: str
    root: str
    n_usable: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[dict] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    duplicates: dict[str, list[str]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """True when every expected file is present and decodable."""
        return not self.missing and not self.corrupt and not self.duplicates

    def duplicate_of(self, item: str) -> str | None:
        """The `duplicates` key of a missing `item` (a table's `file`, `<file>#<n>` for a segment) that is
        absent because it is present several times with different contents, else `None`. [`FileIndex`]
        records an ambiguous lookup under the key it was asked for: the relative path (`tail` lookups, CoughVID's
        uuid), the file name, or the stem (also without its last character, CoughVID's fallback)."""
        recording = str(item).split("#", 1)[0]
        name = PurePosixPath(recording).name
        stem = PurePosixPath(name).stem
        for key in (recording, name, stem, stem[:-1]):
            if key in self.duplicates:
                return key
        return None

    def exclude(self, reason: str, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            self.excluded.setdefault(reason, []).extend(items)

    def add_duplicates(self, duplicates: dict) -> None:
        """Record the `duplicates` of a [`~resp_audio_hf.data.files.FileIndex`] (name -> differing copies)."""
        self.duplicates.update({name: [str(path) for path in paths] for name, paths in duplicates.items()})

    def summary(self) -> str:
        parts = [f"{self.name}: {self.n_usable} usable"]
        absent = [item for item in self.missing if self.duplicate_of(item) is None]  # not counted twice
        if absent:
            files = dict.fromkeys(str(item).split("#", 1)[0] for item in absent)  # segments -> their file
            segments = "" if len(files) == len(absent) else f"; {len(absent)} rows counting each segment"
            parts.append(f"{len(files)} missing (e.g. {next(iter(files))}{segments})")
        if self.corrupt:
            parts.append(f"{len(self.corrupt)} corrupt (e.g. {self.corrupt[0]['path']}: {self.corrupt[0]['reason']})")
        if self.duplicates:
            name, paths = next(iter(self.duplicates.items()))
            parts.append(f"{len(self.duplicates)} present more than once (e.g. {name}: {', '.join(paths[:3])})")
        if self.unlabelled:
            parts.append(f"{len(self.unlabelled)} without label (e.g. {self.unlabelled[0]})")
        for reason, items in self.excluded.items():
            parts.append(f"{len(items)} excluded: {reason}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "root": self.root,
            "n_usable": self.n_usable,
            "missing": list(self.missing),
            "corrupt": list(self.corrupt),
            "unlabelled": list(self.unlabelled),
            "duplicates": {k: list(v) for k, v in self.duplicates.items()},
            "excluded": {k: list(v) for k, v in self.excluded.items()},
            "notes": list(self.notes),
        }

    def log(self) -> None:
        level = logging.INFO if self.complete and not self.unlabelled else logging.WARNING
        logger.log(level, self.summary())
