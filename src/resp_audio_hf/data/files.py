"""Finding a corpus' files whatever its folder nesting ([`FileIndex`]), probing its audio and locating its
metadata (in the corpus folder, else OPERA's pinned copy)."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .audio import AUDIO_EXTENSIONS, probe_audio
from .build_report import BuildReport
from .file_io import sha256_file
from .opera_files import OperaFileError, OperaFiles

logger = logging.getLogger(__name__)


class FileIndex:
    """All files under a root, indexed by relative path, base name, stem and trailing path parts.

    Corpora are distributed with slightly different folder nesting (an extra top-level folder after
    unzipping, `wav/` vs `public_dataset/`); looking files up by name instead of by one fixed path
    makes the builders accept every layout we have seen while still refusing ambiguous matches.

    A name found several times resolves to its first copy when all copies have the same bytes, and to
    nothing otherwise (the copies are then listed in `duplicates`). A *directory* named like an audio
    file (`x.wav/`) is indexed too, so that the audio check reports it instead of it vanishing.
    """

    def __init__(self, root: Path, extensions: Iterable[str] | None = None):
        self.root = Path(root)
        self.by_relpath: dict[str, Path] = {}
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        self.duplicates: dict[str, list[Path]] = {}
        self._identical_copies: dict[str, Path] = {}
        exts = tuple(e.lower() for e in extensions) if extensions else None
        if not self.root.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            audio_like_dirs = [d for d in dirnames if d.lower().endswith(AUDIO_EXTENSIONS)]
            for filename in sorted(filenames + audio_like_dirs):
                if filename.startswith(".") or (exts and not filename.lower().endswith(exts)):
                    continue
                path = Path(dirpath) / filename
                rel = path.relative_to(self.root).as_posix()
                self.by_relpath[rel] = path
                self.by_name[filename].append(path)
                self.by_stem[Path(filename).stem].append(path)

    def __len__(self) -> int:
        return len(self.by_relpath)

    def paths(self) -> list[Path]:
        return list(self.by_relpath.values())

    def audio_paths(self) -> list[Path]:
        """The indexed paths with an audio extension, in index order."""
        return [p for p in self.paths() if p.suffix.lower() in AUDIO_EXTENSIONS]

    def one_copy(self, key: str, matches: list[Path]) -> Path | None:
        """The path for `key` among several matches: the first when all are byte-identical files."""
        if key in self._identical_copies or key in self.duplicates:
            return self._identical_copies.get(key)
        identical = (
            all(p.is_file() for p in matches)
            and len({p.stat().st_size for p in matches}) == 1  # sizes first: hashing is for the rare equal-size case
            and len({sha256_file(p) for p in matches}) == 1
        )
        if identical:
            logger.info("%s is present %d times with identical contents; using %s", key, len(matches), matches[0])
            self._identical_copies[key] = matches[0]
            return matches[0]
        self.duplicates[key] = matches
        return None

    def find(
        self, relpath: str | None = None, name: str | None = None, stem: str | None = None, tail: int = 1
    ) -> Path | None:
        """Resolve a file by exact relative path, then by trailing components, name or stem.

        `tail` > 1 requires the last `tail` path components of `relpath` to match (Coswara's
        `<participant>/cough-shallow.wav` is not unique by name alone).
        """
        if relpath is not None:
            relpath = PurePosixPath(relpath).as_posix()
            if relpath in self.by_relpath:
                return self.by_relpath[relpath]
            parts = PurePosixPath(relpath).parts
            name = name or parts[-1]
            if tail > 1:
                suffix = parts[-tail:]
                matches = [p for p in self.by_name.get(parts[-1], []) if p.parts[-tail:] == suffix]
                if len(matches) > 1:
                    return self.one_copy(relpath, matches)
                return matches[0] if matches else None
        if name is not None:
            matches = self.by_name.get(name, [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                return self.one_copy(name, matches)
        if stem is not None:
            matches = [p for p in self.by_stem.get(stem, []) if p.suffix.lower() in AUDIO_EXTENSIONS]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                # Prefer an uncompressed copy when a corpus ships e.g. both .webm and a converted .wav.
                wavs = [p for p in matches if p.suffix.lower() == ".wav"]
                if len(wavs) == 1:
                    return wavs[0]
                return self.one_copy(stem, wavs or matches)
        return None

    def find_metadata(self, name: str) -> Path | None:
        matches = self.by_name.get(name, [])
        return min(matches, key=lambda p: len(p.parts)) if matches else None


def check_audio_files(paths: Iterable[Path | None], report: BuildReport, verify_audio: bool = True) -> list[bool]:
    """Probe each path; record corrupt files in `report`. `None` entries are treated as missing."""
    usable = []
    for path in paths:
        if path is None:
            usable.append(False)
            continue
        if not verify_audio:
            usable.append(True)
            continue
        probe = probe_audio(path)
        if not probe.ok:
            report.corrupt.append({"path": str(path), "reason": probe.reason})
        usable.append(probe.ok)
    return usable


def metadata_file(
    index: FileIndex, name: str, opera: OperaFiles | None, opera_relpath: str | None, report: BuildReport
) -> Path | None:
    """A metadata file from the corpus folder, else OPERA's pinned copy, else `None`."""
    local = index.find_metadata(name)
    if local is not None:
        report.notes.append(f"metadata: {local}")
        return local
    if opera is not None and opera_relpath is not None:
        try:
            path = opera.path(opera_relpath)
            report.notes.append(f"metadata: OPERA copy {opera_relpath}")
            return path
        except OperaFileError as error:
            report.notes.append(f"metadata {name} unavailable: {error}")
    return None
