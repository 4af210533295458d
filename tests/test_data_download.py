"""Downloads: resume, checksums, atomic writes, archive safety, corpus download, OPERA split files.

Everything is served by a loopback HTTP server from archives built here; nothing leaves the machine.
"""

import hashlib
import logging
import os
import shutil
import socket
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _data_helpers import loopback_server, shared_path, tone, write_wav

from resp_audio_hf.data.download import (
    ChecksumError,
    DownloadError,
    download_file,
    extract_archive,
    fetch_file,
)
from resp_audio_hf.data.opera_files import OPERA_FILES, OperaFileError, OperaFiles
from resp_audio_hf.data.sources import (
    CorpusAccessError,
    CorpusSource,
    RemoteFile,
    _coswara_join_parts,
    download_corpus,
)


@pytest.fixture(autouse=True)
def downloads_allowed(monkeypatch):
    """These tests serve files from 127.0.0.1, so they run with downloads allowed even under HF_HUB_OFFLINE=1."""
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("RESP_AUDIO_HF_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _payload(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_download_resumes_after_dropped_connection(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = _payload(300_000)
    (served / "blob.bin").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with loopback_server(served, cut_after=100_000) as (url, server):
        result = download_file(
            f"{url}/blob.bin", tmp_path / "out" / "blob.bin", sha256=digest, backoff=0, progress=False
        )
    assert (tmp_path / "out" / "blob.bin").read_bytes() == data
    assert result.verified and result.sha256 == digest
    # The second request continued from the bytes already on disk instead of starting over.
    ranges = [r for _, r in server.requests if r]
    assert ranges and ranges[0] == "bytes=100000-"
    assert not (tmp_path / "out" / "blob.bin.part").exists()


def test_download_restarts_when_server_ignores_ranges(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = _payload(200_000, seed=1)
    (served / "blob.bin").write_bytes(data)
    with loopback_server(served, cut_after=50_000, honour_ranges=False) as (url, _):
        download_file(
            f"{url}/blob.bin",
            tmp_path / "blob.bin",
            sha256=hashlib.sha256(data).hexdigest(),
            backoff=0,
            progress=False,
        )
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_download_resumes_a_part_file_from_an_earlier_run(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = _payload(120_000, seed=2)
    (served / "blob.bin").write_bytes(data)
    (tmp_path / "blob.bin.part").write_bytes(data[:70_000])  # left behind by an interrupted process
    with loopback_server(served) as (url, server):
        result = download_file(
            f"{url}/blob.bin", tmp_path / "blob.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False
        )
    assert result.resumed_from == 70_000
    assert server.requests == [("blob.bin", "bytes=70000-")]
    assert (tmp_path / "blob.bin").read_bytes() == data


def test_checksum_mismatch_names_both_digests_and_keeps_nothing(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "blob.bin").write_bytes(b"not what was promised")
    wrong = "0" * 64
    with loopback_server(served) as (url, _), pytest.raises(ChecksumError) as info:
        download_file(f"{url}/blob.bin", tmp_path / "blob.bin", sha256=wrong, progress=False)
    message = str(info.value)
    assert (
        wrong in message and hashlib.sha256(b"not what was promised").hexdigest() in message and "blob.bin" in message
    )
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_existing_file_with_wrong_checksum_is_replaced(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    data = _payload(10_000, seed=3)
    (served / "blob.bin").write_bytes(data)
    (tmp_path / "blob.bin").write_bytes(b"stale")
    with loopback_server(served) as (url, server):
        result = download_file(
            f"{url}/blob.bin", tmp_path / "blob.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False
        )
        again = download_file(
            f"{url}/blob.bin", tmp_path / "blob.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False
        )
    assert (tmp_path / "blob.bin").read_bytes() == data
    assert not result.cached and again.cached and len(server.requests) == 1


def test_http_error_is_reported_with_url_and_status(tmp_path):
    (tmp_path / "served").mkdir()
    with loopback_server(tmp_path / "served") as (url, _), pytest.raises(DownloadError, match="404") as info:
        download_file(f"{url}/absent.zip", tmp_path / "absent.zip", progress=False)
    assert "absent.zip" in str(info.value)
    assert not (tmp_path / "absent.zip").exists()


def test_extract_archive_refuses_path_traversal(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ok.txt", "fine")
        handle.writestr("../escaped.txt", "should never be written")
    with pytest.raises(DownloadError, match="outside"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "dest" / "ok.txt").exists()  # nothing half-extracted


def _kauh_files(directory: Path) -> dict[str, int]:
    """A few recordings named like KAUH's, with their OPERA labels (1 = obstructive)."""
    names = {
        "BP1_Asthma,I E W,P L L,70,M.wav": 1,
        "EP2_N,N,P R U,25,F.wav": 0,
        "DP3_COPD,E W,A R M,56,M.wav": 1,
        "BP4_heart failure,Crep,P R L,60,M.wav": None,
    }
    for number, name in enumerate(names):
        write_wav(directory / name, tone(1.0, 4000, 200 + 50 * number, seed=number), 4000)
    return names


def test_download_corpus_from_loopback_then_build(tmp_path):
    staging = tmp_path / "staging"
    names = _kauh_files(staging)
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "kauh.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in names:
            handle.write(staging / name, name)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    data_root = tmp_path / "data"
    with loopback_server(served) as (url, server):
        source = CorpusSource(
            "kauh", "open", (RemoteFile(f"{url}/kauh.zip", "kauh.zip", digest, extract_to="AudioFiles"),)
        )
        report = download_corpus(source, data_root, progress=False)
        again = download_corpus(source, data_root, progress=False)
    assert report.ok and not report.unverified and again.ok
    assert len(server.requests) == 1  # the second call found the unpacked corpus and fetched nothing
    assert sorted(p.name for p in (data_root / "kauh" / "AudioFiles").glob("*.wav")) == sorted(names)

    from resp_audio_hf.data.corpora import scan_corpus

    table = scan_corpus("kauh", data_root=data_root)
    groups = dict(zip(table.records["file"], table.records["opera_group"]))
    assert groups["EP2_N,N,P R U,25,F.wav"] == "healthy"
    assert groups["BP1_Asthma,I E W,P L L,70,M.wav"] == "asthma"
    assert groups["DP3_COPD,E W,A R M,56,M.wav"] == "COPD"
    assert pd.isna(groups["BP4_heart failure,Crep,P R L,60,M.wav"])  # other diagnoses: no OPERA group
    dataset = table.to_dataset_dict()["all"]
    decoded = dataset[0]["audio"].get_all_samples()
    assert decoded.sample_rate == 4000 and decoded.data.shape[-1] == 4000


def test_download_corpus_reports_failed_file_and_keeps_the_rest(tmp_path):
    served = tmp_path / "served"
    (served / "src").mkdir(parents=True)
    write_wav(served / "src" / "H002_L1.wav", tone(0.5, 4000), 4000)
    with tarfile.open(served / "part1.tar.gz", "w:gz") as handle:
        handle.add(served / "src" / "H002_L1.wav", "RespiratoryDatabase@TR/H002_L1.wav")
    with loopback_server(served) as (url, _):
        source = CorpusSource(
            "respiratory_tr",
            "open",
            (
                RemoteFile(f"{url}/part1.tar.gz", "part1.tar.gz"),
                RemoteFile(f"{url}/part2.tar.gz", "part2.tar.gz"),
            ),
        )
        report = download_corpus(source, tmp_path / "data", progress=False, backoff=0)
    assert not report.ok and list(report.failed) == [f"{url}/part2.tar.gz"]
    # Unpinned files are reported as unverified with their digest, and the arrived part is usable.
    assert set(report.unverified) == {"part1.tar.gz"}
    assert (tmp_path / "data" / "respiratory_tr" / "RespiratoryDatabase@TR" / "H002_L1.wav").exists()
    assert "part2.tar.gz" in report.summary()


@pytest.mark.parametrize(
    "corpus, hint",
    [
        ("mmlung", "mtm1g19@soton.ac.uk"),
        ("ssbpr", "xiaoli1996/SSBPR"),
        ("covid19_sounds", "covid-19-sounds.org"),
        ("nosemic", "Google Drive"),
    ],
)
def test_request_only_and_manual_corpora_explain_how_to_get_them(tmp_path, corpus, hint):
    with pytest.raises(CorpusAccessError) as info:
        download_corpus(corpus, tmp_path)
    assert hint in str(info.value) and str(tmp_path) in str(info.value)


def test_coswara_split_tarballs_are_joined_and_unpacked(tmp_path):
    member = write_wav(tmp_path / "src" / "20200424" / "abc123" / "cough-shallow.wav", tone(0.5, 4000), 4000)
    blob = tmp_path / "whole.tar.gz"
    with tarfile.open(blob, "w:gz") as handle:
        handle.add(member, "20200424/abc123/cough-shallow.wav")
    data = blob.read_bytes()
    corpus = tmp_path / "coswara"
    (corpus / "Coswara-Data-master" / "20200424").mkdir(parents=True)
    half = len(data) // 2
    (corpus / "Coswara-Data-master" / "20200424" / "20200424.tar.gz.aa").write_bytes(data[:half])
    (corpus / "Coswara-Data-master" / "20200424" / "20200424.tar.gz.ab").write_bytes(data[half:])
    _coswara_join_parts(corpus)
    assert (
        corpus / "Extracted_data" / "20200424" / "abc123" / "cough-shallow.wav"
    ).read_bytes() == member.read_bytes()


def test_opera_files_come_through_pooch_as_the_pinned_bytes(tmp_path, monkeypatch):
    """Every pinned file in ../shared/data/opera, served from 127.0.0.1, arrives through pooch byte-identical to the
    shared copy and to the registry's SHA-256, with the mode the umask gives and no temporary file left; a second
    OperaFiles on the same cache sends no request."""
    import pooch

    shared = shared_path("opera")
    relpaths = [relpath for relpath in OPERA_FILES if (shared / relpath).is_file()]
    assert len(relpaths) >= 10
    served, cache = tmp_path / "served", tmp_path / "cache"
    for relpath in relpaths:
        (served / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / relpath, served / relpath)
    retrieved = []
    retrieve = pooch.retrieve
    monkeypatch.setattr(pooch, "retrieve", lambda url, *a, **k: retrieved.append(url) or retrieve(url, *a, **k))
    previous = os.umask(0o027)
    try:
        with loopback_server(served) as (url, server):
            fetched = {r: OperaFiles(cache_dir=cache, offline=False, base_url=url).path(r) for r in relpaths}
            again = {r: OperaFiles(cache_dir=cache, offline=False, base_url=url).path(r) for r in relpaths}
    finally:
        os.umask(previous)
    assert retrieved == [f"{url}/{relpath}" for relpath in relpaths]
    assert sorted(name for name, _ in server.requests) == sorted(relpaths)
    for relpath, path in fetched.items():
        assert path == again[relpath] == cache / relpath
        assert path.read_bytes() == (shared / relpath).read_bytes()
        assert hashlib.sha256(path.read_bytes()).hexdigest() == OPERA_FILES[relpath]
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == sorted(fetched.values())


def test_opera_file_with_other_bytes_is_refused_naming_url_and_file_and_nothing_is_kept(tmp_path):
    relpath = "feature/kauh_eval/labels_both.npy"
    served, cache = tmp_path / "served", tmp_path / "cache"
    (served / relpath).parent.mkdir(parents=True)
    (served / relpath).write_bytes(b"not OPERA's bytes")
    with loopback_server(served) as (url, _), pytest.raises(OperaFileError) as info:
        OperaFiles(cache_dir=cache, offline=False, base_url=url).path(relpath)
    message = str(info.value)
    assert f"{url}/{relpath}" in message and str(cache / relpath) in message
    assert OPERA_FILES[relpath] in message and hashlib.sha256(b"not OPERA's bytes").hexdigest() in message
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_opera_file_missing_on_the_server_is_reported_with_status_and_url(tmp_path):
    relpath = "feature/copd_eval/labels.npy"
    (tmp_path / "served").mkdir()
    with loopback_server(tmp_path / "served") as (url, _), pytest.raises(OperaFileError, match="404") as info:
        OperaFiles(cache_dir=tmp_path / "cache", offline=False, base_url=url).path(relpath)
    assert f"{url}/{relpath}" in str(info.value) and "--opera-dir" in str(info.value)
    assert not (tmp_path / "cache" / relpath).exists()


def test_fetch_file_offline_sends_no_request_but_returns_a_valid_copy(tmp_path, monkeypatch):
    data = b"pinned bytes"
    digest = hashlib.sha256(data).hexdigest()
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "a.txt").write_bytes(data)
    monkeypatch.setenv("RESP_AUDIO_HF_OFFLINE", "1")
    with loopback_server(tmp_path / "served") as (url, server):
        with pytest.raises(DownloadError, match="downloads are disabled \\(RESP_AUDIO_HF_OFFLINE\\)") as info:
            fetch_file(f"{url}/a.txt", tmp_path / "dest" / "a.txt", digest)
        assert str(tmp_path / "dest" / "a.txt") in str(info.value) and server.requests == []
        assert fetch_file(f"{url}/a.txt", tmp_path / "dest" / "a.txt", digest, offline=False).read_bytes() == data
        assert fetch_file(f"{url}/a.txt", tmp_path / "dest" / "a.txt", digest).read_bytes() == data
    assert len(server.requests) == 1


def test_fetch_file_fails_at_once_when_the_host_name_does_not_resolve(tmp_path, monkeypatch, caplog):
    lookups = []

    def fail(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with caplog.at_level(logging.INFO), pytest.raises(DownloadError, match="cannot resolve 'example.invalid'") as info:
        fetch_file("https://example.invalid/a.txt", tmp_path / "a.txt", "0" * 64)
    assert lookups == ["example.invalid"] and "Not retrying" in str(info.value)
    assert str(tmp_path / "a.txt") in str(info.value) and not list(tmp_path.iterdir())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or "retry" in r.getMessage().lower()]


def test_opera_files_reject_tampered_copies_and_explain_offline_misses(tmp_path):
    relpath = "feature/kauh_eval/labels_both.npy"
    tampered = tmp_path / "opera" / relpath
    tampered.parent.mkdir(parents=True)
    tampered.write_bytes(b"\x93NUMPY tampered")
    with pytest.raises(OperaFileError, match="does not match"):
        OperaFiles(local_dirs=(tmp_path / "opera",), cache_dir=tmp_path / "cache", offline=True).path(relpath)
    with pytest.raises(OperaFileError, match="not available offline") as info:
        OperaFiles(cache_dir=tmp_path / "cache", offline=True).path("feature/copd_eval/labels.npy")
    assert "--opera-dir" in str(info.value)
    with pytest.raises(OperaFileError, match="not one of the pinned"):
        OperaFiles(offline=True).path("feature/unknown.npy")


def test_offline_default_follows_hf_hub_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert OperaFiles(cache_dir=tmp_path).offline is True
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("RESP_AUDIO_HF_OFFLINE", raising=False)
    assert OperaFiles(cache_dir=tmp_path).offline is False
