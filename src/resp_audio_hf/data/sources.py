"""Where each corpus comes from, and `download_corpus` for the ones that can be fetched by script.

Open corpora are downloaded (resumable, atomic, checksummed when a checksum is pinned) and unpacked
under `<data_root>/<corpus folder>`. Corpora that are open but need a browser or many manual parts,
and corpora whose owners grant access on request, raise [`CorpusAccessError`] with the exact
steps instead of failing obscurely.

The remote archives are not mirrored by this project, so their SHA-256 cannot be pinned here; an
unpinned download is reported as *unverified* together with its computed digest, which a user can
pin afterwards with `sha256_overrides`.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .corpora import get_corpus_spec
from .download import DownloadError, DownloadResult, download_file, extract_archive
from .file_io import atomic_write_text

logger = logging.getLogger(__name__)


class CorpusAccessError(RuntimeError):
    """The corpus cannot be downloaded by script (request-only or manual); the message says how to get it."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a corpus download.

    Attributes:
        url: where to fetch it.
        filename: local name of the downloaded file (inside `<corpus folder>/.downloads`).
        sha256: pinned digest, or `None` when unknown.
        extract: unpack it (zip/tar) after download.
        extract_to: folder, relative to the corpus folder, to unpack into.
    """

    url: str
    filename: str
    sha256: str | None = None
    extract: bool = True
    extract_to: str = "."


@dataclass(frozen=True)
class CorpusSource:
    """How to obtain one corpus.

    Attributes:
        corpus: corpus registry name (its folder name under the data root is the first alias).
        access: `"open"`, `"manual"` or `"request"`.
        files: what to download for open corpora.
        instructions: what a person has to do (manual/request corpora, or after an open download).
        post_extract: optional step run on the corpus folder after unpacking.
    """

    corpus: str
    access: str
    files: tuple[RemoteFile, ...] = ()
    instructions: str = ""
    post_extract: Callable[[Path], None] | None = field(default=None, compare=False)


@dataclass
class CorpusDownloadReport:
    """Result of `download_corpus`: what arrived, what did not (by URL), what is unverified."""

    corpus: str
    directory: Path
    downloaded: list[DownloadResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unverified: dict[str, str] = field(default_factory=dict)
    extracted: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"{self.corpus}: {len(self.downloaded)} file(s) ready in {self.directory}"
        if self.unverified:
            text += "; unverified (no pinned SHA-256): " + ", ".join(
                f"{name} sha256={digest}" for name, digest in self.unverified.items()
            )
        if self.failed:
            text += "; FAILED: " + "; ".join(f"{url}: {reason}" for url, reason in self.failed.items())
        return text


def _coswara_join_parts(corpus_dir: Path) -> None:
    """Coswara ships each collection date as split tarballs (`<date>.tar.gz.aa`, `.ab`...).
    Concatenate the parts of every date and unpack them into `Extracted_data/` (skipping dates that
    are already unpacked), the layout OPERA and our builder expect."""
    target = corpus_dir / "Extracted_data"
    target.mkdir(exist_ok=True)
    for first_part in sorted(corpus_dir.rglob("*.tar.gz.aa")):
        date = first_part.name.split(".")[0]
        if (target / date).exists():
            continue
        parts = sorted(first_part.parent.glob(f"{date}.tar.gz.*"))
        joined = first_part.parent / f".{date}.tar.gz"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
        try:
            if not tarfile.is_tarfile(joined):
                raise DownloadError(
                    f"Coswara parts {', '.join(p.name for p in parts)} do not form a valid tar archive"
                )
            extract_archive(joined, target)
        finally:
            joined.unlink(missing_ok=True)


_MENDELEY = "https://data.mendeley.com/public-files/datasets"

CORPUS_SOURCES: dict[str, CorpusSource] = {
    "icbhi": CorpusSource(
        "icbhi",
        "open",
        (
            RemoteFile(
                "https://bhichallenge.med.auth.gr/sites/default/files/ICBHI_final_database/ICBHI_final_database.zip",
                "ICBHI_final_database.zip",
            ),
        ),
        "Diagnosis and split lists are taken from OPERA's pinned copies.",
    ),
    "kauh": CorpusSource(
        "kauh",
        "open",
        (
            RemoteFile(
                f"{_MENDELEY}/jwyy9np4gv/files/99d7bd63-eb5d-4000-9c2a-a8dd31168cbc/file_downloaded",
                "kauh.zip",
                extract_to="AudioFiles",
            ),
        ),
    ),
    "respiratory_tr": CorpusSource(
        "respiratory_tr",
        "open",
        (
            RemoteFile(
                f"{_MENDELEY}/p9z4h98s6j/files/4920eb3e-cecd-47b2-95b0-75b6446a4aad/file_downloaded",
                "respiratory_tr.zip",
            ),
        ),
    ),
    "coughvid": CorpusSource(
        "coughvid",
        "open",
        (RemoteFile("https://zenodo.org/records/4048312/files/public_dataset.zip?download=1", "public_dataset.zip"),),
        "The .webm/.ogg recordings are decoded directly by torchcodec; no conversion to WAV is needed.",
    ),
    "coswara": CorpusSource(
        "coswara",
        "open",
        (RemoteFile("https://github.com/iiscleap/Coswara-Data/archive/refs/heads/master.zip", "coswara-master.zip"),),
        "The split per-date tarballs are joined and unpacked into Extracted_data/.",
        post_extract=_coswara_join_parts,
    ),
    "sprsound": CorpusSource(
        "sprsound",
        "open",
        (
            RemoteFile(
                "https://github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound/archive/refs/heads/main.zip", "sprsound-main.zip"
            ),
        ),
    ),
    "uk_covid19": CorpusSource(
        "uk_covid19",
        "manual",
        instructions=(
            "Download the UK COVID-19 Vocal Audio Dataset from https://zenodo.org/records/10043978 (several large parts; "
            "access is granted through Zenodo). Unpack the audio and the csv files (audio_metadata.csv, "
            "participant_metadata.csv, train_test_splits.csv) into <data_root>/covidUK/."
        ),
    ),
    "nosemic": CorpusSource(
        "nosemic",
        "manual",
        instructions=(
            "Download the 'audio' folder from the Google Drive link in "
            "https://github.com/evelyn0414/OPERA/tree/main/datasets/nosemic and put it at <data_root>/nosemic/audio/."
        ),
    ),
    "covid19_sounds": CorpusSource(
        "covid19_sounds",
        "request",
        instructions=(
            "COVID-19 Sounds is available on request under a data transfer agreement: see "
            "https://covid-19-sounds.org/blog/neurips_dataset. Put data_0426_en_task1.csv and the 0426_EN_used_task1/ "
            "folder under <data_root>/covid19-sounds/."
        ),
    ),
    "ssbpr": CorpusSource(
        "ssbpr",
        "request",
        instructions=(
            "SSBPR is available on request from its authors (https://github.com/xiaoli1996/SSBPR). Unzip it so that "
            "<data_root>/SSBPR/female and <data_root>/SSBPR/male hold the recordings."
        ),
    ),
    "mmlung": CorpusSource(
        "mmlung",
        "request",
        instructions=(
            "MMlung is available on request (mtm1g19@soton.ac.uk; https://github.com/MohammedMosuily/mmlung). Put "
            "'Trimmed Data from phone/' and 'spirometry_ground_truth/' (or OPERA's generated All_path.xlsx) under "
            "<data_root>/mmlung/."
        ),
    ),
}


def download_corpus(
    corpus: str | CorpusSource,
    data_root: str | os.PathLike,
    *,
    sha256_overrides: dict[str, str] | None = None,
    keep_archives: bool = False,
    progress: bool = True,
    **download_kwargs,
) -> CorpusDownloadReport:
    """Download and unpack an open corpus into `<data_root>/<corpus folder>`.

    Every file is attempted even if an earlier one fails; failures are collected in the report (and
    the files that did arrive stay usable). Raises [`CorpusAccessError`] for manual and
    request-only corpora, with instructions.

    Args:
        corpus: corpus name or a custom [`CorpusSource`].
        data_root: parent folder of the corpus folders.
        sha256_overrides: `{filename or url: sha256}` to pin checksums.
        keep_archives: keep the downloaded archives after unpacking (in `.downloads/`).
        download_kwargs: passed to [`~resp_audio_hf.data.download.download_file`] (timeouts, retries).
    """
    source = corpus if isinstance(corpus, CorpusSource) else CORPUS_SOURCES.get(get_corpus_spec(corpus).name)
    if source is None:
        raise KeyError(f"No download source registered for {corpus!r}")
    spec = get_corpus_spec(source.corpus)
    directory = Path(data_root) / spec.dirnames[0]
    if source.access != "open":
        kind = "is available on request only" if source.access == "request" else "must be downloaded by hand"
        raise CorpusAccessError(f"{spec.title} {kind}. {source.instructions.replace('<data_root>', str(data_root))}")

    report = CorpusDownloadReport(source.corpus, directory)
    downloads = directory / ".downloads"
    overrides = sha256_overrides or {}
    for remote in source.files:
        expected = overrides.get(remote.filename) or overrides.get(remote.url) or remote.sha256
        marker = directory / remote.extract_to / f".{remote.filename}.extracted"
        if remote.extract and marker.exists() and not (downloads / remote.filename).exists():
            # Unpacked by an earlier run whose archive was then removed: nothing to fetch again.
            report.extracted.extend(extract_archive(downloads / remote.filename, directory / remote.extract_to))
            continue
        try:
            result = download_file(
                remote.url, downloads / remote.filename, sha256=expected, progress=progress, **download_kwargs
            )
        except DownloadError as error:
            report.failed[remote.url] = str(error)
            logger.error("%s", error)
            continue
        report.downloaded.append(result)
        if not result.verified:
            report.unverified[remote.filename] = result.sha256
            atomic_write_text(
                result.path.with_name(result.path.name + ".sha256"), f"{result.sha256}  {result.path.name}\n"
            )
        if remote.extract:
            try:
                report.extracted.extend(extract_archive(result.path, directory / remote.extract_to))
            except (DownloadError, OSError) as error:
                report.failed[remote.url] = f"unpacking {result.path} failed: {error}"
                continue
            if not keep_archives:
                result.path.unlink()
    if source.post_extract is not None and not report.failed:
        source.post_extract(directory)
    (logger.info if report.ok else logger.error)(report.summary())
    return report
