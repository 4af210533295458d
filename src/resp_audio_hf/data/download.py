"""Downloads and archive extraction: two ways to fetch, one for each kind of file.

`download_file` (hand-written) is for large corpus archives: it streams into `<dest>.part` and resumes an
interrupted transfer with an HTTP `Range` request, which pooch cannot. `fetch_file` is `pooch.retrieve` for
small pinned files (OPERA's split files), where no resume is needed. Both check the SHA-256 before the file reaches
its final path (a mismatch deletes the download, and the error names the URL and the file), give it the mode `open`
gives under the umask, fetch nothing in offline mode (`HF_HUB_OFFLINE` or `RESP_AUDIO_HF_OFFLINE`), and fail at
once on a host name that does not resolve. `extract_archive` unpacks into a temporary sibling directory and only
then moves the entries into the destination, refusing members that would escape it.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..progress import progress_bar
from .file_io import atomic_write_text, current_umask, give_umask_mode, sha256_file

logger = logging.getLogger(__name__)

_USER_AGENT = "resp-audio-hf-downloader/1.0 (+https://github.com/evelyn0414/OPERA)"


class DownloadError(RuntimeError):
    """A download could not be completed (network failure, HTTP error, server misbehaviour)."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def offline_mode() -> str | None:
    """The setting that forbids downloads (`"HF_HUB_OFFLINE"` or `"RESP_AUDIO_HF_OFFLINE"`), else `None`.

    `HF_HUB_OFFLINE` counts whether it is set in the environment or in `huggingface_hub.constants`.
    """
    if _env_flag("RESP_AUDIO_HF_OFFLINE"):
        return "RESP_AUDIO_HF_OFFLINE"
    if _env_flag("HF_HUB_OFFLINE"):
        return "HF_HUB_OFFLINE"
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    return "HF_HUB_OFFLINE" if constants.HF_HUB_OFFLINE else None


def _unresolved_host_error(url: str, dest: Path, error: BaseException) -> DownloadError | None:
    """A `DownloadError` for a DNS failure anywhere in `error`'s chain (urllib wraps it in `URLError`,
    requests in `ConnectionError`), else `None`: retrying cannot help when there is no name resolution."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, socket.gaierror):
        reason = getattr(cause, "reason", None)  # URLError and urllib3's MaxRetryError keep the cause here
        cause = reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
    if cause is None:
        return None
    host = urllib.parse.urlsplit(url).hostname
    return DownloadError(
        f"{url}: cannot resolve {host!r} ({cause}); no network? Not retrying."
        f" Put the file at {dest} yourself, or set HF_HUB_OFFLINE=1 to skip downloads."
    )


def _refuse_when_offline(url: str, dest: Path, offline: bool | None) -> None:
    """Raise before any request when downloads are disabled (`offline`, default [`offline_mode`])."""
    setting = offline_mode() if offline is None else ("offline=True" if offline else None)
    if setting:
        raise DownloadError(
            f"{dest} is needed but downloads are disabled ({setting}); nothing was fetched. "
            f"Put the file at {dest} yourself (it comes from {url}), or allow downloads."
        )


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the pinned SHA-256."""

    def __init__(self, url: str, path: Path, expected: str, actual: str):
        self.url, self.path, self.expected, self.actual = url, path, expected, actual
        super().__init__(
            f"SHA-256 mismatch for {url}: expected {expected}, got {actual}. The corrupt download was "
            f"deleted ({path}). Re-run the download; if it keeps failing the remote file changed - check "
            "the URL or pass the new checksum explicitly."
        )


@dataclass(frozen=True)
class DownloadResult:
    """Outcome of one `download_file` call.

    Attributes:
        path: final location of the file.
        sha256: hex SHA-256 of the file on disk.
        verified: `True` when the digest was compared against a pinned checksum.
        cached: `True` when the file was already present and nothing was transferred.
        resumed_from: byte offset the transfer resumed from (0 for a fresh download).
    """

    path: Path
    sha256: str
    verified: bool
    cached: bool = False
    resumed_from: int = 0


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _transfer(url: str, part: Path, offset: int, timeout: float, chunk_size: int, progress: bool) -> None:
    """Stream `url` into `part` starting at `offset`; raise on a short or malformed response."""
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # The server says our range starts at or past the end: the part file is already complete.
            return
        raise
    with response:
        status = getattr(response, "status", None) or 200
        if offset and status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise DownloadError(
                    f"{url}: server answered Range bytes={offset}- with Content-Range {content_range!r}"
                )
            mode = "ab"
        else:
            # 200 to a Range request means the server ignores ranges: start over.
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected_total = offset + int(length) if length is not None else None
        bar = progress_bar(
            expected_total, desc=part.name.removesuffix(".part"), unit="B", enabled=progress, initial=offset,
            unit_scale=True, leave=False,
        )
        written = offset
        try:
            with open(part, mode) as handle:
                while True:
                    chunk = response.read(chunk_size)
                    if not chunk:
                        break
                    handle.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
        if expected_total is not None and written != expected_total:
            raise http.client.IncompleteRead(b"", expected_total - written)


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    resume: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    backoff: float = 1.0,
    progress: bool = True,
    offline: bool | None = None,
) -> DownloadResult:
    """Download `url` to `dest` with resume, retries, SHA-256 verification and an atomic rename.

    Args:
        url: `http(s)://` URL.
        dest: final file path. An existing file is reused when it matches `sha256` (or when no
            checksum is given) and replaced when it does not.
        sha256: expected hex digest. `None` downloads unverified and reports the computed digest.
        resume: continue a previous `<dest>.part` with an HTTP Range request.
        retries: extra attempts after a network failure; every attempt resumes from the bytes on disk.
            A host name that does not resolve is not retried.
        offline: refuse to download (a present, valid `dest` is still returned). Default:
            [`offline_mode`].
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        actual = sha256_file(dest)
        if expected is None or actual == expected:
            return DownloadResult(dest, actual, verified=expected is not None, cached=True)
        logger.warning(
            "%s exists but its SHA-256 %s is not the expected %s; downloading it again.", dest, actual, expected
        )
        dest.unlink()
    _refuse_when_offline(url, dest, offline)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if part.exists() and not resume:
        part.unlink()
    first_offset = part.stat().st_size if part.exists() else 0

    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, offset, timeout, chunk_size, progress)
            break
        except urllib.error.HTTPError as error:
            if 500 <= error.code < 600 and attempt < retries:
                time.sleep(backoff * (2**attempt))
                continue
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as error:
            unresolved = _unresolved_host_error(url, dest, error)
            if unresolved is not None:
                raise unresolved from error
            if attempt < retries:
                delay = backoff * (2**attempt)
                logger.warning(
                    "Download of %s failed (%s); retrying in %.0f s from byte %d (attempt %d/%d).",
                    url,
                    error,
                    delay,
                    part.stat().st_size if part.exists() else 0,
                    attempt + 2,
                    retries + 1,
                )
                time.sleep(delay)
                continue
            kept = part.stat().st_size if part.exists() else 0
            raise DownloadError(
                f"{url}: download failed after {retries + 1} attempts ({error}). {kept} bytes are kept in {part}; "
                "run the same command again to resume."
            ) from error

    if not part.exists():
        raise DownloadError(f"{url}: the server returned no data")
    actual = sha256_file(part)
    if expected is not None and actual != expected:
        part.unlink()
        raise ChecksumError(url, part, expected, actual)
    os.replace(part, dest)
    return DownloadResult(dest, actual, verified=expected is not None, resumed_from=first_offset)


def fetch_file(
    url: str, dest: str | os.PathLike, sha256: str, *, offline: bool | None = None, timeout: float = 60.0
) -> Path:
    """Fetch a small file pinned by `sha256` to `dest` with `pooch.retrieve` (no resume, no retries); a valid
    `dest` is kept. pooch downloads beside `dest` and moves the file into place only once its checksum matched.
    Raises `DownloadError` when `offline` (default [`offline_mode`]), on a network or HTTP failure, and on a
    checksum mismatch."""
    dest = Path(dest)
    if dest.exists() and sha256_file(dest) == sha256.lower():
        return dest
    _refuse_when_offline(url, dest, offline)
    import pooch  # a data extra: only a download needs it
    import requests

    try:
        downloader = pooch.HTTPDownloader(timeout=timeout, headers={"User-Agent": _USER_AGENT})
        pooch.retrieve(url, f"sha256:{sha256}", fname=dest.name, path=dest.parent, downloader=downloader)
    except ValueError as error:  # pooch's checksum mismatch; the download is already deleted
        raise DownloadError(f"{url}: {error} Nothing was written to {dest}.") from error
    except requests.RequestException as error:
        unresolved = _unresolved_host_error(url, dest, error)
        raise (unresolved or DownloadError(f"{url}: {error}")) from error
    give_umask_mode(dest, current_umask())  # pooch's temporary file is private (0600)
    return dest


def _safe_member_path(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if target != root and root not in target.parents:
        raise DownloadError(f"Archive member {name!r} would be written outside {root}; refusing to extract it.")
    return target


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as handle:
        for member in handle.infolist():
            _safe_member_path(into, member.filename)
        handle.extractall(into)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as handle:
        members = handle.getmembers()
        for member in members:
            _safe_member_path(into, member.name)
            if member.issym() or member.islnk():
                raise DownloadError(f"Archive {archive} contains a link ({member.name}); refusing to extract it.")
        if hasattr(tarfile, "data_filter"):
            handle.extractall(into, filter="data")
        else:  # pragma: no cover - Python builds without PEP 706 filters
            handle.extractall(into)


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Unpack a `.zip`/`.tar(.gz|.bz2|.xz)` archive into `dest_dir` without partial results.

    The archive is unpacked into a temporary directory beside `dest_dir`; its top-level entries are
    then renamed into `dest_dir`. An entry that already exists is kept (and the archive's copy
    discarded) unless `overwrite` is set. A marker file records a completed extraction so a re-run
    does not unpack the same archive twice.

    Returns:
        The top-level paths inside `dest_dir` that came from the archive.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    marker = dest_dir / f".{archive.name}.extracted"
    if marker.exists() and not overwrite:
        return [dest_dir / line for line in marker.read_text(encoding="utf-8").splitlines() if line]

    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=dest_dir))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging.resolve())
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging.resolve())
        else:
            raise DownloadError(f"{archive} is neither a zip nor a tar archive (is the download complete?)")
        moved = []
        for entry in sorted(staging.iterdir()):
            target = dest_dir / entry.name
            if target.exists():
                if not overwrite:
                    logger.info("%s already exists; keeping it and not unpacking the archive's copy.", target)
                    moved.append(target)
                    continue
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
            moved.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(marker, "\n".join(p.name for p in moved) + "\n")
    return moved
