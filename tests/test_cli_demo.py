"""``resp-audio-hf demo``: the shipped AudioSet model labels the bundled real coughs and counts the coughs of a recording
assembled from them."""

import hashlib
import json

import numpy as np
import pytest

from resp_audio_hf.benchmark.demo import (
    DEMO_DATA,
    RESPIRATORY_LABELS,
    default_model_dir,
)
from resp_audio_hf.cli import main

BUNDLE = DEMO_DATA / "covid19-cough"


def test_bundled_coughs_are_a_credited_cc0_subset_of_at_most_5_mb():
    files = sorted((BUNDLE / "raw").glob("*.mp3"))
    listing = json.loads((BUNDLE / "metadata.json").read_text())
    assert len(files) == len(listing) == 96 and {f.name for f in files} == {e["filename"] for e in listing}
    assert sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file()) <= 5_000_000
    assert "CC0 1.0 Universal" in (BUNDLE / "LICENSE").read_text()
    assert "CC0" in (BUNDLE / "README.md").read_text()
    strata = {}
    for entry in listing:
        key = (entry["covid19"], entry["source"])
        strata[key] = strata.get(key, 0) + 1
    assert strata == {
        (True, "call-center"): 24,
        (True, "telegram"): 24,
        (False, "call-center"): 24,
        (False, "telegram"): 24,
    }


def test_bundled_coughs_are_unchanged_copies_of_the_shared_corpus(shared_data):
    corpus = shared_data / "covid19-cough"
    original = {e["filename"]: e for e in json.loads((corpus / "metadata.json").read_text())}
    for entry in json.loads((BUNDLE / "metadata.json").read_text()):
        assert entry == original[entry["filename"]]
        bundled = (BUNDLE / "raw" / entry["filename"]).read_bytes()
        assert (
            hashlib.sha256(bundled).digest()
            == hashlib.sha256((corpus / "raw" / entry["filename"]).read_bytes()).digest()
        )
    assert (BUNDLE / "LICENSE").read_bytes() == (corpus / "LICENSE").read_bytes()


def test_demo_labels_real_coughs_with_audioset_and_counts_an_assembled_timeline(tmp_path, capsys):
    import csv

    import soundfile
    from transformers import pipeline

    from resp_audio_hf.assembly import frame_levels_db
    from resp_audio_hf.benchmark.demo import OUTPUT_FILES

    assert (default_model_dir() / "model.safetensors").is_file()
    assert main(["demo", "--output-dir", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    tagging = results["tagging"]
    assert tagging["n_clips"] == 96 and set(tagging["respiratory"]) == set(RESPIRATORY_LABELS)
    # The AudioSet model hears coughs: Cough is the most frequent top label and far more probable than Breathing or
    # Wheeze on these recordings (measured: top label of 51 of 96 clips, mean probability 0.44 vs < 0.01).
    counts = tagging["top_label_counts"]
    assert max(counts, key=counts.get) == "Cough" and counts["Cough"] >= 40
    respiratory = tagging["respiratory"]
    assert respiratory["Cough"]["mean_probability"] > 20 * respiratory["Breathing"]["mean_probability"]
    assert respiratory["Cough"]["mean_probability"] > 20 * respiratory["Wheeze"]["mean_probability"]
    # Each clip's labels agree with the audio-classification pipeline given the same decoded samples (its feature
    # extraction, forward pass and the head's activation are the pipeline's own).
    from resp_audio_hf.data.audio import load_audio

    classifier = pipeline("audio-classification", model=str(default_model_dir()))
    for clip in tagging["clips"][:3]:
        audio, rate = load_audio(BUNDLE / "raw" / clip["file"], 32000)
        top = classifier({"array": audio, "sampling_rate": rate}, top_k=3)
        assert [t["label"] for t in top] == [label for label, _ in clip["top"]]
        np.testing.assert_allclose([t["score"] for t in top], [p for _, p in clip["top"]], rtol=1e-3, atol=1e-4)
    # The timeline: 10 bundled coughs inserted into quiet gaps, each true onset where the written recording's sound
    # rises (an independent look at the WAV), tagged with the tag command's defaults.
    timeline = results["timeline"]
    assert timeline["true_count"] == 10 and {e["file"] for e in timeline["inserted"]} <= set(
        c["file"] for c in tagging["clips"]
    )
    audio, rate = soundfile.read(tmp_path / "cough_timeline.wav", dtype="float32")
    assert audio.size / rate == pytest.approx(timeline["duration_s"], abs=1e-3)
    levels = frame_levels_db(audio, rate)
    for event in timeline["inserted"]:
        frame = int(event["onset_s"] / 0.01)
        assert levels[frame : frame + 5].max() > levels[frame - 10 : frame - 5].max() + 10
    # The counter's error on such recordings is about one cough in ten (results/cough_counting.md).
    assert abs(timeline["cough_count"] - 10) <= 2 and timeline["matched"] >= 7
    rows = list(csv.DictReader(open(tmp_path / "cough_timeline.csv", encoding="utf-8")))
    assert sum(row["label"] == "Cough" for row in rows) == timeline["cough_count"]
    assert f"coughs counted: **{timeline['cough_count']}** (inserted: 10)" in printed
    assert f"| Cough | {counts['Cough']} clips |" in printed
    for name in OUTPUT_FILES:
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "cough_timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert "probe" not in results and not (tmp_path / "cache").exists()


def test_demo_without_the_model_says_where_it_looks(tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "absent"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "No EfficientAT model at" in capsys.readouterr().err
