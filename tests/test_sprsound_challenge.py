"""The SPRSound challenge's four tasks: tables counted against the annotation files read here independently (the test
part in ../shared/data, the whole corpus where /work/data/ext/SPRSound is present), the annotation checks on a
synthetic corpus with every kind of disagreement, events cut by RespAudioCollator, and the MFCC baseline on real
clips."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import shared_path, tone, write_wav

from resp_audio_hf.data.tasks import load_task, resolve_task_ids

FULL_CORPUS_ROOT = Path("/work/data/ext")  # holds SPRSound/ (train and test parts); GPL-3.0, never in the repository
TASKS = ("SPRSound-1-1", "SPRSound-1-2", "SPRSound-2-1", "SPRSound-2-2")

# The organisers' annotation string -> class id of each task, written out from their scripts/train.py
# (task_11_dict ... task_22_dict of SJTU-YONGFU-RESEARCH-GRP/SPRSound).
EVENT_TYPES = ("Normal", "Rhonchi", "Wheeze", "Stridor", "Coarse Crackle", "Fine Crackle", "Wheeze+Crackle")
ORGANISERS_IDS = {
    "SPRSound-1-1": {name: int(name != "Normal") for name in EVENT_TYPES},
    "SPRSound-1-2": {name: i for i, name in enumerate(EVENT_TYPES)},
    "SPRSound-2-1": {"Normal": 0, "Poor Quality": 1, "CAS": 2, "DAS": 2, "CAS & DAS": 2},
    "SPRSound-2-2": {"Normal": 0, "Poor Quality": 1, "CAS": 2, "DAS": 3, "CAS & DAS": 4},
}
PARTS = {"train_json": "train", "inter_test_json": "test_inter", "intra_test_json": "test_intra"}


def _json_counts(corpus: Path, task: str) -> Counter:
    """(official part, class id) -> items, counted from the JSON files alone."""
    counts = Counter()
    for folder, part in PARTS.items():
        for path in corpus.glob(f"**/{folder}/*.json"):
            annotation = json.loads(path.read_text(encoding="utf-8"))
            if task.startswith("SPRSound-1"):
                for event in annotation["event_annotation"]:
                    if int(event["end"]) > int(event["start"]):
                        counts[part, ORGANISERS_IDS[task][event["type"]]] += 1
            else:
                counts[part, ORGANISERS_IDS[task][annotation["record_annotation"]]] += 1
    return counts


def _table_counts(table) -> Counter:
    part = table["split"].replace({"validation": "train"})
    return Counter(zip(part, table["label"]))


def _check_against_json(data_root: Path, corpus: Path, expect_train: bool):
    validation_patients = []
    for task in TASKS:
        data = load_task(task, data_root, verify_audio=False)
        table = data.table
        assert _table_counts(table) == _json_counts(corpus, task), task
        assert data.test_splits == ("test_inter", "test_intra")
        assert set(table.columns) >= {"file", "audio", "label", "subject_id", "start_s", "end_s", "split"}
        if task.startswith("SPRSound-2"):
            assert table["start_s"].isna().all() and table["end_s"].isna().all()
        else:
            assert (table["end_s"] > table["start_s"]).all()
        if expect_train:
            assert data.split_mode == "official"
            train = table[table["split"] == "train"]
            validation = table[table["split"] == "validation"]
            assert not set(train["subject_id"]) & set(validation["subject_id"])
            held_out, kept = validation["subject_id"].nunique(), train["subject_id"].nunique()
            share = held_out / (held_out + kept)
            assert 0.15 < share < 0.25
            validation_patients.append(set(validation["subject_id"]))
        else:
            assert data.split_mode == "test-only" and set(table["split"]) == {"test_inter", "test_intra"}
            assert any("test-only" in note for note in data.report.notes)
    # One draw of validation patients for the four tasks (the event tasks lack the eventless Poor Quality records).
    if expect_train:
        assert validation_patients[2] == validation_patients[3]
        assert validation_patients[0] == validation_patients[1] <= validation_patients[2]


def test_tables_match_the_json_files_of_the_test_part():
    root = shared_path("sprsound")
    _check_against_json(root.parent, root, expect_train=False)


def test_tables_match_the_json_files_of_the_full_corpus():
    corpus = FULL_CORPUS_ROOT / "SPRSound"
    if not (corpus / "train_json").is_dir():
        pytest.skip(f"the full SPRSound corpus is not at {corpus}")
    _check_against_json(FULL_CORPUS_ROOT, corpus, expect_train=True)


def test_events_are_the_annotated_milliseconds_in_seconds():
    root = shared_path("sprsound")
    table = load_task("SPRSound-1-2", root.parent, verify_audio=False).table
    name = "41004529_5.2_1_p2_1368"
    annotation = json.loads(next(root.glob(f"test_json/*/{name}.json")).read_text(encoding="utf-8"))
    rows = table[table["file"].str.startswith(f"{name}.wav#")]
    assert rows["file"].tolist() == [f"{name}.wav#{n}" for n in range(len(annotation["event_annotation"]))]
    for row, event in zip(rows.itertuples(), annotation["event_annotation"]):
        assert (row.start_s, row.end_s) == (int(event["start"]) / 1000, int(event["end"]) / 1000)
        assert row.label == EVENT_TYPES.index(event["type"])


def test_registry_names_the_four_tasks():
    assert resolve_task_ids("sprsound-challenge") == list(TASKS)
    assert resolve_task_ids("sprsound-12, SPRSound-2-2") == ["SPRSound-1-2", "SPRSound-2-2"]
    assert not set(TASKS) & set(resolve_task_ids("all"))


# ---------------------------------------------------------------------------------------------- annotation checks


def _write_record(root: Path, part: str, name: str, label: str, events: list, seconds: float = 2.0):
    audio_folder = "train_wav" if part == "train_json" else "test_wav"
    json_folder = root / ("train_json" if part == "train_json" else f"test_json/{part}")
    write_wav(root / audio_folder / f"{name}.wav", tone(seconds, 8000, seed=len(name)), 8000)
    json_folder.mkdir(parents=True, exist_ok=True)
    (json_folder / f"{name}.json").write_text(
        json.dumps({"record_annotation": label, "event_annotation": events}), encoding="utf-8"
    )


def _event(start, end, kind="Normal"):
    return {"start": str(start), "end": str(end), "type": kind}


@pytest.fixture
def odd_corpus(tmp_path):
    root = tmp_path / "SPRSound"
    for patient in range(10):  # ordinary training patients, one CAS record each fifth
        label, kind = ("CAS", "Wheeze") if patient % 5 == 0 else ("Normal", "Normal")
        _write_record(root, "train_json", f"{100 + patient}_5.0_0_p1_{patient}", label, [_event(100, 900, kind)])
    odd = [
        {"start": "100", "type": "Normal"},  # #0 no end: malformed
        _event("abc", 900),  # #1 not a number: malformed
        _event(200, 600, "Squeak"),  # #2 unknown type
        _event(700, 700),  # #3 zero length
        _event(2500, 2600),  # #4 starts after the 2 s recording
        _event(1500, 2400, "Wheeze"),  # #5 ends after it: cut at 2.0 s
        _event(1000, 1600, "Fine Crackle"),  # #6 overlaps #5, listed out of order
    ]
    _write_record(root, "train_json", "200_5.0_0_p1_20", "Normal", odd)  # a Normal record with adventitious events
    _write_record(root, "train_json", "201_5.0_0_p1_21", "Poor Quality", [])
    _write_record(root, "inter_test_json", "300_5.0_0_p1_30", "DAS", [_event(0, 500, "Coarse Crackle")])
    _write_record(root, "intra_test_json", "100_5.0_0_p1_40", "Normal", [_event(0, 500)])
    return tmp_path


def test_every_disagreement_is_counted_and_handled(odd_corpus):
    from resp_audio_hf.data.corpora import scan_corpus
    from resp_audio_hf.data.corpora.sprsound_challenge import CHECK_KEYS, annotation_checks

    checks = annotation_checks(scan_corpus("sprsound", odd_corpus / "SPRSound", verify_audio=False).records)
    assert list(checks) == list(CHECK_KEYS)
    expected = {
        "recordings": 14,
        "events listed": 10 + 7 + 2,
        "events used": 10 + 2 + 2,
        "events malformed (no start/end/type, or times that are not numbers): left out": 2,
        "events of a type outside the seven: left out": 1,
        "events with end <= start (zero or negative length): left out": 1,
        "events starting at or after the end of their recording: left out": 1,
        "events ending after the end of their recording: cut at the end": 1,
        # Among the readable events #2-#6, only #5 (1500-2400 ms) and #6 (1000-1600 ms) overlap.
        "overlapping event pairs: both kept": 1,
        "recordings whose events are listed out of time order: kept": 1,
        "Normal records whose events disagree with the record label: kept": 1,
        "Poor Quality records without events": 1,
    }
    assert {key: value for key, value in checks.items() if value} == expected

    data = load_task("SPRSound-1-2", odd_corpus, verify_audio=False)
    odd_rows = data.table[data.table["file"].str.startswith("200_")]
    assert odd_rows["file"].tolist() == ["200_5.0_0_p1_20.wav#5", "200_5.0_0_p1_20.wav#6"]
    assert odd_rows["end_s"].tolist() == [2.0, 1.6] and odd_rows["label"].tolist() == [2, 5]
    excluded = {reason: sorted(items) for reason, items in data.report.excluded.items()}
    assert excluded == {
        "events malformed (no start/end/type, or times that are not numbers): left out": [
            "200_5.0_0_p1_20.wav#0: no end",
            "200_5.0_0_p1_20.wav#1: start/end 'abc'/'900' are not numbers",
        ],
        "events of a type outside the seven: left out": ["200_5.0_0_p1_20.wav#2 ('Squeak')"],
        "events with end <= start (zero or negative length): left out": ["200_5.0_0_p1_20.wav#3"],
        "events starting at or after the end of their recording: left out": ["200_5.0_0_p1_20.wav#4"],
    }
    assert any(note.startswith("annotation checks: ") for note in data.report.notes)
    records = load_task("SPRSound-2-1", odd_corpus, verify_audio=False).table
    # Adventitious: the CAS records of patients 100 and 105, and the DAS test record.
    assert len(records) == 14 and Counter(records["label"]) == {0: 10, 1: 1, 2: 3}


def test_dataset_dict_has_the_official_class_names(odd_corpus):
    import datasets

    from resp_audio_hf.data.corpora.sprsound_challenge import load_challenge_dataset

    splits, data = load_challenge_dataset("2-2", odd_corpus, verify_audio=False)
    assert set(splits) == {"train", "validation", "test_inter", "test_intra"}
    feature = splits["test_inter"].features["label"]
    assert isinstance(feature, datasets.ClassLabel)
    assert feature.names == ["Normal", "Poor Quality", "CAS", "DAS", "CAS & DAS"]
    assert splits["test_inter"]["label"] == [3] and splits["test_inter"]["start_s"] == [None]
    events, _ = load_challenge_dataset("SPRSound-1-2", odd_corpus, verify_audio=False)
    assert events["test_inter"].features["label"].names[6] == "Wheeze+Crackle"
    assert events["test_inter"]["start_s"] == [0.0] and events["test_inter"]["end_s"] == [0.5]


# ---------------------------------------------------------------------------------------------- events in the collator


def test_collator_cuts_events_out_of_files_and_arrays(tmp_path):
    from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor
    from resp_audio_hf.collation import RespAudioCollator
    from resp_audio_hf.data.audio import load_audio

    extractor = RespAudioFeatureExtractor.from_model_config(RespAudioConfig.from_preset("tiny-m2d"))
    rate = extractor.sampling_rate
    path = write_wav(tmp_path / "x.wav", tone(3.0, rate, frequency=300.0), rate)
    collator = RespAudioCollator(extractor)
    whole, _ = load_audio(path, rate)
    cut = collator([{"audio": str(path), "start_s": 0.5, "end_s": 1.75, "label": 1}])
    reference = extractor([whole[int(0.5 * rate) : int(1.75 * rate)]], sampling_rate=rate, return_tensors="pt")
    assert cut["input_values"].shape == reference["input_values"].shape
    assert np.allclose(cut["input_values"].numpy(), reference["input_values"].numpy(), atol=1e-4)
    from_array = collator([{"audio": {"array": whole, "sampling_rate": rate}, "start_s": 0.5, "end_s": 1.75}])
    assert np.allclose(from_array["input_values"].numpy(), reference["input_values"].numpy(), atol=1e-5)
    full = collator([{"audio": str(path), "start_s": None, "end_s": None}])
    assert full["input_values"].shape[1] > cut["input_values"].shape[1]
    with pytest.raises(ValueError, match="not after its start"):
        collator([{"audio": str(path), "start_s": 1.0, "end_s": 1.0}])


# ---------------------------------------------------------------------------------------------- the MFCC baseline


def test_mfcc_means_are_librosas():
    librosa = pytest.importorskip("librosa")
    import soundfile

    from resp_audio_hf.benchmark.sprsound_baseline import mfcc_mean

    path = shared_path("sprsound", "test_wav", "41004529_5.2_1_p2_1368.wav")
    samples, rate = soundfile.read(path, dtype="int16")
    samples = samples.astype(np.float64)
    for clip in (samples, samples[1000:2008]):  # a recording, and an event shorter than the reflect padding
        expected = librosa.feature.mfcc(y=clip, sr=rate, n_mfcc=40, pad_mode="reflect").mean(axis=1)
        assert np.allclose(mfcc_mean(clip, rate), expected, rtol=1e-4, atol=1e-3)


def test_baseline_runs_end_to_end_on_real_clips():
    from resp_audio_hf.benchmark.sprsound_baseline import clip_features, fit_and_score
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task

    root = shared_path("sprsound")
    table = load_task("SPRSound-1-2", root.parent, verify_audio=False).available
    # Stand-in splits from the test part: intra patients train and validate, inter events are scored.
    intra = table[table["split"] == "test_intra"]
    normal, adventitious = intra[intra["label"] == 0], intra[intra["label"].isin([2, 5])]
    inter = table[table["split"] == "test_inter"]
    parts = [
        (normal.iloc[:12], "train"), (adventitious.iloc[:12], "train"),
        (normal.iloc[12:18], "validation"), (adventitious.iloc[12:18], "validation"),
        (inter[inter["label"] == 0].iloc[:5], "test_inter"), (inter[inter["label"] == 2].iloc[:5], "test_inter"),
    ]
    sample = __import__("pandas").concat([part.assign(split=name) for part, name in parts], ignore_index=True)
    features = clip_features(sample)
    assert features.shape == (len(sample), 40) and np.isfinite(features).all()
    result = fit_and_score(challenge_task("1-2"), sample, features, c_grid=(1.0, 2.0))
    assert result["chosen_c"] in (1.0, 2.0) and result["counts"] == {"train": 24, "validation": 12, "test_inter": 10}
    inter_result = result["test"]["test_inter"]
    assert set(inter_result["predictions"]) == set(sample.loc[sample["split"] == "test_inter", "file"])
    assert set(inter_result["predictions"].values()) <= {"Normal", "Wheeze", "Fine Crackle"}  # classes it trained on
    assert 0.0 <= inter_result["scores"]["score"] <= 1.0 and "test_intra" not in result["test"]
