"""Locating adventitious sounds in SPRSound (results/sprsound_event_detection.py, resp_audio_hf.event_detection): the
recordings' event table against the raw annotation files, windows -> events on hand-made cases, sed_eval's scores of
known detections, and a small end-to-end run on real recordings."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import numpy as np
import pytest
import soundfile
from _data_helpers import shared_path
from _paths import REPO_ROOT

from resp_audio_hf.event_detection import (
    WindowClipDataset,
    detect_events,
    full_window_starts,
    overlap_recall,
    sed_eval_scores,
    window_labels,
)


def test_event_table_matches_the_raw_annotation_files():
    from resp_audio_hf.data.corpora import scan_corpus
    from resp_audio_hf.data.corpora.sprsound_challenge import recording_events_table

    root = shared_path("sprsound")
    table = recording_events_table(scan_corpus("sprsound", root, verify_audio=False).records)
    # Independently: every annotation file, its part from its folder, its events with a positive length that start
    # before the end of the recording (the rules the tasks apply), cut at the end.
    expected_types, expected_records, expected_events = Counter(), Counter(), {}
    for part in ("inter", "intra"):
        for path in sorted((root / "test_json" / f"{part}_test_json").glob("*.json")):
            annotation = json.loads(path.read_text())
            expected_records[(f"test_{part}", annotation["record_annotation"])] += 1
            info = soundfile.info(str(root / "test_wav" / f"{path.stem}.wav"))
            duration = info.frames / info.samplerate
            kept = []
            for event in annotation["event_annotation"]:
                start, end = int(event["start"]) / 1000, int(event["end"]) / 1000
                if end > start and start < duration:
                    kept.append((start, min(end, duration), event["type"]))
                    expected_types[(f"test_{part}", event["type"])] += 1
            expected_events[f"{path.stem}.wav"] = kept
    assert Counter(zip(table["split"], table["record_label"])) == expected_records
    assert Counter((s, t) for s, events in zip(table["split"], table["events"]) for _, _, t in events) == expected_types
    assert {name: list(events) for name, events in zip(table["file"], table["events"])} == expected_events
    assert sum(t != "Normal" for _, t in expected_types) > 0 and expected_types[("test_inter", "Wheeze")] > 100


def test_full_windows_and_window_labels():
    assert full_window_starts(100, 40, 20) == [0, 20, 40, 60]
    assert full_window_starts(110, 40, 20) == [0, 20, 40, 60]  # the window at 80 would pass the end
    assert full_window_starts(30, 40, 20) == [0]  # shorter than one window: one (short) window
    starts = np.array([1.0, 1.25, 2.2, 2.5, 2.6])
    # A 0.3 s event makes a 1 s window positive from 0.15 s of overlap; a long event from 0.5 s.
    assert window_labels(starts, 1.0, [(2.0, 2.3)]).tolist() == [False, True, False, False, False]
    assert window_labels(starts, 1.0, [(2.0, 3.0)]).tolist() == [False, False, True, True, False]
    assert window_labels(starts, 1.0, [(2.0, 2.3), (2.0, 3.0)]).tolist() == [False, True, True, True, False]
    assert window_labels(starts, 1.0, []).tolist() == [False] * 5


def test_windows_merge_into_events():
    starts = np.arange(9) * 0.25  # 1 s windows every 0.25 s over 3 s: window k speaks for [k/4 + 0.375, k/4 + 0.625)
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.4, 0.7, 0.1, 0.0])

    def detect(threshold=0.5, gap=0.0, minimum=0.0, values=scores):
        return detect_events(starts, values, 3.0, 1.0, 0.25, threshold, gap, minimum)

    assert detect() == [(1.125, 1.625), (1.875, 2.125)]
    assert detect(gap=0.25) == [(1.125, 2.125)]  # the 0.25 s gap is filled
    assert detect(minimum=0.3) == [(1.125, 1.625)]  # the 0.25 s event is dropped
    assert detect(threshold=0.35) == [(1.125, 2.125)]  # touching spans are one event
    assert detect(threshold=0.95) == []
    edges = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1.0])
    assert detect(values=edges) == [(0.0, 0.625), (2.375, 3.0)]  # the first from 0, the last to the end


def test_sed_eval_scores_of_known_detections():
    pytest.importorskip("sed_eval")
    reference = {"a.wav": [(1.0, 2.0), (5.0, 6.0)], "b.wav": []}
    durations = {"a.wav": 8.0, "b.wav": 8.0}
    perfect = sed_eval_scores(reference, reference, durations, collar_seconds=0.2)
    assert perfect["event"]["f1"] == pytest.approx(1.0) and perfect["segment"]["f1"] == pytest.approx(1.0)
    assert perfect["event"]["reference"] == 2 and perfect["segment"]["reference"] == 2

    near = {"a.wav": [(1.1, 2.1), (5.1, 6.1)]}
    assert sed_eval_scores(reference, near, durations, collar_seconds=0.2)["event"]["f1"] == pytest.approx(1.0)
    far = {"a.wav": [(1.3, 2.3), (5.3, 6.3)]}
    assert sed_eval_scores(reference, far, durations, collar_seconds=0.2)["event"]["f1"] == pytest.approx(0.0)
    assert sed_eval_scores(reference, far, durations, collar_seconds=0.5)["event"]["f1"] == pytest.approx(1.0)
    half = {"a.wav": [(1.1, 2.1), (5.3, 6.3)], "b.wav": [(3.0, 3.5)]}  # 1 hit, 2 false, 1 missed
    scores = sed_eval_scores(reference, half, durations, collar_seconds=0.2)["event"]
    assert (scores["precision"], scores["recall"], scores["f1"]) == pytest.approx((1 / 3, 1 / 2, 0.4))
    # Segments of 1 s: (1.0, 2.0) is active in segment 1; (1.3, 2.3) in segments 1 and 2.
    segment = sed_eval_scores({"a.wav": [(1.0, 2.0)]}, {"a.wav": [(1.3, 2.3)]}, {"a.wav": 8.0})["segment"]
    assert (segment["precision"], segment["recall"], segment["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    # Offsets: within the larger of the collar and half the reference's length (0.5 s here).
    short = {"a.wav": [(1.0, 1.4), (5.0, 5.7)]}
    assert sed_eval_scores(reference, short, durations, evaluate_offset=True)["event"]["f1"] == pytest.approx(0.5)
    assert sed_eval_scores(reference, short, durations)["event"]["f1"] == pytest.approx(1.0)


def test_overlap_recall_by_type():
    reference = {"a.wav": [(1.0, 2.0, "Wheeze"), (5.0, 5.5, "Fine Crackle")], "b.wav": [(0.0, 1.0, "Wheeze")]}
    found = {"a.wav": [(1.9, 3.0), (5.5, 6.0)]}  # overlaps the wheeze; only touches the crackle
    assert overlap_recall(reference, found) == {
        "Fine Crackle": {"events": 1, "overlapped": 0, "recall": 0.0},
        "Wheeze": {"events": 2, "overlapped": 1, "recall": 0.5},
    }


def test_window_clips_are_cut_from_the_decoded_recording():
    from resp_audio_hf.data.audio import load_audio
    from resp_audio_hf.event_detection import recording_num_samples

    paths = sorted(shared_path("sprsound", "test_wav").glob("*.wav"))[:2]
    lengths = [recording_num_samples(p, 32000) for p in paths]
    dataset = WindowClipDataset(paths, lengths, 32000, 1.0, 0.5)
    whole = load_audio(paths[1], 32000)[0]
    assert whole.size == lengths[1]
    in_second = np.flatnonzero(dataset.recording == 1)
    assert in_second.size == 1 + (lengths[1] - 32000) // 16000
    item = dataset[int(in_second[3])]
    np.testing.assert_array_equal(item["audio"], whole[48000:80000])


def test_end_to_end_on_real_recordings(tmp_path):
    pytest.importorskip("sed_eval")
    pytest.importorskip("sklearn")
    root = shared_path("sprsound").parent
    spec = importlib.util.spec_from_file_location("sprsound_event_detection",
                                                  REPO_ROOT / "results" / "sprsound_event_detection.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output = tmp_path / "out"
    assert script.main(["--data-root", str(root), "--train-from-test", "--limit", "5", "--windows", "0.5/0.25",
                        "--cache-dir", str(tmp_path / "cache"), "--output", str(output)]) == 0
    report = json.loads(output.with_suffix(".json").read_text())
    assert report["smoke_run"] and report["recordings"] == {"train": 5, "validation": 5, "test_inter": 5}
    assert report["chosen"]["window_seconds"] == 0.5 and report["chosen"]["threshold"] in script.THRESHOLDS
    rows = report["test"]["test_inter"]
    # The three detectors are scored against the same reference events.
    assert len({row["event"]["reference"] for row in rows.values()}) == 1
    for row in rows.values():
        assert 0.0 <= row["segment_1s"]["f1"] <= 1.0
    assert "| test_inter | detector |" in output.with_suffix(".md").read_text()


def test_classifier_scores_are_the_adventitious_probability_of_each_window(tmp_path):
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    import resp_audio_hf  # noqa: F401  (registers the model types)
    from resp_audio_hf.data.audio import load_audio
    from resp_audio_hf.event_detection import recording_num_samples

    # A Task 1-1 shaped classifier: mn04 with a new two-class head (random weights: the plumbing is checked here),
    # single-label as training/finetune.py makes it, so its windows' scores are softmax probabilities.
    source = REPO_ROOT / "pretrained" / "efficientat-mn04-as"
    torch.manual_seed(0)
    model = AutoModelForAudioClassification.from_pretrained(
        source, num_labels=2, id2label={0: "Normal", 1: "Adventitious"}, label2id={"Normal": 0, "Adventitious": 1},
        problem_type="single_label_classification", ignore_mismatched_sizes=True).eval()  # as finetune.py sets it
    model.save_pretrained(tmp_path / "task11")
    AutoFeatureExtractor.from_pretrained(source).save_pretrained(tmp_path / "task11")
    spec = importlib.util.spec_from_file_location("sprsound_event_detection",
                                                  REPO_ROOT / "results" / "sprsound_event_detection.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    path = sorted(shared_path("sprsound", "test_wav").glob("*.wav"))[0]
    dataset = WindowClipDataset([path], [recording_num_samples(path, 32000)], 32000, 1.0, 1.0)
    args = type("Args", (), {"classifier": str(tmp_path / "task11"), "rate": 32000})()
    scores = script.classifier_scores(args, dataset)["fine-tuned"]
    audio = load_audio(path, 32000)[0]
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "task11")
    with torch.inference_mode():
        inputs = extractor([audio[32000:64000]], sampling_rate=32000, return_tensors="pt")
        expected = torch.softmax(model(**inputs).logits, dim=-1)[0, 1].item()
    assert scores.shape == (len(dataset),) and scores[1] == pytest.approx(expected, abs=1e-5)
    assert ((scores > 0) & (scores < 1)).all()
