"""
`resp-audio-hf tag` on real recordings: window probabilities equal the chunked audio-classification pipeline's, the
cough count of a recording assembled from the bundled CC0 coughs, segment merging, and an hour-long WAV tagged in
bounded decode ranges.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from _audio_helpers import SPRSOUND_DIR, record_decoded_sizes, require_dir, write_an_hour_of

from resp_audio_hf.assembly import active_span, assemble_coughs, match_onsets
from resp_audio_hf.benchmark.demo import DEMO_DATA
from resp_audio_hf.cli import main
from resp_audio_hf.data.audio import load_audio
from resp_audio_hf.tagging import (
    COUGH_LABEL,
    AudioTagger,
    TagConfig,
    default_model_dir,
    merge_spans,
    score_windows,
)

COUGHS = sorted((DEMO_DATA / "covid19-cough" / "raw").glob("*.mp3"))
RESULTS = Path(__file__).resolve().parents[1] / "results" / "cough_counting.json"


@pytest.fixture(scope="module")
def tagger():
    return AudioTagger()


def test_merge_spans_joins_touching_and_close_windows():
    starts = np.arange(8) * 0.25
    ends = starts + 0.25
    present = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    runs = merge_spans(starts, ends, present, 0.0)
    assert [(a, b, list(i)) for a, b, i in runs] == [(0.0, 0.5, [0, 1]), (1.0, 1.25, [4])]
    runs = merge_spans(starts, ends, present, 0.5)  # the 0.5 s gap is bridged
    assert [(a, b, list(i)) for a, b, i in runs] == [(0.0, 1.25, [0, 1, 4])]


def test_match_onsets_is_one_to_one_within_the_tolerance():
    matching = match_onsets([1.0, 5.0, 9.0], [0.8, 1.1, 5.6, 20.0], 0.5)
    assert sorted(matching.pairs) == [(0, 1)]  # 0.8 and 1.1 both near 1.0: only one may count; 5.6 is too far
    assert matching.misses == 2 and matching.false_alarms == 3
    np.testing.assert_allclose(matching.onset_errors_s, [0.1])


def test_window_probabilities_equal_the_chunked_pipeline(tagger):
    """Each window scored alone by the tagger = the audio-classification pipeline's chunk of the same span."""
    from transformers import pipeline

    audio, rate = load_audio(max(COUGHS, key=lambda p: p.stat().st_size), tagger.sampling_rate)
    config = TagConfig(window_seconds=1.0, hop_seconds=0.25)
    scores = score_windows(tagger, audio, config, tracked=(COUGH_LABEL, "Speech"), keep_threshold=0.2)
    classifier = pipeline("audio-classification", model=str(default_model_dir()))
    # ASR's stride: the chunk less twice the overlap is the hop.
    chunks = classifier({"array": audio, "sampling_rate": rate}, chunk_length_s=1.0, stride_length_s=0.375,
                        top_k=len(tagger.labels))
    assert len(chunks) == scores.start_s.size > 4
    for index, chunk in enumerate(chunks):
        assert chunk["timestamp"] == pytest.approx((scores.start_s[index], scores.end_s[index]))
        by_label = {entry["label"]: entry["score"] for entry in chunk["labels"]}
        for label in (COUGH_LABEL, "Speech"):
            assert scores.tracked[label][index] == pytest.approx(by_label[label], rel=1e-4, abs=1e-5)
        kept = {tagger.labels[label_index] for w, label_index, _ in scores.hits if w == index}
        assert kept == {label for label, p in by_label.items() if p >= 0.2}
    assert scores.envelope.shape[0] == pytest.approx(audio.size / rate / 0.02, abs=1)
    np.testing.assert_allclose(scores.envelope[:, 1].max(), audio.max())


def test_tag_counts_the_coughs_of_an_assembled_recording(tagger, tmp_path, capsys):
    import soundfile

    rng = np.random.default_rng(3)
    clips = []
    for path in rng.permutation(COUGHS):
        audio, _ = load_audio(path, tagger.sampling_rate)
        start, end = active_span(audio, tagger.sampling_rate)
        if (end - start) / tagger.sampling_rate <= 3.0:
            clips.append(audio)
        if len(clips) == 8:
            break
    assembly = assemble_coughs(clips, tagger.sampling_rate, rng)
    wav = tmp_path / "night.wav"
    soundfile.write(wav, assembly.audio, tagger.sampling_rate, subtype="FLOAT")
    assert main(["tag", str(wav), "--output-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "out" / "night.segments.csv", encoding="utf-8")))
    coughs = [row for row in rows if row["label"] == COUGH_LABEL]
    assert f"Coughs: {len(coughs)}\n" in printed
    assert all(f"{row['label']} (" in printed for row in rows)
    assert (tmp_path / "out" / "night.timeline.png").read_bytes()[:4] == b"\x89PNG"
    # The counter misses about one cough in ten on such recordings and invents few (results/cough_counting.md: quiet
    # background, recall 0.82, precision 0.91); here, 8 inserted coughs.
    matching = match_onsets([e[0] for e in assembly.events], [float(row["start_s"]) for row in coughs], 1.0)
    assert 4 <= len(coughs) <= 9 and matching.hits >= 4 and matching.false_alarms <= 1
    # Segments of one label never overlap and lie within the recording.
    for label in {row["label"] for row in rows}:
        spans = sorted((float(r["start_s"]), float(r["end_s"])) for r in rows if r["label"] == label)
        assert all(a < b <= assembly.duration_s + 1e-3 for a, b in spans)
        assert all(spans[i][1] < spans[i + 1][0] for i in range(len(spans) - 1))


def test_tag_streams_an_hour_long_recording_in_bounded_ranges(tagger, tmp_path, monkeypatch):
    """An hour of real lung sounds (SPRSound recordings repeated) in one 8 kHz WAV file."""
    from resp_audio_hf.windowed import DECODE_CHUNK_SECONDS, DECODE_MARGIN_SECONDS

    recordings = sorted(require_dir(SPRSOUND_DIR / "test_wav").glob("*.wav"))[:2]
    path = tmp_path / "hour.wav"
    total = write_an_hour_of(recordings, path)
    largest = record_decoded_sizes(monkeypatch)
    config = TagConfig(window_seconds=10.0, hop_seconds=10.0)
    scores = score_windows(tagger, path, config, tracked=(COUGH_LABEL, "Breathing"))
    assert scores.start_s.size == int(np.ceil(total / 10.0)) and scores.duration_s == pytest.approx(total, abs=1e-3)
    assert max(largest) <= (DECODE_CHUNK_SECONDS + 2 * DECODE_MARGIN_SECONDS) * tagger.sampling_rate + 1
    assert scores.envelope.shape[0] == pytest.approx(total / 0.02, abs=1)
    # Lung sounds: Breathing is heard far more than Cough over the hour.
    assert scores.tracked["Breathing"].mean() > 3 * scores.tracked[COUGH_LABEL].mean()


def test_tag_defaults_are_the_settings_chosen_on_train_coughs():
    """TagConfig's Cough settings are those results/cough_counting.py chose on the train split's assemblies."""
    chosen = json.loads(RESULTS.read_text())["config"]
    defaults = TagConfig()
    for name in ("window_seconds", "hop_seconds", "cough_threshold", "merge_gap_seconds"):
        assert getattr(defaults, name) == chosen[name], name


def test_tag_names_a_missing_file_and_an_unknown_label(tmp_path, capsys):
    assert main(["tag", str(tmp_path / "absent.wav")]) == 2
    assert "absent.wav is not a file" in capsys.readouterr().err
    assert main(["tag", str(COUGHS[0]), "--labels", "Coughing", "--output-dir", str(tmp_path)]) == 1
    assert "Unknown labels ['Coughing']" in capsys.readouterr().err
