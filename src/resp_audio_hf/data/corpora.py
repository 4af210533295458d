"""Builders that turn each corpus' official download layout into a table and a ``datasets.DatasetDict``.

Every builder scans one corpus directory, joins the audio files with the corpus' own metadata and
returns a :class:`CorpusTable`: a pandas frame with one row per recording (``audio`` path, ``file``
identifier, ``subject_id`` and label columns) plus a :class:`BuildReport` naming every file that was
expected but is missing, present but undecodable, or present without a label. Nothing is dropped
without appearing in the report, and what is intact stays usable.

``CorpusTable.to_dataset_dict()`` gives a ``datasets.DatasetDict`` whose ``audio`` column is a
``datasets.Audio`` feature (decoded lazily with torchcodec). Corpora with an official partition
(ICBHI, UK COVID-19, COVID-19 Sounds, SPRSound) keep it as splits; the others have one ``all`` split.

Directory names follow OPERA's ``datasets/`` folder (``KAUH``, ``copd``, ``covidUK``, ...) as well as
lower-case aliases, so a data root can be an OPERA checkout's ``datasets`` folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ._io import read_table_rows
from .audio import AUDIO_EXTENSIONS, probe_audio
from .opera_files import OperaFileError, OperaFiles

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Reports and tables
# --------------------------------------------------------------------------------------------------


@dataclass
class BuildReport:
    """What a builder found, and everything it could not use (by name).

    Attributes:
        name: corpus or task name.
        root: directory that was scanned.
        n_usable: rows with a decodable audio file.
        missing: files listed by the metadata that are not on disk.
        corrupt: ``{"path", "reason"}`` for files that exist but cannot be decoded.
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
        """The ``duplicates`` key of a missing ``item`` (a table's ``file``, ``<file>#<n>`` for a segment) that is
        absent because it is present several times with different contents, else ``None``. :class:`FileIndex`
        records an ambiguous lookup under the key it was asked for: the relative path (``tail`` lookups, CoughVID's
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


@dataclass
class CorpusTable:
    """One corpus as a table of recordings.

    Attributes:
        name: registry name of the corpus (``"icbhi"``, ``"kauh"``, ...).
        root: the scanned directory.
        records: pandas DataFrame, one row per usable recording. Always has ``audio`` (absolute path),
            ``file`` (identifier relative to the corpus) and ``subject_id``; label columns depend on
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
        """``datasets.DatasetDict`` with an ``Audio`` column (torchcodec decoding, optional resampling)."""
        return records_to_dataset_dict(self.records, self.split_column, sampling_rate)


def records_to_dataset_dict(records, split_column: str | None = None, sampling_rate: int | None = None):
    """Convert a records frame into a ``DatasetDict`` keyed by ``split_column`` (or one ``all`` split)."""
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
    """``None`` or a float NaN (how pandas marks an absent value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _ordered_splits(names) -> list:
    order = {"train": 0, "validation": 1, "val": 1, "test": 2}
    return sorted(names, key=lambda n: (order.get(str(n), 3), str(n)))


# --------------------------------------------------------------------------------------------------
# File lookup
# --------------------------------------------------------------------------------------------------


class FileIndex:
    """All files under a root, indexed by relative path, base name, stem and trailing path parts.

    Corpora are distributed with slightly different folder nesting (an extra top-level folder after
    unzipping, ``wav/`` vs ``public_dataset/``); looking files up by name instead of by one fixed path
    makes the builders accept every layout we have seen while still refusing ambiguous matches.

    A name found several times resolves to its first copy when all copies have the same bytes, and to
    nothing otherwise (the copies are then listed in ``duplicates``). A *directory* named like an audio
    file (``x.wav/``) is indexed too, so that the audio check reports it instead of it vanishing.
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

    def _one_copy(self, key: str, matches: list[Path]) -> Path | None:
        """The path for ``key`` among several matches: the first when all are byte-identical files."""
        from ._io import sha256_file

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

        ``tail`` > 1 requires the last ``tail`` path components of ``relpath`` to match (Coswara's
        ``<participant>/cough-shallow.wav`` is not unique by name alone).
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
                    return self._one_copy(relpath, matches)
                return matches[0] if matches else None
        if name is not None:
            matches = self.by_name.get(name, [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                return self._one_copy(name, matches)
        if stem is not None:
            matches = [p for p in self.by_stem.get(stem, []) if p.suffix.lower() in AUDIO_EXTENSIONS]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                # Prefer an uncompressed copy when a corpus ships e.g. both .webm and a converted .wav.
                wavs = [p for p in matches if p.suffix.lower() == ".wav"]
                if len(wavs) == 1:
                    return wavs[0]
                return self._one_copy(stem, wavs or matches)
        return None

    def find_metadata(self, name: str) -> Path | None:
        matches = self.by_name.get(name, [])
        return min(matches, key=lambda p: len(p.parts)) if matches else None


def _audio_files(index: FileIndex) -> list[Path]:
    return [p for p in index.paths() if p.suffix.lower() in AUDIO_EXTENSIONS]


def check_audio_files(paths: Iterable[Path | None], report: BuildReport, verify_audio: bool = True) -> list[bool]:
    """Probe each path; record corrupt files in ``report``. ``None`` entries are treated as missing."""
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


# --------------------------------------------------------------------------------------------------
# Corpus registry
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSpec:
    """Static facts about one corpus.

    Attributes:
        name: registry key.
        title: human-readable name.
        dirnames: accepted folder names under a data root (first existing wins).
        access: ``"open"`` (scripted download), ``"manual"`` (open but needs a browser/many parts)
            or ``"request"`` (the owners must grant access).
        homepage: where to obtain it.
        license: licence as stated by the owners.
        builder: function ``(root, opera, verify_audio) -> CorpusTable``.
    """

    name: str
    title: str
    dirnames: tuple[str, ...]
    access: str
    homepage: str
    license: str
    builder: Callable[..., CorpusTable] = field(repr=False, compare=False, default=None)


CORPORA: dict[str, CorpusSpec] = {}


def _register(spec: CorpusSpec) -> None:
    CORPORA[spec.name] = spec


class CorpusNotFoundError(FileNotFoundError):
    """No directory for a corpus under the data root."""


def find_corpus_dir(name: str, data_root: str | os.PathLike) -> Path:
    """The corpus folder under ``data_root`` (any accepted alias), or ``CorpusNotFoundError``."""
    spec = get_corpus_spec(name)
    data_root = Path(data_root)
    for dirname in spec.dirnames:
        candidate = data_root / dirname
        if candidate.is_dir():
            return candidate
    raise CorpusNotFoundError(
        f"{spec.title} not found under {data_root}: expected one of the folders {', '.join(spec.dirnames)}. "
        f"Obtain it from {spec.homepage} ({spec.access} access) - `resp_audio_hf.data.download_corpus('{name}', "
        f"'{data_root}')` explains or performs the download."
    )


def get_corpus_spec(name: str) -> CorpusSpec:
    key = name.lower().replace("-", "_")
    for spec in CORPORA.values():
        if key == spec.name or key in {d.lower().replace("-", "_") for d in spec.dirnames}:
            return spec
    raise KeyError(f"Unknown corpus {name!r}. Known corpora: {', '.join(sorted(CORPORA))}")


def scan_corpus(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    opera: OperaFiles | None = None,
    verify_audio: bool = True,
) -> CorpusTable:
    """Scan one corpus into a :class:`CorpusTable` (give its folder as ``root`` or its parent as ``data_root``)."""
    spec = get_corpus_spec(name)
    if root is None:
        if data_root is None:
            raise ValueError("Give the corpus folder (root=...) or the folder containing it (data_root=...).")
        root = find_corpus_dir(spec.name, data_root)
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFoundError(f"{spec.title}: {root} is not a directory. Obtain the corpus from {spec.homepage}.")
    table = spec.builder(root, opera or OperaFiles(), verify_audio)
    table.report.n_usable = len(table.records)
    table.report.log()
    return table


def build_corpus_dataset(name: str, root=None, *, data_root=None, opera=None, verify_audio=True, sampling_rate=None):
    """``DatasetDict`` for one corpus; its build report is returned alongside it.

    Returns:
        ``(dataset_dict, report)``.
    """
    table = scan_corpus(name, root, data_root=data_root, opera=opera, verify_audio=verify_audio)
    return table.to_dataset_dict(sampling_rate=sampling_rate), table.report


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def _metadata_file(
    index: FileIndex, name: str, opera: OperaFiles | None, opera_relpath: str | None, report: BuildReport
) -> Path | None:
    """A metadata file from the corpus folder, else OPERA's pinned copy, else ``None``."""
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


def _finish(
    name: str, root: Path, rows: list[dict], report: BuildReport, verify_audio: bool, split_column=None
) -> CorpusTable:
    import pandas as pd

    usable = check_audio_files([Path(r["audio"]) if r.get("audio") else None for r in rows], report, verify_audio)
    for row, ok in zip(rows, usable):
        if row.get("audio") is None:
            report.missing.append(row["file"])
    kept = [row for row, ok in zip(rows, usable) if ok]
    frame = pd.DataFrame(kept)
    if frame.empty:
        frame = pd.DataFrame(columns=["audio", "file", "subject_id"] + ([split_column] if split_column else []))
    else:
        frame["audio"] = frame["audio"].astype(str)
    return CorpusTable(name, root, frame, report, split_column)


# --------------------------------------------------------------------------------------------------
# ICBHI 2017
# --------------------------------------------------------------------------------------------------


def read_icbhi_diagnosis(path: Path) -> dict[str, str]:
    """Patient id -> diagnosis from ``ICBHI_Challenge_diagnosis.txt`` (tab separated)."""
    result = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            patient, diagnosis = re.split(r"\s+", line.strip(), maxsplit=1)
            result[patient] = diagnosis.strip()
    return result


def read_icbhi_split_list(path: Path) -> list[tuple[str, str]]:
    """(recording id, ``train``/``test``) pairs from ``ICBHI_challenge_train_test.txt`` in file order."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            recording, split = line.split()
            pairs.append((recording.strip(), split.strip()))
    return pairs


# The official train/test list names one recording that is not in the released database (patient
# 226, Pneumonia); OPERA's 920-file list omits it too.
ICBHI_LISTED_WITHOUT_AUDIO = frozenset({"226_1b1_Pl_sc_Meditron"})


def exclude_icbhi_listed_without_audio(listed: Iterable[tuple[str, str]], report: BuildReport) -> list[tuple[str, str]]:
    """Drop the recordings of ``ICBHI_LISTED_WITHOUT_AUDIO`` from ``(recording, split)`` pairs.

    They are named in ``report.excluded`` rather than reported missing: no download of the database can
    supply them. Shared by the corpus builder and task T7 so both exclude them under the same reason.
    """
    listed = list(listed)
    report.exclude(
        "listed in ICBHI_challenge_train_test.txt but not part of the released database",
        [recording for recording, _ in listed if recording in ICBHI_LISTED_WITHOUT_AUDIO],
    )
    return [(recording, split) for recording, split in listed if recording not in ICBHI_LISTED_WITHOUT_AUDIO]


ICBHI_CYCLE_CLASSES = ("normal", "crackle", "wheeze", "both")


def icbhi_cycle_class(crackle: int, wheeze: int) -> int:
    """Class id of a respiratory cycle in the challenge's 4-class task: 0 normal, 1 crackle, 2 wheeze, 3 both."""
    return int(crackle) + 2 * int(wheeze)


def read_icbhi_cycles(path: Path) -> list[dict]:
    """Respiratory cycles of one recording from its annotation file ``<recording>.txt``.

    Each non-empty line is ``start end crackle wheeze`` (seconds, seconds, 0/1, 0/1), separated by tabs or spaces.
    Returns ``[{"start_s", "end_s", "crackle", "wheeze"}]`` in file order; a malformed line raises ``ValueError``
    naming the file and the line.
    """
    cycles = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 4:
                raise ValueError(f"{len(fields)} fields")
            start, end = float(fields[0]), float(fields[1])
            crackle, wheeze = int(fields[2]), int(fields[3])
            if crackle not in (0, 1) or wheeze not in (0, 1):
                raise ValueError("crackle/wheeze flags must be 0 or 1")
            if not (math.isfinite(start) and math.isfinite(end)):
                raise ValueError("non-finite time")
        except ValueError as error:
            raise ValueError(
                f"{path}, line {number}: expected 'start end crackle wheeze' (seconds, seconds, 0/1, 0/1), "
                f"got {line.strip()!r} ({error})"
            ) from None
        cycles.append({"start_s": start, "end_s": end, "crackle": crackle, "wheeze": wheeze})
    return cycles


def _build_icbhi(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """ICBHI 2017 Respiratory Sound Database (``ICBHI_final_database/*.wav``).

    Columns: ``diagnosis`` (patient-level, e.g. COPD, Healthy, URTI), ``official_split`` (challenge
    train/test list), ``cycles`` (the recording's annotated respiratory cycles, :func:`read_icbhi_cycles`;
    ``None`` when its ``.txt`` file is absent, which is then listed as missing). Rows follow the official
    920-recording list.
    """
    report = BuildReport("icbhi", str(root))
    index = FileIndex(root)
    diagnosis_path = _metadata_file(
        index, "ICBHI_Challenge_diagnosis.txt", opera, "datasets/icbhi/ICBHI_Challenge_diagnosis.txt", report
    )
    split_path = _metadata_file(
        index, "ICBHI_challenge_train_test.txt", opera, "datasets/icbhi/ICBHI_challenge_train_test.txt", report
    )
    if diagnosis_path is None or split_path is None:
        raise FileNotFoundError(
            "ICBHI needs ICBHI_Challenge_diagnosis.txt and ICBHI_challenge_train_test.txt (in the corpus folder or OPERA's copy)."
        )
    diagnosis = read_icbhi_diagnosis(diagnosis_path)
    listed = read_icbhi_split_list(split_path)
    rows = []
    for recording, split in exclude_icbhi_listed_without_audio(listed, report):
        patient = recording.split("_")[0]
        path = index.find(name=f"{recording}.wav")
        annotation = index.find(name=f"{recording}.txt")
        if annotation is None:
            report.missing.append(f"{recording}.txt")
        rows.append(
            {
                "audio": path,
                "file": recording,
                "subject_id": patient,
                "diagnosis": diagnosis.get(patient),
                "official_split": split,
                "cycles": read_icbhi_cycles(annotation) if annotation is not None else None,
            }
        )
    # The whole official list: a listed-without-audio recording found on disk is excluded, not unlabelled.
    listed_ids = {r for r, _ in listed}
    report.unlabelled.extend(str(p) for p in _audio_files(index) if p.stem not in listed_ids)
    return _finish("icbhi", root, rows, report, verify_audio, split_column="official_split")


_register(
    CorpusSpec(
        "icbhi",
        "ICBHI 2017",
        ("icbhi", "ICBHI", "ICBHI_final_database"),
        "open",
        "https://bhichallenge.med.auth.gr",
        "CC0",
        _build_icbhi,
    )
)


# --------------------------------------------------------------------------------------------------
# Respiratory@TR
# --------------------------------------------------------------------------------------------------


def read_respiratory_tr_labels(path: Path) -> dict[str, int]:
    """Patient id (``H001``) -> COPD severity 0-4 from ``Labels.csv`` (``COPD0`` ... ``COPD4``)."""
    labels = {}
    for row in read_table_rows(path):
        patient = (row.get("Patient ID") or "").strip()
        diagnosis = (row.get("Diagnosis") or "").strip()
        if patient and diagnosis:
            match = re.fullmatch(r"COPD\s*([0-4])", diagnosis)
            if match is None:
                raise ValueError(f"{path}: unexpected diagnosis {diagnosis!r} for {patient}; expected COPD0..COPD4")
            labels[patient] = int(match.group(1))
    return labels


def _build_respiratory_tr(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """Respiratory@TR (``RespiratoryDatabase@TR/H001_L1.wav``): 12-channel auscultation per patient.

    Columns: ``copd_severity`` (0-4), ``channel`` (e.g. ``L1``).
    """
    report = BuildReport("respiratory_tr", str(root))
    index = FileIndex(root)
    labels_path = _metadata_file(index, "Labels.csv", opera, "datasets/copd/Labels.csv", report)
    if labels_path is None:
        raise FileNotFoundError("Respiratory@TR needs Labels.csv (in the corpus folder or OPERA's copy).")
    labels = read_respiratory_tr_labels(labels_path)
    rows = []
    for path in _audio_files(index):
        patient = path.name[:4]
        if patient not in labels:
            report.unlabelled.append(str(path))
            continue
        rows.append(
            {
                "audio": path,
                "file": path.stem,
                "subject_id": patient,
                "copd_severity": labels[patient],
                "channel": path.stem[5:],
            }
        )
    return _finish("respiratory_tr", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "respiratory_tr",
        "Respiratory@TR",
        ("respiratory_tr", "copd", "RespiratoryDatabase@TR"),
        "open",
        "https://data.mendeley.com/datasets/p9z4h98s6j/1",
        "CC BY 4.0",
        _build_respiratory_tr,
    )
)


# --------------------------------------------------------------------------------------------------
# KAUH
# --------------------------------------------------------------------------------------------------


def parse_kauh_filename(name: str) -> dict:
    """Fields of a KAUH file name such as ``BP47_asthma,E W,P L M,60,M.wav``.

    Returns ``subject_id`` (OPERA's user id: the prefix without its two filter/letters), ``filter``
    (B = bell, D = diaphragm, E = extended), raw ``diagnosis``, ``sound_type``, ``location``, ``age``
    and ``sex``.
    """
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    head, *rest = stem.split(",")
    prefix, _, diagnosis = head.partition("_")
    fields = [f.strip() for f in rest] + [""] * (4 - len(rest))
    return {
        "subject_id": prefix[2:],
        "filter": prefix[:1],
        "diagnosis": diagnosis.strip(),
        "sound_type": fields[0],
        "location": fields[1],
        "age": fields[2],
        "sex": fields[3],
    }


def kauh_opera_diagnosis(diagnosis: str) -> str | None:
    """OPERA's grouping of KAUH diagnoses: ``healthy``, ``asthma``, ``COPD`` or ``None`` (other)."""
    if diagnosis == "N":
        return "healthy"
    if "asthma" in diagnosis.lower():
        return "asthma"
    if "COPD" in diagnosis:
        return "COPD"
    return None


def _build_kauh(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """KAUH lung sounds (``AudioFiles/*.wav``); labels come from the file names.

    Columns: raw ``diagnosis``, ``opera_group`` (healthy/asthma/COPD/None), ``filter``, ``location``,
    ``sound_type``, ``age``, ``sex``.
    """
    report = BuildReport("kauh", str(root))
    index = FileIndex(root)
    rows = []
    for path in _audio_files(index):
        fields = parse_kauh_filename(path.name)
        if not fields["diagnosis"]:
            report.unlabelled.append(str(path))
            continue
        rows.append(
            {"audio": path, "file": path.name, **fields, "opera_group": kauh_opera_diagnosis(fields["diagnosis"])}
        )
    return _finish("kauh", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "kauh",
        "KAUH",
        ("kauh", "KAUH"),
        "open",
        "https://data.mendeley.com/datasets/jwyy9np4gv/3",
        "CC BY 4.0",
        _build_kauh,
    )
)


# --------------------------------------------------------------------------------------------------
# CoughVID
# --------------------------------------------------------------------------------------------------


def _build_coughvid(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """CoughVID (``public_dataset/<uuid>.webm|.ogg`` or converted ``wav/<uuid>.wav``).

    Rows follow ``metadata_compiled.csv``. Columns: ``status`` (healthy/symptomatic/COVID-19),
    ``gender``, ``age``, ``cough_detected``. CoughVID has no participant ids, so ``subject_id`` is the
    recording uuid.
    """
    report = BuildReport("coughvid", str(root))
    index = FileIndex(root)
    metadata = _metadata_file(index, "metadata_compiled.csv", opera, "datasets/coughvid/metadata_compiled.csv", report)
    if metadata is None:
        raise FileNotFoundError("CoughVID needs metadata_compiled.csv (in the corpus folder or OPERA's copy).")
    rows, listed = [], set()
    for row in read_table_rows(metadata):
        uuid = row.get("uuid", "").strip()
        if not uuid:
            continue
        listed.add(uuid)
        path = index.find(stem=uuid) or index.find(stem=uuid[:-1])
        rows.append(
            {
                "audio": path,
                "file": uuid,
                "subject_id": uuid,
                "status": row.get("status") or None,
                "gender": row.get("gender") or None,
                "age": row.get("age") or None,
                "cough_detected": float(row["cough_detected"]) if row.get("cough_detected") else None,
            }
        )
    report.unlabelled.extend(str(p) for p in _audio_files(index) if p.stem not in listed and p.stem[:-1] not in listed)
    return _finish("coughvid", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "coughvid",
        "CoughVID",
        ("coughvid", "CoughVID", "COUGHVID"),
        "open",
        "https://zenodo.org/records/4048312",
        "CC BY 4.0",
        _build_coughvid,
    )
)


# --------------------------------------------------------------------------------------------------
# Coswara
# --------------------------------------------------------------------------------------------------


def _build_coswara(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """Coswara (``Extracted_data/<date>/<participant>/<modality>.wav`` + ``combined_data.csv``).

    One row per recording. Columns: ``modality`` (e.g. ``cough-shallow``), ``date``, ``sex``
    (``g`` column), ``smoker``, ``covid_status``, ``quality`` (from ``annotations/<modality>_labels.csv``
    when present).
    """
    report = BuildReport("coswara", str(root))
    index = FileIndex(root)
    combined = index.find_metadata("combined_data.csv")
    participants = {}
    if combined is not None:
        participants = {row["id"]: row for row in read_table_rows(combined)}
        report.notes.append(f"metadata: {combined}")
    quality: dict[str, str] = {}
    for path in index.paths():
        if path.name.endswith("_labels.csv") and path.parent.name == "annotations":
            for row in read_table_rows(path):
                values = list(row.values())
                if len(values) >= 2:
                    quality[values[0]] = values[1]
    rows = []
    for path in _audio_files(index):
        participant, modality = path.parent.name, path.stem
        meta = participants.get(participant)
        if meta is None:
            report.unlabelled.append(str(path))
            continue
        rows.append(
            {
                "audio": path,
                "file": f"{path.parent.parent.name}/{participant}/{path.name}",
                "subject_id": participant,
                "date": path.parent.parent.name,
                "modality": modality,
                "sex": meta.get("g") or None,
                "smoker": meta.get("smoker") or None,
                "covid_status": meta.get("covid_status") or None,
                "quality": quality.get(f"{participant}_{modality}"),
            }
        )
    if combined is None:
        report.notes.append("combined_data.csv not found: no recording could be labelled")
    return _finish("coswara", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "coswara",
        "Coswara",
        ("coswara", "Coswara-Data", "Coswara"),
        "open",
        "https://github.com/iiscleap/Coswara-Data",
        "CC BY 4.0",
        _build_coswara,
    )
)


# --------------------------------------------------------------------------------------------------
# UK COVID-19 Vocal Audio Dataset
# --------------------------------------------------------------------------------------------------


def _build_uk_covid19(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """UK COVID-19 Vocal Audio Dataset (audio files + ``audio_metadata.csv``,
    ``participant_metadata.csv``, ``train_test_splits.csv``).

    One row per (participant, modality) for the ``exhalation`` and ``cough`` recordings. Columns:
    ``modality``, ``covid_test_result`` (Positive/Negative), ``official_split`` (train/val/test).
    """
    report = BuildReport("uk_covid19", str(root))
    index = FileIndex(root)
    audio_meta = index.find_metadata("audio_metadata.csv")
    participant_meta = index.find_metadata("participant_metadata.csv")
    if audio_meta is None or participant_meta is None:
        raise FileNotFoundError(
            f"UK COVID-19: audio_metadata.csv and participant_metadata.csv are required under {root}."
        )
    results = {row["participant_identifier"]: row.get("covid_test_result") for row in read_table_rows(participant_meta)}
    splits = {}
    split_file = index.find_metadata("train_test_splits.csv")
    if split_file is not None:
        splits = {row["participant_identifier"]: row.get("splits") for row in read_table_rows(split_file)}
    rows = []
    for row in read_table_rows(audio_meta):
        participant = row.get("participant_identifier")
        for modality in ("exhalation", "cough"):
            filename = (row.get(f"{modality}_file_name") or "").strip()
            if not filename:
                continue
            rows.append(
                {
                    "audio": index.find(name=filename),
                    "file": filename,
                    "subject_id": participant,
                    "modality": modality,
                    "covid_test_result": results.get(participant),
                    "official_split": splits.get(participant) or "unassigned",
                }
            )
    return _finish("uk_covid19", root, rows, report, verify_audio, split_column="official_split")


_register(
    CorpusSpec(
        "uk_covid19",
        "UK COVID-19 Vocal Audio",
        ("uk_covid19", "covidUK", "uk-covid19"),
        "manual",
        "https://zenodo.org/records/10043978",
        "OGL 3.0",
        _build_uk_covid19,
    )
)


# --------------------------------------------------------------------------------------------------
# COVID-19 Sounds
# --------------------------------------------------------------------------------------------------

COVID19_SOUNDS_TASK1_CSV = "data_0426_en_task1.csv"


def _build_covid19_sounds(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """COVID-19 Sounds, task-1 release (``data_0426_en_task1.csv`` + ``0426_EN_used_task1/``).

    One row per (sample, modality) for ``breath`` and ``cough``. Columns: ``modality``, ``label``
    (1 = COVID-19 positive), ``official_split`` (train/validation/test from the csv's 0/1/2),
    ``row_index`` (csv order, needed for OPERA's training downsampling).
    """
    report = BuildReport("covid19_sounds", str(root))
    index = FileIndex(root)
    csv_path = index.find_metadata(COVID19_SOUNDS_TASK1_CSV)
    if csv_path is None:
        raise FileNotFoundError(
            f"COVID-19 Sounds: {COVID19_SOUNDS_TASK1_CSV} not found under {root} (it ships with the task-1 release)."
        )
    split_names = {"0": "train", "1": "validation", "2": "test"}
    rows = []
    for row_index, row in enumerate(read_table_rows(csv_path, delimiter=";")):
        uid = row["Uid"]
        user_folder = "form-app-users" if uid[:4] == "2020" else uid
        for modality in ("breath", "cough"):
            filename = row.get(f"{modality.capitalize()} filename")
            relpath = f"0426_EN_used_task1/{user_folder}/{row['Folder Name']}/{filename}"
            rows.append(
                {
                    "audio": index.find(relpath=relpath, tail=3),
                    "file": relpath,
                    "subject_id": uid,
                    "modality": modality,
                    "label": int(row["label"]),
                    "official_split": split_names.get(str(row["split"]).strip(), str(row["split"])),
                    "row_index": row_index,
                }
            )
    return _finish("covid19_sounds", root, rows, report, verify_audio, split_column="official_split")


_register(
    CorpusSpec(
        "covid19_sounds",
        "COVID-19 Sounds",
        ("covid19_sounds", "covid19-sounds"),
        "request",
        "https://covid-19-sounds.org/blog/neurips_dataset",
        "custom (data transfer agreement)",
        _build_covid19_sounds,
    )
)


# --------------------------------------------------------------------------------------------------
# SSBPR
# --------------------------------------------------------------------------------------------------

SSBPR_POSITIONS = (
    "supine",
    "supine, left lateral head",
    "supine, right lateral head",
    "left-side lying",
    "right-side lying",
    "prone",
)


def _build_ssbpr(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """SSBPR snoring sounds (``female|male/<...>/<A>-<B>-<C>.wav``, C = body position 0-5).

    Columns: ``position`` (0-5), ``sex`` (from the top-level folder). ``subject_id`` is ``A-B``.
    """
    report = BuildReport("ssbpr", str(root))
    index = FileIndex(root)
    rows = []
    for path in _audio_files(index):
        match = re.fullmatch(r"(.+)-(\d)", path.stem)
        if match is None:
            report.unlabelled.append(str(path))
            continue
        top = path.relative_to(root).parts[0].lower()
        rows.append(
            {
                "audio": path,
                "file": path.relative_to(root).as_posix(),
                "subject_id": match.group(1),
                "position": int(match.group(2)),
                "sex": top if top in {"female", "male"} else None,
            }
        )
    return _finish("ssbpr", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "ssbpr",
        "SSBPR",
        ("ssbpr", "SSBPR"),
        "request",
        "https://github.com/xiaoli1996/SSBPR",
        "CC BY 4.0",
        _build_ssbpr,
    )
)


# --------------------------------------------------------------------------------------------------
# MMlung
# --------------------------------------------------------------------------------------------------

MMLUNG_MODALITIES = {"deep_breath": "Deep_Breath_file", "o_single": "O_Single_file"}
MMLUNG_TARGETS = ("FVC", "FEV1", "FEV1_FVC")


def _read_mmlung_targets(index: FileIndex, root: Path, report: BuildReport) -> list[dict]:
    """Subject rows with spirometry targets and the relative path of each modality's recording."""
    import pandas as pd

    all_path = index.find_metadata("All_path.xlsx")
    if all_path is not None:
        report.notes.append(f"metadata: {all_path}")
        frame = pd.read_excel(all_path)
        rows = []
        for _, row in frame.iterrows():
            spiro = str(row["Spirometry_file"])
            subject = Path(spiro).stem.split("_")[0]
            item = {"subject_id": subject, "spirometry_file": spiro}
            item.update({"FVC": float(row["FVC"]), "FEV1": float(row["FEV1"]), "FEV1_FVC": float(row["FEV1/FVC"])})
            for key, column in MMLUNG_MODALITIES.items():
                value = row.get(column)
                item[key] = None if is_missing(value) else str(value).lstrip("./")
            rows.append(item)
        return rows
    spiro_files = sorted(
        p
        for p in index.paths()
        if p.parent.name == "spirometry_ground_truth" and p.suffix.lower() in {".xls", ".xlsx"}
    )
    if not spiro_files:
        raise FileNotFoundError(f"MMlung: neither All_path.xlsx nor spirometry_ground_truth/*.xls found under {root}.")
    rows = []
    for spiro in spiro_files:
        try:
            sheet = pd.read_excel(spiro, header=None, sheet_name=0)
        except ImportError as error:
            raise ImportError(
                f"Reading MMlung's .xls spirometry files needs the 'xlrd' package ({error}); install it or generate All_path.xlsx with OPERA's extract_mmlung.py."
            ) from error
        # Cells B23/B24/B25 hold FVC, FEV1 and FEV1/FVC (OPERA's extract_mmlung.py); '*' marks flagged values.
        values = [float(str(sheet.iat[r, 1]).replace("*", "")) for r in (22, 23, 24)]
        subject = spiro.stem.split("_")[0]
        rows.append(
            {
                "subject_id": subject,
                "spirometry_file": spiro.relative_to(root).as_posix(),
                "FVC": values[0],
                "FEV1": values[1],
                "FEV1_FVC": values[2],
                "deep_breath": f"Trimmed Data from phone/9_3_deepbreath/{subject}_deepbreaths.wav",
                "o_single": f"Trimmed Data from phone/5_2_O_single/{subject}_vowelo.wav",
            }
        )
    return rows


def _build_mmlung(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """MMlung (``Trimmed Data from phone/`` + ``All_path.xlsx`` or ``spirometry_ground_truth/*.xls``).

    One row per (subject, modality) for ``deep_breath`` and ``o_single``. Columns: ``modality``,
    ``FVC``, ``FEV1``, ``FEV1_FVC``, ``spirometry_file``. Rows keep OPERA's order (sorted by
    spirometry file name), which its leave-one-out loop iterates over.
    """
    report = BuildReport("mmlung", str(root))
    index = FileIndex(root)
    subjects = sorted(_read_mmlung_targets(index, root, report), key=lambda r: r["spirometry_file"])
    rows = []
    for subject in subjects:
        for modality in MMLUNG_MODALITIES:
            relpath = subject[modality]
            if relpath is None:
                report.missing.append(f"{subject['subject_id']}:{modality} (no recording listed)")
                continue
            rows.append(
                {
                    "audio": index.find(relpath=relpath, tail=2),
                    "file": relpath,
                    "subject_id": subject["subject_id"],
                    "modality": modality,
                    "spirometry_file": subject["spirometry_file"],
                    **{t: subject[t] for t in MMLUNG_TARGETS},
                }
            )
    return _finish("mmlung", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "mmlung",
        "MMlung",
        ("mmlung", "MMlung"),
        "request",
        "https://github.com/MohammedMosuily/mmlung",
        "custom (data transfer agreement)",
        _build_mmlung,
    )
)


# --------------------------------------------------------------------------------------------------
# NoseMic
# --------------------------------------------------------------------------------------------------


def _build_nosemic(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """NoseMic nasal breathing (``audio/<user>_<x>_<y>_<rate>.wav``); target ``respiratory_rate``."""
    report = BuildReport("nosemic", str(root))
    index = FileIndex(root)
    rows = []
    for path in sorted(_audio_files(index), key=lambda p: p.name):
        parts = path.stem.split("_")
        try:
            rate = float(parts[3]) if len(parts) == 4 else None
        except ValueError:
            rate = None
        if rate is None:
            report.unlabelled.append(str(path))
            continue
        rows.append({"audio": path, "file": path.name, "subject_id": parts[0], "respiratory_rate": rate})
    return _finish("nosemic", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "nosemic",
        "NoseMic",
        ("nosemic", "NoseMic"),
        "manual",
        "https://github.com/evelyn0414/OPERA/tree/main/datasets/nosemic",
        "custom (University of Cambridge)",
        _build_nosemic,
    )
)


# --------------------------------------------------------------------------------------------------
# COVID-19 induced coughs (CC0)
# --------------------------------------------------------------------------------------------------


def _build_covid19_cough(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """Induced coughs recorded through a call centre (8 kHz) or a Telegram bot (48 kHz), CC0 (``raw/<name>.mp3`` +
    ``metadata.json``).

    Rows follow ``metadata.json``. Columns: ``covid19`` (bool), ``source`` (``call-center`` / ``telegram``),
    ``verified`` (PCR confirmed by a laboratory; ``None`` where not stated), ``asymptomatic``. There are no participant
    ids, so ``subject_id`` is the file name (each recording is its own resampling unit).
    """
    report = BuildReport("covid19_cough", str(root))
    index = FileIndex(root)
    metadata = index.find_metadata("metadata.json")
    if metadata is None:
        raise FileNotFoundError(f"The COVID-19 cough corpus needs metadata.json under {root}.")
    with open(metadata, encoding="utf-8") as handle:
        entries = json.load(handle)
    rows, listed = [], set()
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("filename") or not isinstance(entry.get("covid19"), bool):
            raise ValueError(f"{metadata}: entry {number} lacks a filename or a boolean covid19 label: {entry!r}")
        name = str(entry["filename"])
        listed.add(name)
        rows.append(
            {
                "audio": index.find(name=name),
                "file": name,
                "subject_id": Path(name).stem,
                "covid19": entry["covid19"],
                "source": entry.get("source"),
                "verified": entry.get("verified"),
                "asymptomatic": entry.get("asymptomatic"),
            }
        )
    report.unlabelled.extend(str(p) for p in _audio_files(index) if p.name not in listed)
    report.duplicates.update({name: [str(p) for p in paths] for name, paths in index.duplicates.items()})
    return _finish("covid19_cough", root, rows, report, verify_audio)


_register(
    CorpusSpec(
        "covid19_cough",
        "COVID-19 induced coughs (call centre and Telegram)",
        ("covid19-cough", "covid19_cough"),
        "open",
        "distributed with this project's shared data (../shared/data/covid19-cough, README.md and LICENSE there)",
        "CC0-1.0",
        _build_covid19_cough,
    )
)


# --------------------------------------------------------------------------------------------------
# SPRSound 2022
# --------------------------------------------------------------------------------------------------

SPRSOUND_RECORD_CLASSES = ("Normal", "CAS", "DAS", "CAS & DAS", "Poor Quality")
SPRSOUND_EVENT_CLASSES = ("Normal", "Rhonchi", "Wheeze", "Stridor", "Coarse Crackle", "Fine Crackle", "Wheeze+Crackle")


def parse_sprsound_filename(name: str) -> dict:
    """``<patient>_<age>_<sex>_<location>_<n>.wav`` -> fields (sex 0 = male, 1 = female; p1-p4 location)."""
    parts = Path(name).stem.split("_")
    if len(parts) != 5:
        raise ValueError(f"SPRSound file name {name!r} does not follow <patient>_<age>_<sex>_<location>_<n>.wav")
    patient, age, sex, location, number = parts
    return {
        "subject_id": patient,
        "age": float(age),
        "sex": "female" if sex == "1" else "male",
        "location": location,
        "recording_number": number,
    }


# Folders of the official release (BioCAS 2022 challenge): audio in ``train_wav``/``test_wav``, one annotation per
# recording in ``train_json`` and ``test_json/{intra,inter}_test_json``. The intra-patient test part holds new
# recordings of patients who also appear in the train part; the inter-patient test part holds patients who do not.
SPRSOUND_ANNOTATION_FOLDERS = {"train_json": "train", "intra_test_json": "test_intra", "inter_test_json": "test_inter"}
SPRSOUND_AUDIO_FOLDERS = ("train_wav", "test_wav")


def _sprsound_part(json_path: Path) -> str:
    """Official part of an annotation file, from its folder (``unknown`` outside the official folders)."""
    return SPRSOUND_ANNOTATION_FOLDERS.get(json_path.parent.name.lower(), "unknown")


def _build_sprsound(root: Path, opera: OperaFiles, verify_audio: bool) -> CorpusTable:
    """SPRSound 2022 paediatric lung sounds in the official layout (``train_wav/``, ``train_json/``, ``test_wav/``,
    ``test_json/{intra,inter}_test_json/``; either part may be absent).

    Columns: ``record_label`` (Normal, CAS, DAS, CAS & DAS, Poor Quality), ``events`` (list of
    ``{"start_ms", "end_ms", "type"}``), ``official_split`` (``train`` / ``test_intra`` / ``test_inter``, from the
    annotation folder), ``age``, ``sex``, ``location``.

    Only the official folders are read: the release also ships ``example/`` (copies of 50 training recordings and
    their annotations) and ``test_clip/`` (unannotated event clips), which would otherwise duplicate or pollute the
    table. Their presence is noted in the report.
    """
    report = BuildReport("sprsound", str(root))
    index = FileIndex(root)
    annotations: dict[str, list[Path]] = defaultdict(list)
    for path in index.paths():
        if path.suffix.lower() == ".json" and path.parent.name.lower() in SPRSOUND_ANNOTATION_FOLDERS:
            annotations[path.stem].append(path)
    audio_files = [p for p in _audio_files(index) if p.parent.name.lower() in SPRSOUND_AUDIO_FOLDERS]
    # Only the official folders' copies are looked at, so e.g. example/'s copies of training recordings are no
    # duplicates.
    ignored = sorted(
        {p.parent.relative_to(root).as_posix() for p in _audio_files(index)}
        - {p.parent.relative_to(root).as_posix() for p in audio_files}
    )
    if ignored:
        report.notes.append(f"ignored folders outside the official layout: {', '.join(ignored)}")
    if not audio_files:
        raise FileNotFoundError(
            f"SPRSound: no recording under {root}/train_wav or {root}/test_wav (the official layout: train_wav, "
            "train_json, test_wav, test_json/{intra,inter}_test_json)."
        )
    rows = []
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in audio_files:
        by_name[path.name].append(path)
    audio_stems = {Path(name).stem for name in by_name}
    # An annotation whose recording is gone (deleted, never unpacked) is a missing recording.
    report.missing.extend(f"{stem}.wav" for stem in sorted(annotations) if stem not in audio_stems)
    for name in sorted(by_name):
        copies = by_name[name]
        # Several copies in the official folders: the first when byte-identical, else listed as duplicates.
        path = copies[0] if len(copies) == 1 else index._one_copy(name, copies)
        if path is None:
            continue
        candidates = annotations.get(path.stem, [])
        if len(candidates) != 1:
            report.unlabelled.append(str(path) + ("" if not candidates else " (several annotation files)"))
            continue
        with open(candidates[0], encoding="utf-8") as handle:
            annotation = json.load(handle)
        # The README documents "recording_annotation"; the released JSON files use "record_annotation".
        record_label = annotation.get("record_annotation", annotation.get("recording_annotation"))
        if record_label not in SPRSOUND_RECORD_CLASSES:
            report.unlabelled.append(f"{path} (record label {record_label!r})")
            continue
        events = [
            {"start_ms": float(e["start"]), "end_ms": float(e["end"]), "type": str(e["type"])}
            for e in annotation.get("event_annotation", [])
        ]
        rows.append(
            {
                "audio": path,
                "file": path.name,
                **parse_sprsound_filename(path.name),
                "record_label": record_label,
                "events": events,
                "official_split": _sprsound_part(candidates[0]),
            }
        )
    report.duplicates.update({name: [str(p) for p in paths] for name, paths in index.duplicates.items()})
    return _finish("sprsound", root, rows, report, verify_audio, split_column="official_split")


_register(
    CorpusSpec(
        "sprsound",
        "SPRSound 2022",
        ("sprsound", "SPRSound"),
        "open",
        "https://github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound",
        "GPL-3.0 (as shipped; cite Zhang et al., TBioCAS 2022)",
        _build_sprsound,
    )
)
