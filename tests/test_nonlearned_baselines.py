"""The non-learned baselines (log-mel statistics, clip duration) against direct numpy computations on real clips."""

import numpy as np
import pytest
import torch

from resp_audio_hf.benchmark.nonlearned import (
    LOG_MEL_STATISTICS,
    baseline_feature_extractor,
    nonlearned_encoder,
)
from resp_audio_hf.extraction import ArrayClipDataset, extract_embeddings


def _numpy_statistics(frames: np.ndarray) -> np.ndarray:
    frames = frames.astype(np.float64)
    delta = np.diff(frames, axis=0)
    per_band = [
        frames.mean(axis=0),
        frames.std(axis=0),
        np.percentile(frames, 5, axis=0),
        np.percentile(frames, 50, axis=0),
        np.percentile(frames, 95, axis=0),
        np.abs(delta).mean(axis=0),
        delta.std(axis=0),
    ]
    return np.stack(per_band, axis=1).reshape(-1)  # band-major


@pytest.fixture(scope="module")
def clips(sprsound_clips):
    # Real 8 kHz SPRSound recordings, cut to different lengths so that a batch needs padding.
    return [
        (audio[: int(rate * seconds)], rate) for (audio, rate), seconds in zip(sprsound_clips, (3.0, 1.3, 5.2, 0.7))
    ]


def test_log_mel_statistics_equal_numpy_on_the_front_ends_frames(clips, single_torch_thread):
    encoder = nonlearned_encoder("log-mel-stats")
    assert encoder.embedding_dim == 64 * len(LOG_MEL_STATISTICS) and encoder.sampling_rate == 16000
    dataset = ArrayClipDataset([audio for audio, _ in clips], clips[0][1], encoder.sampling_rate)
    batched = extract_embeddings(encoder, dataset, batch_size=4, progress=False)
    front_end = baseline_feature_extractor()
    for row, index in enumerate(range(len(clips))):
        audio16k = dataset[index]["audio"]
        frames = front_end([audio16k], sampling_rate=16000, return_tensors="np")["input_values"][0]
        expected = _numpy_statistics(frames)
        np.testing.assert_allclose(batched[row], expected, rtol=1e-5, atol=1e-5)
    # Padding never leaks in: the batch gives what each clip gives alone.
    alone = np.concatenate(
        [extract_embeddings(encoder, ArrayClipDataset([a], r, 16000), progress=False) for a, r in clips]
    )
    np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=1e-6)


def test_duration_is_the_clip_length_to_the_10_ms_frame(clips, single_torch_thread):
    encoder = nonlearned_encoder("duration")
    assert encoder.embedding_dim == 1
    dataset = ArrayClipDataset([audio for audio, _ in clips], clips[0][1], encoder.sampling_rate)
    seconds = extract_embeddings(encoder, dataset, batch_size=4, progress=False)[:, 0]
    expected = np.array([len(audio) / rate for audio, rate in clips])
    assert np.all(seconds <= expected + 1e-6) and np.all(expected - seconds < 0.0101)
    # A clip shorter than one ViT patch (160 ms) keeps its own length.
    short = extract_embeddings(encoder, ArrayClipDataset([clips[0][0][:400]], clips[0][1], 16000), progress=False)[0, 0]
    assert short == pytest.approx(0.05, abs=0.0101)


def test_baselines_have_distinct_cache_keys_and_refuse_unknown_names():
    from resp_audio_hf.extraction import embedding_cache_key

    dataset = ArrayClipDataset([np.ones(1600, np.float32)], 16000, 16000)
    keys = {embedding_cache_key(nonlearned_encoder(name), dataset)[0] for name in ("log-mel-stats", "duration")}
    assert len(keys) == 2
    with pytest.raises(ValueError, match="Unknown baseline 'opensmile'"):
        nonlearned_encoder("opensmile")
    # The module works without gradient bookkeeping: no parameters to train or to fingerprint.
    assert not list(nonlearned_encoder("duration").model.parameters())
    assert isinstance(nonlearned_encoder("duration").model, torch.nn.Module)
