"""Bad recordings and no network: ``bench`` names every unusable recording with its reason and scores the rest;
downloads fail at once, with where to put the file, when offline or when host names do not resolve.

The hostile corpus is made of real SPRSound recordings (../shared/data) copied and then damaged in tmp_path.
"""

import json
import logging
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile
from _data_helpers import loopback_server, shared_path
from _paths import MN04_DIR

from resp_audio_hf.benchmark.arguments import BenchmarkArguments
from resp_audio_hf.benchmark.report import write_reports
from resp_audio_hf.benchmark.runner import run_benchmark
from resp_audio_hf.data.download import DownloadError, download_file
from resp_audio_hf.data.opera_files import OperaFileError, OperaFiles
from resp_audio_hf.data.tasks import load_task
from resp_audio_hf.extraction import AudioEncoder

HOSTILE = ("nan", "inf", "silent", "header_only", "cut", "deleted", "directory", "same_twin", "other_twin")


def _annotation(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def hostile_sprsound(tmp_path_factory):
    """Every 8th SPRSound test recording with its annotation, nine of them damaged (see ``HOSTILE``).

    Returns ``(data_root, {kind: wav path}, {stem: annotation})``.
    """
    source = shared_path("sprsound")
    data_root = tmp_path_factory.mktemp("hostile")
    corpus = data_root / "sprsound"
    annotations = {p.stem: p for p in (source / "test_json").rglob("*.json")}
    chosen = sorted((source / "test_wav").glob("*.wav"))[::8]
    labels = {}
    for wav in chosen:
        json_path = annotations[wav.stem]
        (corpus / "test_json" / json_path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(json_path, corpus / "test_json" / json_path.parent.name / json_path.name)
        (corpus / "test_wav").mkdir(parents=True, exist_ok=True)
        shutil.copy(wav, corpus / "test_wav" / wav.name)
        labels[wav.stem] = _annotation(json_path)
    # Recordings that would be used (not Poor Quality) with at least two events whose segments are over 50 ms.
    candidates = [
        corpus / "test_wav" / f"{stem}.wav"
        for stem, a in labels.items()
        if a["record_annotation"] != "Poor Quality"
        and len(a["event_annotation"]) >= 2
        and all(int(e["end"]) - int(e["start"]) > 50 for e in a["event_annotation"])
    ]
    files = dict(zip(HOSTILE, candidates))
    audio, rate = soundfile.read(files["nan"], dtype="float32")
    soundfile.write(files["nan"], np.full_like(audio, np.nan), rate, subtype="FLOAT")
    audio, rate = soundfile.read(files["inf"], dtype="float32")
    audio[::200] = np.inf  # one every 25 ms: in every event segment
    soundfile.write(files["inf"], audio, rate, subtype="FLOAT")
    audio, rate = soundfile.read(files["silent"], dtype="float32")
    soundfile.write(files["silent"], np.zeros_like(audio), rate, subtype="PCM_16")
    files["header_only"].write_bytes(files["header_only"].read_bytes()[:44])
    files["cut"].write_bytes(files["cut"].read_bytes()[: 44 + 2 * rate // 2])  # header + the first 0.5 s
    files["deleted"].unlink()
    files["directory"].unlink()
    files["directory"].mkdir()
    # Second copies inside the official layout (train_wav/; folders outside it, such as the release's example/,
    # are not read).
    (corpus / "train_wav").mkdir()
    shutil.copy(files["same_twin"], corpus / "train_wav" / files["same_twin"].name)
    shutil.copy(files["nan"], corpus / "train_wav" / files["other_twin"].name)  # same name, other bytes
    return data_root, files, labels


@pytest.fixture(scope="module")
def bench_results(hostile_sprsound, tmp_path_factory):
    data_root, _, _ = hostile_sprsound
    encoder = AudioEncoder.from_preset("tiny-m2d", seed=0)
    logger = logging.getLogger("resp_audio_hf")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.WARNING)
    logger.addHandler(handler)
    try:
        arguments = BenchmarkArguments(
            preset="tiny-m2d",
            tasks="S1,S2",
            data_root=data_root,
            max_duration=2.0,
            cache_dir=tmp_path_factory.mktemp("cache"),
            epochs=4,
            seeds="0",
            quiet=True,
        )
        result = run_benchmark(encoder, arguments)
    finally:
        logger.removeHandler(handler)
    output = tmp_path_factory.mktemp("out")
    write_reports(result, output)
    return json.loads((output / "results.json").read_text()), records, (output / "results.md").read_text()


def _reasons(entries: list[dict]) -> dict[str, list[str]]:
    by_path: dict[str, list[str]] = {}
    for entry in entries:
        by_path.setdefault(Path(entry["path"]).name, []).append(entry["reason"])
    return by_path


def test_record_task_names_every_unusable_recording_and_scores_the_rest(hostile_sprsound, bench_results):
    _, files, labels = hostile_sprsound
    results, records, markdown = bench_results
    assert results["failed"] == {} and set(results["tasks"]) == {"S1", "S2"}
    task = results["tasks"]["S1"]
    skipped = _reasons(task["skipped_recordings"])
    name = {kind: path.name for kind, path in files.items()}
    assert set(skipped) == {name[k] for k in HOSTILE if k not in ("cut", "same_twin")}
    assert all(len(reasons) == 1 for reasons in skipped.values())
    assert "non-finite" in skipped[name["nan"]][0] and "non-finite" in skipped[name["inf"]][0]
    assert "silent" in skipped[name["silent"]][0] and "Audio clip" not in skipped[name["silent"]][0]
    assert skipped[name["header_only"]] == ["audio stream has zero duration"]
    assert skipped[name["deleted"]][0].startswith("not found under")
    assert skipped[name["directory"]] == ["is a directory, not an audio file"]
    twin_reason = skipped[name["other_twin"]][0]
    assert twin_reason.startswith("present 2 times with different contents")
    assert str(files["other_twin"]) in twin_reason and "train_wav" in twin_reason

    # The rest is scored: every labelled recording of the selection once (the identical twin too), minus the skipped.
    usable = sum(a["record_annotation"] != "Poor Quality" for a in labels.values())
    assert task["counts"]["total"] == usable - len(skipped)
    assert 0.0 <= task["mean"] <= 1.0

    # Each one is in the log at WARNING with its path and reason, and the report points at the list.
    logged = [r.getMessage() for r in records if r.levelno == logging.WARNING and r.getMessage().startswith("S1: ")]
    for entry in task["skipped_recordings"]:
        assert any(entry["path"] in line and entry["reason"] in line for line in logged), entry
    assert f"S1: {len(skipped)} recording(s) skipped" in markdown


def test_event_task_skips_bad_segments_by_file_and_time(hostile_sprsound, bench_results):
    _, files, labels = hostile_sprsound
    results, records, _ = bench_results
    task = results["tasks"]["S2"]
    entries = task["skipped_recordings"]
    segments = {}
    for entry in entries:
        if "segment_s" in entry:
            segments.setdefault(Path(entry["path"]).name, []).append(entry)
    for kind in ("nan", "inf", "silent"):
        events = labels[files[kind].stem]["event_annotation"]
        assert sorted(e["segment_s"][0] for e in segments[files[kind].name]) == sorted(
            int(e["start"]) / 1000 for e in events
        )
    # The file cut after 0.5 s: exactly its events that start after the cut are skipped.
    events = labels[files["cut"].stem]["event_annotation"]
    late = sorted(int(e["start"]) / 1000 for e in events if int(e["start"]) / 1000 >= 0.5)
    assert sorted(e["segment_s"][0] for e in segments.get(files["cut"].name, [])) == late
    # FFmpeg refuses a segment after the end ("start_seconds is too high"); one that ends there decodes empty.
    assert all(
        "start_seconds is too high" in e["reason"] or "empty signal" in e["reason"]
        for e in segments.get(files["cut"].name, [])
    )
    assert set(segments) <= {files[k].name for k in ("nan", "inf", "silent", "cut")}
    whole = {Path(e["path"]).name for e in entries if "segment_s" not in e}
    assert whole == {files[k].name for k in ("header_only", "deleted", "directory", "other_twin")}
    table = load_task("S2", results["arguments"]["data_root"], verify_audio=True).available
    assert task["counts"]["total"] == len(table) - sum(len(v) for v in segments.values())
    logged = [r.getMessage() for r in records if r.getMessage().startswith("S2: skipped")]
    assert len(logged) == len(entries)


def test_a_task_failing_after_loading_keeps_its_error_and_skipped_recordings_in_results(
    hostile_sprsound, bench_results, tmp_path, monkeypatch
):
    """A task whose probe fails after extraction is in results.json's ``failed`` with the error and the same
    skipped recordings (from loading and from extraction) as the run where it succeeded."""
    from resp_audio_hf.benchmark import runner

    data_root, _, _ = hostile_sprsound

    def diverging_probe(*args, **kwargs):
        raise FloatingPointError("the probe diverged")

    monkeypatch.setattr(runner, "train_linear_probes", diverging_probe)
    arguments = BenchmarkArguments(
        preset="tiny-m2d", tasks="S1", data_root=data_root, max_duration=2.0, cache_dir=tmp_path / "cache", epochs=4,
        seeds="0", quiet=True,
    )
    result = run_benchmark(AudioEncoder.from_preset("tiny-m2d", seed=0), arguments)
    write_reports(result, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["tasks"] == {} and set(results["failed"]) == {"S1"}
    failed = results["failed"]["S1"]
    assert failed["error"] == "FloatingPointError: the probe diverged"
    scored = bench_results[0]["tasks"]["S1"]["skipped_recordings"]
    assert _reasons(failed["skipped_recordings"]) == _reasons(scored)
    assert any("non-finite" in entry["reason"] for entry in failed["skipped_recordings"])  # found while extracting
    markdown = (tmp_path / "out" / "results.md").read_text()
    assert (
        f"- S1 not scored: FloatingPointError: the probe diverged ({len(scored)} recording(s) skipped, each named "
        "with its reason under failed.S1.skipped_recordings in results.json)" in markdown
    )


def test_a_recording_present_twice_identically_is_used_once(hostile_sprsound):
    data_root, files, _ = hostile_sprsound
    task = load_task("S1", data_root, verify_audio=False)
    assert task.table["file"].tolist().count(files["same_twin"].name) == 1
    assert files["other_twin"].name not in task.table["file"].tolist()
    twin = files["other_twin"].name
    assert task.report.duplicates == {
        twin: [str(files["other_twin"]), str(data_root / "sprsound" / "train_wav" / twin)]
    }


def test_a_recording_looked_up_by_name_and_present_twice_is_named_as_such_not_missing(tmp_path):
    """T7 resolves OPERA's recording list by file name: a name found twice with different bytes is reported with both
    paths (not as missing), a name found twice with the same bytes is used once."""
    from resp_audio_hf.benchmark.runner import unusable_recordings

    wavs = sorted(shared_path("sprsound", "test_wav").glob("*.wav"))[:3]
    differing, identical = "104_1b1_Al_sc_Litt3200.wav", "104_1b1_Ar_sc_Litt3200.wav"  # COPD patient 104 (T7)
    for folder, source in (("first", wavs[0]), ("second", wavs[1])):
        (tmp_path / "icbhi" / folder).mkdir(parents=True)
        shutil.copy(source, tmp_path / "icbhi" / folder / differing)
        shutil.copy(wavs[2], tmp_path / "icbhi" / folder / identical)
    opera = OperaFiles(local_dirs=(shared_path("opera"),), offline=True)
    task = load_task("T7", tmp_path, opera=opera)
    assert task.available["file"].tolist() == [identical]
    assert task.available["audio"].tolist() == [str(tmp_path / "icbhi" / "first" / identical)]
    entries = {entry["path"]: entry["reason"] for entry in unusable_recordings(task.report)}
    assert entries[differing] == (
        f"present 2 times with different contents ({tmp_path / 'icbhi' / 'first' / differing}, "
        f"{tmp_path / 'icbhi' / 'second' / differing}); none is used"
    )
    others = {path: reason for path, reason in entries.items() if path != differing}
    assert len(others) == len(task.table) - 2 and all(r.startswith("not found under") for r in others.values())


# --------------------------------------------------------------------------------------------------
# No network
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def network_allowed(monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("RESP_AUDIO_HF_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def no_name_resolution(monkeypatch):
    """Every host name lookup fails the way it does on a machine without network; sleeps are recorded, not slept."""
    lookups, sleeps = [], []

    def fail(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    monkeypatch.setattr("resp_audio_hf.data.download.time.sleep", sleeps.append)
    return lookups, sleeps


class _OperaArrays:
    """OPERA's split arrays for a task, held in memory: the real ones are pinned by hash and not in ../shared."""

    def __init__(self, arrays: dict):
        self.arrays = arrays

    def load_npy(self, relpath: str):
        return np.asarray(self.arrays[relpath], dtype=object)


@pytest.mark.parametrize("lookup", ["stem", "relpath"])
def test_a_recording_looked_up_by_stem_or_path_and_present_twice_is_named_as_such_not_missing(tmp_path, lookup):
    """CoughVID (T5) resolves recordings by stem (uuid), Coswara (T8) by their last two path parts: a recording found
    twice with different bytes is reported once, as present twice with both paths, never as not found."""
    from resp_audio_hf.benchmark.runner import unusable_recordings

    wavs = sorted(shared_path("sprsound", "test_wav").glob("*.wav"))[:13]
    if lookup == "stem":
        task_id, corpus = "T5", tmp_path / "coughvid"
        names = [f"{i:08d}-uuid.wav" for i in range(3)]
        files = {name: [corpus / name] for name in names}
        twin = names[1]
        files[twin] = [corpus / "part1" / twin, corpus / "part2" / twin]
        prefix, keys = "feature/coughvid_eval/", "sound_dir_loc_covid.npy label_covid.npy split_covid.npy"
        arrays = [[f"/data/coughvid/{n}" for n in names], [0, 1, 0], ["train", "val", "test"]]
    else:
        task_id, corpus = "T8", tmp_path / "Coswara-Data"
        names = [f"202004{i:02d}/user{i}/cough-shallow.wav" for i in range(12)]
        files = {name: [corpus / name] for name in names}
        twin = names[1]
        files[twin] = [corpus / "again" / twin, corpus / "extracted" / twin]
        prefix = "feature/coswara_eval/"
        keys = "cough_aligned_filenames_smoker_w_cough-shallow.npy cough_aligned_smoker_label_cough-shallow.npy " \
            "google_smoker_cough_split.npy"
        splits = ["test" if i % 4 == 3 else "train" for i in range(12)]
        arrays = [[f"datasets/Coswara-Data/{n}" for n in names], [i % 2 for i in range(12)], splits]
    for number, paths in enumerate(files.values()):
        for copy, path in enumerate(paths):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(wavs[number + copy], path)  # the twin's second copy has other bytes
    opera = _OperaArrays({prefix + key: array for key, array in zip(keys.split(), arrays)})
    task = load_task(task_id, tmp_path, opera=opera)
    entries = unusable_recordings(task.report)
    assert [entry["path"] for entry in entries] == [twin]
    listed = ", ".join(str(p) for p in files[twin])
    assert entries[0]["reason"] == f"present 2 times with different contents ({listed}); none is used"
    assert sorted(task.available["file"]) == sorted(n for n in names if n != twin)
    assert "missing" not in task.report.summary() and "1 present more than once" in task.report.summary()


def test_hf_hub_offline_means_no_request_at_all(tmp_path, monkeypatch, caplog):
    import huggingface_hub

    served = tmp_path / "served"
    served.mkdir()
    (served / "blob.bin").write_bytes(b"x" * 1000)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as huggingface_hub reads it
    with loopback_server(served) as (url, server):
        with pytest.raises(DownloadError, match="downloads are disabled \\(HF_HUB_OFFLINE\\)") as info:
            download_file(f"{url}/blob.bin", tmp_path / "dest" / "blob.bin", progress=False)
        assert str(tmp_path / "dest" / "blob.bin") in str(info.value)
        assert server.requests == []
        # Asked explicitly, the same download works: only the mode stopped it.
        assert download_file(f"{url}/blob.bin", tmp_path / "dest" / "blob.bin", offline=False, progress=False).path
    # OPERA's files follow the same setting and say where a copy must go.
    with pytest.raises(OperaFileError, match="not available offline") as info:
        OperaFiles(local_dirs=(tmp_path / "opera",), cache_dir=tmp_path / "cache").path(
            "datasets/icbhi/ICBHI_Challenge_diagnosis.txt"
        )
    assert str(tmp_path / "opera" / "datasets/icbhi/ICBHI_Challenge_diagnosis.txt") in str(info.value)
    assert str(tmp_path / "cache" / "datasets/icbhi/ICBHI_Challenge_diagnosis.txt") in str(info.value)
    assert "--opera-dir" in str(info.value)


def test_unresolvable_host_fails_at_once_without_retries(tmp_path, network_allowed, no_name_resolution, caplog):
    lookups, sleeps = no_name_resolution
    with caplog.at_level(logging.INFO, logger="resp_audio_hf"):
        with pytest.raises(DownloadError, match="cannot resolve 'example.invalid'.*Not retrying") as info:
            download_file("https://example.invalid/a.bin", tmp_path / "a.bin", retries=3, progress=False)
    assert lookups == ["example.invalid"] and sleeps == []
    assert str(tmp_path / "a.bin") in str(info.value)
    assert not any("retrying" in r.getMessage() or "resuming" in r.getMessage() for r in caplog.records)


def test_t7_without_network_is_reported_unavailable_at_warning_level(
    tmp_path, monkeypatch, network_allowed, no_name_resolution, caplog
):
    lookups, sleeps = no_name_resolution
    monkeypatch.setenv("RESP_AUDIO_HF_CACHE", str(tmp_path / "cache"))
    (tmp_path / "data" / "icbhi").mkdir(parents=True)
    encoder = AudioEncoder.from_preset("tiny-m2d", seed=0)
    with caplog.at_level(logging.WARNING):
        result = run_benchmark(
            encoder, BenchmarkArguments(preset="tiny-m2d", tasks="T7", data_root=tmp_path / "data", quiet=True)
        )
    assert set(result.unavailable) == {"T7"} and len(lookups) == 1 and sleeps == []
    reason = result.unavailable["T7"]
    assert "cannot resolve 'raw.githubusercontent.com'" in reason and "--opera-dir" in reason
    assert "ICBHI_Challenge_diagnosis.txt" in reason
    assert any(r.levelno >= logging.WARNING and "T7 skipped" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("cut_bytes", [1, 3])
def test_a_wav_cut_mid_sample_is_salvaged_with_a_warning(tmp_path, caplog, cut_bytes):
    """A real recording cut inside its last sample frame (as a copy interrupted mid-write leaves it): FFmpeg refused it
    whole ("Could not push packet to decoder"); now its whole frames are decoded, as libsndfile reads them, with a
    warning naming the file."""
    from _audio_helpers import sprsound_records

    from resp_audio_hf.data.audio import load_audio

    original = sprsound_records()[0][0]
    info = soundfile.info(original)
    assert info.subtype == "PCM_16" and info.channels == 1
    cut = tmp_path / "cut.wav"
    cut.write_bytes(original.read_bytes()[:-cut_bytes])
    reference, rate = soundfile.read(cut, dtype="float32")  # libsndfile: the whole frames
    assert reference.shape[0] == info.frames - 1 - (cut_bytes > 2)
    with caplog.at_level(logging.WARNING, logger="resp_audio_hf.data.audio"):
        native, native_rate = load_audio(cut)
    assert native_rate == rate
    np.testing.assert_array_equal(native, reference)
    assert any(str(cut) in r.getMessage() and "inside a sample frame" in r.getMessage() for r in caplog.records)
    # Resampled exactly as a file holding only those frames is.
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, reference, rate, subtype="PCM_16")
    np.testing.assert_allclose(load_audio(cut, 16000)[0], load_audio(whole, 16000)[0], atol=1e-6)


def test_the_pipeline_salvages_a_wav_cut_mid_sample_as_load_audio_does(tmp_path, caplog):
    """The pipeline decodes file bytes itself (it ships as remote code): a recording cut inside its last sample frame
    gives the scores of the file holding its whole frames, with a warning naming it, instead of an error."""
    from _audio_helpers import sprsound_records
    from transformers import pipeline

    original = sprsound_records()[0][0]
    cut = tmp_path / "cut.wav"
    cut.write_bytes(original.read_bytes()[:-1])
    reference, rate = soundfile.read(cut, dtype="float32")
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, reference, rate, subtype="PCM_16")
    classifier = pipeline("audio-classification", model=str(MN04_DIR), top_k=3)
    with caplog.at_level(logging.WARNING):
        salvaged = classifier(str(cut))
    assert salvaged == classifier(str(whole))
    assert any(str(cut) in r.getMessage() and "inside a sample frame" in r.getMessage() for r in caplog.records)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x00" * 16 + b"data\x10\x00\x00\x00" + b"\xff" * 3)
    with pytest.raises(ValueError, match="junk.wav"):
        classifier(str(junk))


def test_other_undecodable_wavs_are_still_refused(tmp_path):
    from resp_audio_hf.data.audio import AudioDecodeError, load_audio

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + b"\x00" * 16 + b"data\x10\x00\x00\x00" + b"\xff" * 3)
    with pytest.raises(AudioDecodeError, match="junk.wav"):
        load_audio(junk)
