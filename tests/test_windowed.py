"""
Windowed inference on real recordings: `stream_windows` (file range by range = the whole decode cut into windows; an
hour-long WAV in bounded decode ranges), `embed --window-seconds/--hop-seconds` (one row per window, each equal to
the window embedded alone), and the audio-classification pipeline with `chunk_length_s` / `stride_length_s`.
"""

from __future__ import annotations

import numpy as np
import pytest
from _audio_helpers import SPRSOUND_DIR, record_decoded_sizes, require_dir, write_an_hour_of

from resp_audio_hf.cli import main as cli_main
from resp_audio_hf.data.audio import load_audio
from resp_audio_hf.embed import read_embeddings
from resp_audio_hf.extraction import load_encoder
from resp_audio_hf.windowed import DECODE_MARGIN_SECONDS, stream_windows, window_starts

MODEL_RATE = 32000


@pytest.fixture(scope="module")
def recordings():
    wavs = sorted(require_dir(SPRSOUND_DIR / "test_wav").glob("*.wav"))
    return wavs[:2]


def test_window_starts_cover_the_recording():
    assert list(window_starts(100, 40, 20)) == [0, 20, 40, 60]  # the last window, 60-100, reaches the end
    assert list(window_starts(101, 40, 20)) == [0, 20, 40, 60, 80]
    assert list(window_starts(10, 40, 20)) == [0]


def test_file_windows_stream_in_ranges_and_equal_the_whole_decode(recordings, monkeypatch):
    path = recordings[0]
    whole, _ = load_audio(path, MODEL_RATE)
    decoded_sizes = record_decoded_sizes(monkeypatch)
    windows = list(stream_windows(path, MODEL_RATE, 2.0, 0.75, chunk_seconds=3.0))
    # Decoded in ranges of at most 3 s (plus margins), never whole.
    assert len(decoded_sizes) > 2 and max(decoded_sizes) <= (3.0 + 2 * DECODE_MARGIN_SECONDS) * MODEL_RATE + 1
    starts = list(window_starts(whole.size, 2 * MODEL_RATE, round(0.75 * MODEL_RATE)))
    assert [w.index for w in windows] == list(range(len(starts)))
    assert windows[-1].end_s == pytest.approx(whole.size / MODEL_RATE)
    for window, start in zip(windows, starts):
        assert window.start_s == pytest.approx(start / MODEL_RATE)
        np.testing.assert_array_equal(window.audio, whole[start : start + 2 * MODEL_RATE])


def test_an_hour_long_recording_streams_in_bounded_ranges(recordings, tmp_path, monkeypatch):
    """An hour of real lung sounds (SPRSound recordings repeated) in one 8 kHz WAV file."""
    path = tmp_path / "hour.wav"
    total = write_an_hour_of(recordings, path)
    largest = record_decoded_sizes(monkeypatch)
    count, last = 0, None
    for window in stream_windows(path, 16000, 10.0, 10.0):
        count, last = count + 1, window
    assert count == int(np.ceil(total / 10.0)) and last.end_s == pytest.approx(total, abs=1e-3)
    assert max(largest) <= (60.0 + 2 * DECODE_MARGIN_SECONDS) * 16000 + 1  # a minute at a time, of an hour


def test_embed_windows_gives_each_window_its_own_embedding(recordings, tmp_path, capsys):
    output = tmp_path / "windows.npy"
    code = cli_main(["embed", *map(str, recordings), "--preset", "tiny-passt", "--window-seconds", "2.5",
                     "--hop-seconds", "1.25", "-o", str(output), "--quiet", "--batch-size", "4"])
    assert code == 0
    assert "windows" in capsys.readouterr().out
    names, vectors = read_embeddings(output)
    import csv

    index = list(csv.DictReader(open(output.with_suffix(".index.csv"), encoding="utf-8")))
    assert [row["path"] for row in index] == names and len(names) == vectors.shape[0]
    encoder = load_encoder(preset="tiny-passt")
    for path in recordings:
        whole, _ = load_audio(path, MODEL_RATE)
        rows = [(i, row) for i, row in enumerate(index) if row["path"] == str(path)]
        assert len(rows) == len(window_starts(whole.size, int(2.5 * MODEL_RATE), int(1.25 * MODEL_RATE)))
        assert float(rows[-1][1]["end_s"]) == pytest.approx(whole.size / MODEL_RATE)
        for i, row in rows[::3]:
            start, end = round(float(row["start_s"]) * MODEL_RATE), round(float(row["end_s"]) * MODEL_RATE)
            expected = encoder.embed(encoder.featurize([whole[start:end]]))[0]
            np.testing.assert_allclose(vectors[i], expected, atol=1e-5)


def test_windowed_embed_refuses_what_does_not_apply(recordings, tmp_path, capsys):
    common = [str(recordings[0]), "--preset", "tiny-m2d", "-o", str(tmp_path / "x.npy"), "--quiet"]
    assert cli_main(["embed", *common, "--hop-seconds", "1"]) == 1
    assert "--hop-seconds needs --window-seconds" in capsys.readouterr().err
    assert cli_main(["embed", *common, "--window-seconds", "0"]) == 1
    assert "window_seconds > 0" in capsys.readouterr().err


def test_chunked_pipeline_labels_each_window_with_its_times(recordings, hub_offline):
    from pathlib import Path

    from transformers import pipeline

    model_dir = Path(__file__).resolve().parents[1] / "pretrained" / "efficientat-mn04-as"
    classify = pipeline("audio-classification", model=str(model_dir))
    path = str(recordings[0])
    chunks = classify(path, chunk_length_s=3.0, stride_length_s=0.5, top_k=3)  # hop 3 - 2 * 0.5 = 2 s
    whole, _ = load_audio(path, MODEL_RATE)
    assert [c["timestamp"][0] for c in chunks] == pytest.approx([2.0 * k for k in range(len(chunks))])
    assert chunks[-1]["timestamp"][1] == pytest.approx(whole.size / MODEL_RATE)
    for chunk in chunks:
        start, end = (round(t * MODEL_RATE) for t in chunk["timestamp"])
        alone = classify({"raw": whole[start:end], "sampling_rate": MODEL_RATE}, top_k=3)
        assert [x["label"] for x in chunk["labels"]] == [x["label"] for x in alone]
        np.testing.assert_allclose([x["score"] for x in chunk["labels"]], [x["score"] for x in alone], atol=1e-6)
    # An array at its own rate gives the same windows; a list of inputs gives a list of timelines.
    native, native_rate = load_audio(path)
    from_array = classify({"raw": native, "sampling_rate": native_rate}, chunk_length_s=3.0, stride_length_s=0.5,
                          top_k=3)
    # pytest.approx takes flat sequences only (pytest 9.2 refuses nested ones): compare the flattened times.
    flat = [time for chunk in from_array for time in chunk["timestamp"]]
    assert flat == pytest.approx([time for chunk in chunks for time in chunk["timestamp"]])
    assert len(classify([path, path], chunk_length_s=4.0, top_k=1)) == 2
    with pytest.raises(ValueError, match="leaves no step"):
        classify(path, chunk_length_s=2.0, stride_length_s=1.0)
    with pytest.raises(ValueError, match="give chunk_length_s"):
        classify(path, stride_length_s=1.0)
