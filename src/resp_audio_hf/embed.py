"""Embeddings of many recordings in one call: what `resp-audio-hf embed` runs.

Inputs are a folder (searched recursively for audio files), a glob pattern, a CSV or JSON list of files, or a
`datasets` dataset with an audio column. Every file is checked first (exists, non-empty, decodable header); bad files
are named with the reason and left out, never turned into a silent zero vector. The others go through the
extraction engine (`resp_audio_hf.extraction.extract_embeddings`): batched, decoded in DataLoader
workers, cached on disk in shards and resumable; a clip that fails there (decode error, silence or NaN audio the
feature extractor refuses, a non-finite embedding) is named and left out the same way. The result is a Parquet file (`path`, `embedding` as list<float32>,
`row`) or a `.npy` matrix with a CSV index, plus a CSV of the skipped files when there are any, published as one
(`resp_audio_hf.embed_output`: a `.npy` output's files are tied by a manifest written last).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.audio import AUDIO_EXTENSIONS, probe_audio
from .embed_output import (
    EmbeddingOutputError,
    index_path,
    read_embeddings,
    skipped_path,
    write_embeddings,
)

logger = logging.getLogger(__name__)

FORMATS = ("parquet", "npy")
PATH_COLUMNS = ("path", "file", "filename", "audio")


class EmbedInputError(ValueError):
    """The input names no audio, or a list file cannot be read."""


@dataclass
class SkippedFile:
    """A file left out of the embeddings, with why."""

    path: str
    reason: str


@dataclass
class AudioInputs:
    """The items to embed: `paths` (files) or `dataset` (a `datasets.Dataset` with `audio_column`), plus skipped files."""

    paths: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    dataset: object = None
    audio_column: str = "audio"
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _read_list_file(path: Path, path_column: str | None) -> list[str]:
    """Paths listed in a CSV (a `path` column, or `path_column`) or JSON file (a list of paths or of objects)."""
    base = path.parent
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            column = path_column or next((c for c in PATH_COLUMNS if c in columns), None)
            if column not in columns:
                raise EmbedInputError(
                    f"{path} has no column {path_column or ' / '.join(PATH_COLUMNS)!r} naming the audio files "
                    f"(columns: {columns}); pass --path-column."
                )
            entries = [row[column] for row in reader]
    else:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise EmbedInputError(f"{path} is not valid JSON: {error}.") from None
        if isinstance(payload, dict) and "files" in payload:
            payload = payload["files"]
        if not isinstance(payload, list):
            raise EmbedInputError(f"{path} must hold a list of paths or of objects with a 'path' field.")
        column = path_column or "path"
        entries = []
        for position, entry in enumerate(payload):
            if isinstance(entry, dict):
                if column not in entry:
                    raise EmbedInputError(f"{path}, entry {position}, has no {column!r} field: {entry}.")
                entry = entry[column]
            if not isinstance(entry, str):
                raise EmbedInputError(f"{path}, entry {position}, is not a path: {entry!r}.")
            entries.append(entry)
    # Relative paths in a list file are relative to the list file, so the list can travel with its recordings.
    return [str(Path(entry) if Path(entry).is_absolute() else base / entry) for entry in entries if entry.strip()]


def _classify(path: str) -> SkippedFile | None:
    """Why a listed audio name is not a file to embed (None when it is one): a folder named like audio, or a symbolic
    link whose target is gone."""
    if os.path.isdir(path):
        return SkippedFile(path, "is a directory named like an audio file, not a file")
    if os.path.islink(path) and not os.path.exists(path):
        return SkippedFile(path, f"is a dangling symbolic link (its target {os.readlink(path)} does not exist)")
    return None


def _folder_entries(folder: Path) -> tuple[list[str], list[SkippedFile]]:
    """`(names, hidden)`: every name with an audio extension under `folder`, following symbolic links to folders (once
    each, so that a link loop ends), as a `**` glob over it does; and, as a glob leaves them out, the hidden entries
    (names starting with a dot: `._x.wav` resource forks, `.git/`), named rather than dropped silently."""
    found, hidden, seen = [], [], set()
    for root, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        for name in [n for n in folders if n.startswith(".")] + [n for n in files if n.startswith(".") and _is_audio(Path(n))]:
            hidden.append(SkippedFile(os.path.join(root, name), "hidden (its name starts with a dot), as a glob leaves it out"))
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [os.path.join(root, name) for name in folders + files if not name.startswith(".") and _is_audio(Path(name))]
    return sorted(found), hidden


def list_audio_sources(sources: Sequence[str], *, path_column: str | None = None) -> tuple[list[str], list[SkippedFile]]:
    """
    `(files, skipped)` named by `sources`, in order and without duplicates: a folder (recursively, names with an
    audio extension, through symbolic links to folders), a glob pattern (`**` recurses), a `.csv` / `.json` list of
    files, or a file itself. A folder and a `<folder>/**/*.<ext>` glob over it give the same set. Names that are not
    files (a folder named `x.wav`, a dangling symbolic link) are skipped with the reason, never dropped silently.
    """
    files: list[str] = []
    skipped: list[SkippedFile] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found, hidden = _folder_entries(path)
            skipped += hidden
            if not found:
                raise EmbedInputError(f"Folder {source} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}).")
            files.extend(found)
        elif path.suffix.lower() in (".csv", ".json") and path.is_file():
            files.extend(_read_list_file(path, path_column))
        elif glob.has_magic(source):
            found = sorted(glob.glob(source, recursive=True))
            if not found:
                raise EmbedInputError(f"Pattern {source!r} matches no file.")
            files.extend(found)
        else:
            files.append(source)  # a single file; checked (exists, decodable) with the others
    good = []
    for path in dict.fromkeys(files):
        reason = _classify(path)
        (good if reason is None else skipped).append(path if reason is None else reason)
    return good, skipped


def collect_audio_files(sources: Sequence[str], *, path_column: str | None = None) -> list[str]:
    """The audio files named by `sources` (see [`list_audio_sources`], which also says what it skipped and why)."""
    return list_audio_sources(sources, path_column=path_column)[0]


def check_audio_files(paths: Sequence[str]) -> tuple[list[str], list[SkippedFile]]:
    """Split `paths` into readable audio files and skipped ones (missing, empty, not decodable), each with a reason."""
    good, skipped = [], []
    for path in paths:
        probe = probe_audio(path)
        if probe.ok:
            good.append(path)
        else:
            skipped.append(SkippedFile(path, probe.reason))
    return good, skipped


def files_input(sources: Sequence[str], *, path_column: str | None = None) -> AudioInputs:
    """Collect and check the files of `sources` (see [`collect_audio_files`])."""
    listed, not_files = list_audio_sources(sources, path_column=path_column)
    paths, skipped = check_audio_files(listed)
    return AudioInputs(paths=paths, skipped=not_files + skipped, names=list(paths))


def dataset_input(name_or_path: str, *, split: str | None = None, audio_column: str = "audio") -> AudioInputs:
    """A `datasets` dataset: a folder written by `save_to_disk`, or anything `datasets.load_dataset` takes."""
    import datasets

    if Path(name_or_path).is_dir() and (
        (Path(name_or_path) / "dataset_info.json").is_file() or (Path(name_or_path) / "dataset_dict.json").is_file()
    ):
        loaded = datasets.load_from_disk(name_or_path)
    else:
        loaded = datasets.load_dataset(name_or_path, split=split)
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise EmbedInputError(f"{name_or_path} has splits {sorted(loaded)}; choose one with --split.")
            split = next(iter(loaded))
        if split not in loaded:
            raise EmbedInputError(f"{name_or_path} has no split {split!r}; it has {sorted(loaded)}.")
        loaded = loaded[split]
    if audio_column not in loaded.column_names:
        raise EmbedInputError(
            f"{name_or_path} has no column {audio_column!r} (columns: {loaded.column_names}); pass --audio-column."
        )
    names = [f"{name_or_path}[{split or 'train'}][{i}]" for i in range(len(loaded))]
    return AudioInputs(dataset=loaded, audio_column=audio_column, names=names)


# ---------------------------------------------------------------------------------------------------------------------
# Extraction and output


@dataclass
class EmbedResult:
    """What [`embed_inputs`] wrote."""

    output: Path
    index: Path | None
    skipped_file: Path | None
    n_embedded: int
    dim: int
    skipped: list[SkippedFile]


def _clip_dataset(inputs: AudioInputs, encoder, max_duration: float | None):
    from .extraction.clips import DatasetClipDataset, FileClipDataset

    if inputs.dataset is not None:
        if max_duration is not None:
            raise ValueError("--max-duration applies to files, not to a datasets input.")
        return DatasetClipDataset(inputs.dataset, inputs.audio_column, encoder.sampling_rate, inputs.names)
    return FileClipDataset(inputs.paths, encoder.sampling_rate, max_duration=max_duration)


def embed_inputs(
    inputs: AudioInputs,
    encoder,
    output: str | os.PathLike,
    *,
    output_format: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    max_duration: float | None = None,
    progress: bool = True,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
) -> EmbedResult:
    """
    Embed `inputs` with `encoder` and write `output`: Parquet (`.parquet`) with columns `row`, `path`, `embedding`
    (list<float32>), or `.npy` (`[n, dim]` float32) with `<output stem>.index.csv` (`row,path`). Skipped files go to
    `<output stem>.skipped.csv` (`path,reason`). `cache_dir` makes the run resumable (see `extract_embeddings`).

    With `window_seconds` (and `hop_seconds`, default: the window), every file gives one row per window
    (`resp_audio_hf.windowed`), with the columns `window`, `start_s` and `end_s` added (in the Parquet file, or in the
    `.npy` index); files are streamed window by window in bounded memory, and there is no cache.
    """
    output = Path(output)
    output_format = output_format or ("npy" if output.suffix.lower() == ".npy" else "parquet")
    if output_format not in FORMATS:
        raise ValueError(f"output format must be one of {FORMATS}, got {output_format!r}.")
    if len(inputs) == 0:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in inputs.skipped)
        raise EmbedInputError(f"No readable audio to embed. {reasons}".strip())
    from .distributed import process_state

    state = process_state(str(getattr(encoder, "device", "cpu")))  # several processes (accelerate launch / torchrun) share the inputs
    extra_columns: dict[str, list] = {}
    if window_seconds is not None or hop_seconds is not None:
        names, vectors, failures, extra_columns = _embed_windowed(
            inputs, encoder, window_seconds, hop_seconds, batch_size=batch_size, max_duration=max_duration,
            progress=progress, state=state,
        )
    else:
        vectors, failures = _embed_clips(
            inputs, encoder, state, cache_dir=cache_dir, batch_size=batch_size, num_workers=num_workers,
            max_duration=max_duration, progress=progress,
        )
        kept = [i for i in range(len(inputs)) if i not in failures]
        names = [inputs.names[i] for i in kept]
        vectors = vectors[kept]
    skipped = list(inputs.skipped)
    skipped += [SkippedFile(inputs.names[index], reason) for index, reason in failures.items()]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():  # extract_embeddings marks every non-finite row as failed
        raise RuntimeError("Extraction returned non-finite embeddings for rows it did not report as failed.")
    metadata = {
        "model": encoder.model_id,
        "model_fingerprint": encoder.fingerprint(),
        "pooling": str(encoder.pooling),
        "sampling_rate": str(encoder.sampling_rate),
        "max_duration": str(max_duration),
        "window_seconds": str(window_seconds),
        "hop_seconds": str(hop_seconds),
    }
    if state is not None and not state.is_main_process:
        state.wait_for_everyone()  # the main process writes the one output
        index = index_path(output) if output_format == "npy" else None
        skipped_list = skipped_path(output) if skipped else None
        return EmbedResult(output, index, skipped_list, vectors.shape[0], vectors.shape[1], skipped)
    if skipped:
        logger.warning(
            "Left out %d of %d recordings (listed with reasons in %s): %s", len(skipped), len(skipped) + len(names),
            skipped_path(output), "; ".join(f"{s.path}: {s.reason}" for s in skipped),
        )
    index, skipped_list = write_embeddings(
        output, output_format, names, vectors, metadata, [(s.path, s.reason) for s in skipped], extra_columns
    )
    if state is not None:
        state.wait_for_everyone()
    return EmbedResult(output, index, skipped_list, vectors.shape[0], vectors.shape[1], skipped)


def _subset(inputs: AudioInputs, indices: list[int]) -> AudioInputs:
    if inputs.dataset is not None:
        return AudioInputs(dataset=inputs.dataset.select(indices), audio_column=inputs.audio_column,
                           names=[inputs.names[i] for i in indices])
    return AudioInputs(paths=[inputs.paths[i] for i in indices], names=[inputs.names[i] for i in indices])


def _embed_clips(inputs: AudioInputs, encoder, state, *, cache_dir, batch_size, num_workers, max_duration, progress):
    """`([n, dim] vectors, {index: reason})` of every input, one row per input (NaN where it failed). With several
    processes (`state`), each embeds its share in whole batches (`resp_audio_hf.distributed`) and all get every row."""
    from .distributed import gather_in_order, my_share
    from .extraction.extract import ClipFailureError, extract_embeddings

    share = my_share(state, len(inputs), batch_size) if state is not None else list(range(len(inputs)))
    part = _subset(inputs, share) if state is not None else inputs
    if state is not None:
        logger.info("process %d of %d embeds %d of %d inputs", state.process_index, state.num_processes, len(share),
                    len(inputs))
    vectors, failures = np.zeros((0, 0), np.float32), {}
    if share:
        try:
            # Clips that fail while decoding or featurising (or embed to NaN) are left out and named, like the
            # header check's.
            vectors, failures = extract_embeddings(
                encoder, _clip_dataset(part, encoder, max_duration), cache_dir=cache_dir,
                cache_extra={"purpose": "embed"}, batch_size=batch_size, num_workers=num_workers, progress=progress,
                desc="embed", return_failures=True,
            )
        except ClipFailureError as error:
            if state is None:
                raise
            # Every clip of this share failed: the others may still succeed, so report them and go on.
            failures = {i: reason for i, (_, reason) in error.failures.items()}
    if state is None:
        return vectors, failures
    parts = gather_in_order(state, (share, vectors, {share[i]: r for i, r in failures.items()}))
    dim = max(v.shape[1] for _, v, _ in parts)
    if dim == 0:  # no process embedded anything: the single-process error, naming every clip
        raise ClipFailureError({i: (inputs.names[i], r) for _, _, f in parts for i, r in f.items()}, len(inputs))
    rows = np.full((len(inputs), dim), np.nan, dtype=np.float32)
    failures = {}
    for indices, block, failed in parts:
        if block.size:
            rows[indices] = block
        failures.update(failed)
    return rows, dict(sorted(failures.items()))


def _embed_windowed(
    inputs: AudioInputs, encoder, window_seconds, hop_seconds, *, batch_size, max_duration, progress, state=None
):
    """`(names, vectors, failures, {"window", "start_s", "end_s"} columns)`: one row per window of every file. With
    several processes (`state`), each embeds its share of the files and all get every row, in file order."""
    from .data.audio import AudioDecodeError
    from .distributed import gather_in_order, my_share
    from .progress import progress_bar
    from .windowed import embed_windows

    if window_seconds is None:
        raise ValueError("--hop-seconds needs --window-seconds.")
    if inputs.dataset is not None:
        raise ValueError("Windowed embedding (--window-seconds) takes audio files, not a datasets input.")
    if max_duration is not None:
        raise ValueError("--max-duration does not apply to windowed embedding; every window of a file is embedded.")
    names, vectors, failures = [], [], {}
    columns: dict[str, list] = {"window": [], "start_s": [], "end_s": []}
    share = my_share(state, len(inputs.paths)) if state is not None else range(len(inputs.paths))
    if state is not None:
        logger.info("process %d of %d embeds %d of %d inputs", state.process_index, state.num_processes, len(share),
                    len(inputs.paths))
    bar = progress_bar(len(share), desc="embed windows", unit="file", enabled=progress)
    for index in share:
        path = inputs.paths[index]
        bar.update(1)
        try:
            windows, embedded = embed_windows(
                encoder, path, window_seconds, hop_seconds or window_seconds, batch_size=batch_size
            )
        except (AudioDecodeError, ValueError) as error:  # undecodable, or refused by the feature extractor
            failures[index] = str(error)
            continue
        if not np.isfinite(embedded).all():
            failures[index] = "the encoder produced a NaN/inf embedding"
            continue
        names += [path] * len(windows)
        vectors.append(embedded)
        columns["window"] += [w.index for w in windows]
        columns["start_s"] += [round(w.start_s, 6) for w in windows]
        columns["end_s"] += [round(w.end_s, 6) for w in windows]
    bar.close()
    if state is not None:
        parts = gather_in_order(state, (names, vectors, failures, columns))
        names, vectors, failures = [], [], {}
        columns = {key: [] for key in columns}
        for part_names, part_vectors, part_failures, part_columns in parts:
            names += part_names
            vectors += part_vectors
            failures.update(part_failures)
            for key in columns:
                columns[key] += part_columns[key]
        failures = dict(sorted(failures.items()))
    if not vectors:
        raise EmbedInputError("No file could be embedded: " + "; ".join(failures.values()))
    return names, np.concatenate(vectors), failures, columns


__all__ = [
    "AudioInputs",
    "EmbedInputError",
    "EmbedResult",
    "EmbeddingOutputError",
    "SkippedFile",
    "check_audio_files",
    "collect_audio_files",
    "dataset_input",
    "embed_inputs",
    "files_input",
    "list_audio_sources",
    "read_embeddings",
]
