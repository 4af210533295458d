"""The files `resp-audio-hf embed` writes, published as one: a reader sees one run's output whole, or an error.

A Parquet output is one file (paths, embeddings and, in its metadata, the skipped files). A `.npy` output is three
(`<stem>.npy`, `<stem>.index.csv`, and `<stem>.skipped.csv` when files were left out) tied together by
`<stem>.manifest.json`, written last, which records each file's SHA-256: the old manifest is removed before the first
new file is written, so a run that dies in between leaves no manifest, and [`read_embeddings`] refuses a matrix and
index that do not belong together instead of pairing 599 rows with 26 paths. Writing holds a lock on the output
(`.<name>.lock`), so two runs on one output take turns; the temporary files a killed run left are removed by the next.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .data.audio import is_utf8_path, printable_path
from .data.file_io import (
    atomic_path,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
    read_table_rows,
    sha256_file,
)

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1


class EmbeddingOutputError(ValueError):
    """An `embed` output that is incomplete or whose files do not belong together."""


def index_path(output: Path) -> Path:
    return output.with_suffix(".index.csv")


def skipped_path(output: Path) -> Path:
    return output.with_suffix(".skipped.csv")


def manifest_path(output: Path) -> Path:
    return output.with_suffix(".manifest.json")


def _csv_text(header: list[str], rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@contextlib.contextmanager
def _output_lock(output: Path) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(output.with_name(f".{output.name}.lock"))):
        yield


def _remove_stale_temporaries(output: Path) -> None:
    """Temporary files `atomic_path` left beside the output's files when a run was killed while writing them (safe
    under the output lock: no other run is writing them now)."""
    names = {path.name for path in (output, index_path(output), skipped_path(output), manifest_path(output))}
    for path in output.parent.iterdir():
        if path.name.startswith(".") and ".tmp" in path.name and any(path.name.startswith(f".{n}.") for n in names):
            path.unlink(missing_ok=True)


def write_embeddings(
    output: Path,
    output_format: str,
    names: Sequence[str],
    vectors: np.ndarray,
    metadata: dict[str, str],
    skipped: Sequence[tuple[str, str]],
    extra_columns: dict[str, Sequence] | None = None,
) -> tuple[Path | None, Path | None]:
    """
    Publish one run's output (see the module's docstring): `vectors` `[n, dim]` float32 with their `names`, and the
    `(path, reason)` of each `skipped` file. `extra_columns` (one value per row, e.g. windowed embedding's `window`,
    `start_s`, `end_s`) go into the Parquet table, or into the `.npy` index after `row,path`. Returns `(index path or
    None, skipped list path or None)`.
    """
    extra_columns = extra_columns or {}
    # File names in another encoding than UTF-8 cannot go into UTF-8 text (CSV, Parquet strings) as they are: their
    # bytes appear as \xNN, and the user is told which ones (before anything is written, so nothing fails halfway).
    foreign = [name for name in dict.fromkeys(names) if not is_utf8_path(name)]  # a file's windows share a name
    if foreign:
        logger.warning(
            "%d file name(s) are not UTF-8; the output names them with \\xNN escapes for those bytes: %s",
            len(foreign), ", ".join(printable_path(name) for name in foreign),
        )
    names = [printable_path(name) for name in names]
    skipped = [(printable_path(path), reason) for path, reason in skipped]
    output.parent.mkdir(parents=True, exist_ok=True)
    skipped_text = _csv_text(["path", "reason"], skipped) if skipped else None
    with _output_lock(output):
        _remove_stale_temporaries(output)
        manifest_path(output).unlink(missing_ok=True)  # from here until the new one, the output reads as unfinished
        if skipped_text is None:
            skipped_path(output).unlink(missing_ok=True)  # from an earlier run over other files
        else:
            atomic_write_text(skipped_path(output), skipped_text)
        if output_format == "parquet":
            _write_parquet(
                output, names, vectors, {**metadata, "skipped": json.dumps(list(map(list, skipped)))}, extra_columns
            )
            return None, skipped_path(output) if skipped else None
        atomic_save_npy(output, vectors)
        rows = zip(range(len(names)), names, *extra_columns.values())
        atomic_write_text(index_path(output), _csv_text(["row", "path", *extra_columns], rows))
        files = [output, index_path(output)] + ([skipped_path(output)] if skipped else [])
        atomic_write_json(
            manifest_path(output),
            {"format": MANIFEST_FORMAT, "rows": int(vectors.shape[0]), "dim": int(vectors.shape[1]),
             "sha256": {path.name: sha256_file(path) for path in files}, **metadata},
        )
    return index_path(output), skipped_path(output) if skipped else None


def _write_parquet(
    path: Path, names: Sequence[str], vectors: np.ndarray, metadata: dict[str, str], extra_columns: dict[str, Sequence]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = vectors.shape[1]
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    # list<float32> (not fixed-size) is what pandas, polars and `datasets` read as a plain list column.
    embedding = embedding.cast(pa.list_(pa.float32()))
    table = pa.table(
        {"row": pa.array(np.arange(len(names)), type=pa.int64()), "path": pa.array(list(names), type=pa.string()),
         **{name: pa.array(list(values)) for name, values in extra_columns.items()}, "embedding": embedding}
    )
    table = table.replace_schema_metadata({f"resp_audio_hf.{k}": v for k, v in metadata.items()})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The paths and the `[n, dim]` float32 matrix of an `embed` output (Parquet, or `.npy` with its index, checked
    against its manifest: `EmbeddingOutputError` names the file that does not belong)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        vectors = np.asarray(table.column("embedding").combine_chunks().flatten(), dtype=np.float32)
        return table.column("path").to_pylist(), vectors.reshape(table.num_rows, -1)
    manifest_file = manifest_path(path)
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        checksums = manifest["sha256"]
    except FileNotFoundError:
        raise EmbeddingOutputError(
            f"{path} has no manifest ({manifest_file.name}): the embed run that wrote it did not finish (or an older "
            "version wrote it). Run resp-audio-hf embed again."
        ) from None
    except (ValueError, KeyError, TypeError) as error:
        raise EmbeddingOutputError(f"{manifest_file} is not a valid embed manifest ({error}).") from None
    for file in (path, index_path(path)):
        if not file.is_file():
            raise EmbeddingOutputError(f"{file} is missing; {manifest_file.name} lists it. Run resp-audio-hf embed again.")
        if sha256_file(file) != checksums.get(file.name):
            raise EmbeddingOutputError(
                f"{file} is not the file {manifest_file.name} was written with (changed, damaged, or left by another "
                "run); run resp-audio-hf embed again."
            )
    names = [row["path"] for row in read_table_rows(index_path(path))]
    vectors = np.load(path, allow_pickle=False)
    if vectors.shape != (manifest["rows"], manifest["dim"]) or len(names) != vectors.shape[0]:
        raise EmbeddingOutputError(f"{path} ({vectors.shape}) and its index ({len(names)} rows) disagree.")
    return names, vectors


__all__ = ["EmbeddingOutputError", "read_embeddings", "write_embeddings"]
