"""The file-system helpers of the whole project: atomic writes, the cache root, hashes, table rows.

Every file the package, `training/` and `benchmarks/` write goes through a temporary sibling and
`os.replace` ([`atomic_path`] for a file, [`atomic_folder`] / [`publish_folder`] for a
folder), so that an interrupted run never leaves a half-written cache, checkpoint, split file or
result behind: a reader sees either the previous complete one or the new complete one. The data is
flushed to disk (`fsync`) before the rename, so a power loss does not publish an empty file either.
What they publish gets the modes `open` and `mkdir` give under the caller's umask (files 0666 & ~umask,
folders 0777 & ~umask), not the private 0600/0700 of the temporary files and folders they go through.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks so large archives do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short hex digest of a JSON-serialisable object, independent of dict ordering."""
    payload = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:length]


def cache_root() -> Path:
    """Root of everything this project caches: `$RESP_AUDIO_HF_CACHE`, default `~/.cache/resp_audio_hf`."""
    root = os.environ.get("RESP_AUDIO_HF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "resp_audio_hf")
    return Path(root)


def read_table_rows(path: str | os.PathLike, delimiter: str = ",") -> list[dict]:
    """Rows (dicts) of a table: a CSV (UTF-8, a byte-order mark is dropped; `delimiter` separates the
    cells), a JSON list of objects, a JSON object of columns, or JSON lines (`.jsonl`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return [dict(row) for row in csv.DictReader(handle, delimiter=delimiter)]
    if suffix not in (".json", ".jsonl"):
        raise ValueError(f"{path}: a table must be a .csv, .json or .jsonl file.")
    with open(path, encoding="utf-8") as handle:
        if suffix == ".jsonl":
            return [json.loads(line) for line in handle if line.strip()]
        data = json.load(handle)
    if isinstance(data, dict):
        columns = list(data)
        return [dict(zip(columns, values)) for values in zip(*(data[c] for c in columns))]
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return data
    raise ValueError(f"{path} must be a CSV, a JSON list of objects, a JSON object of columns, or JSON lines.")


def _fsync(path: Path) -> None:
    """Flush `path` (a file or a folder's entries) to disk; some platforms and file systems cannot, and
    the rename that follows is atomic either way."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def current_umask() -> int:
    """The process's umask, read without changing it (`os.umask` can only be read by setting it, which races
    with other threads creating files); where `/proc` cannot tell, it is read by setting it back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def give_umask_mode(path: Path, umask: int) -> None:
    """Give `path` the mode `open` (a file) or `mkdir` (a folder) would give it under `umask`; a file's
    execute bits are kept (masked too). Symbolic links are left alone."""
    if path.is_symlink():
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    wanted = (0o777 if path.is_dir() else 0o666 | (mode & 0o111)) & ~umask
    if mode != wanted:
        path.chmod(wanted)


def _give_umask_modes(folder: Path) -> None:
    """[`give_umask_mode`] for `folder` and everything inside it."""
    umask = current_umask()
    give_umask_mode(folder, umask)
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            give_umask_mode(Path(root) / name, umask)


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `final_path`; on success move it into place atomically.

    The temporary file lives in the same directory so `os.replace` is a rename on the same file
    system (atomic on POSIX and Windows). On any exception the temporary file is removed and the
    previous `final_path` (if any) is left untouched. The published file gets the mode `open` gives
    under the umask (`mkstemp`'s file is private, 0600).
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=f".tmp{suffix}", dir=final_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        give_umask_mode(tmp_path, current_umask())
        _fsync(tmp_path)
        os.replace(tmp_path, final_path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if str(final_path) in str(error):
            raise
        # numpy's and others' messages ("43008 requested and 13280 written") name no file; a full disk is the usual
        # cause of a short write.
        full = error.errno == errno.ENOSPC or "requested and" in str(error)
        hint = f" The disk is probably full: free space in {final_path.parent} or write elsewhere." if full else ""
        message = f"Could not write {final_path}: {error.strerror or error}.{hint}"
        raise (OSError(error.errno, message) if error.errno is not None else OSError(message)) from error
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    _fsync(final_path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False, default=str) -> Path:
    """`obj` as indented JSON; `default` turns what JSON cannot hold into something it can."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=default) + "\n")


def atomic_save_npy(path: str | os.PathLike, array) -> Path:
    """`np.save` through a temporary file (`np.save` would append `.npy` to a bare temp name)."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    return Path(path)


def atomic_save_figure(fig, path: str | os.PathLike, dpi: int) -> Path:
    """Write a matplotlib `fig` to `path` as PNG atomically (a reader never sees half a chart) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a folder by first renaming it out of the way, so no half-deleted folder keeps its name."""
    path = Path(path)
    if not path.exists():
        return
    doomed = path.with_name(f".trash-{path.name}-{secrets.token_hex(8)}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def publish_folder(ready: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move the fully written folder `ready` to `final` (a sibling), replacing an older `final`.

    The older folder is renamed aside first and deleted only once the new one has its name; if the
    move fails, the older folder gets its name back. `ready` and everything in it first get the modes `open`
    and `mkdir` give under the umask, so that writers that went through private temporary files or folders
    (`mkdtemp`, safetensors) do not publish 0600 files or 0700 folders.
    """
    ready, final = Path(ready), Path(final)
    _give_umask_modes(ready)
    previous = None
    if final.exists():
        previous = final.with_name(f".old-{final.name}-{secrets.token_hex(8)}")
        os.replace(final, previous)
    try:
        os.replace(ready, final)
    except BaseException:
        if previous is not None and not final.exists():
            os.replace(previous, final)
        raise
    _fsync(final.parent)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return final


@contextlib.contextmanager
def atomic_folder(final_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty sibling of `final_dir` to write into; on success it replaces `final_dir`
    ([`publish_folder`]), on any exception it is deleted and `final_dir` is left as it was.

    `final_dir` and what it holds get the modes `mkdir` and `open` give under the umask (see
    [`publish_folder`]).
    """
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = final_dir.with_name(f".{final_dir.name}.{secrets.token_hex(4)}.tmp")
        try:
            staging.mkdir()
            break
        except FileExistsError:
            continue
    try:
        yield staging
        publish_folder(staging, final_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
