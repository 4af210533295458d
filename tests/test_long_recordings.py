"""Long recordings in bounded memory: block-wise features and window-streamed pooling equal the one-pass results."""

import numpy as np
import pytest
import torch
from _preset_helpers import TINY_PRESETS

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel
from resp_audio_hf.configuration_resp_audio import VIT_FRONT_END_NAMES


def synthetic_recording(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Breathing-like test signal: noise under a slow envelope, a wheeze-like tone and sparse clicks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t)
    signal = 0.1 * envelope * rng.standard_normal(t.size) + 0.05 * np.sin(2 * np.pi * 400 * t)
    clicks = rng.random(t.size) < 2e-4
    signal[clicks] += 0.5
    return signal.astype(np.float32)


def assert_features_match(chunked: torch.Tensor, full: torch.Tensor, extractor) -> None:
    """
    Equal within float32 round-off. In the log domain that means 1e-5 wherever a mel band holds energy; bands more than
    30 dB below their frame's peak (e.g. above the Nyquist rate of 8 kHz audio upsampled to 16 kHz) are made of the
    resampler's and the FFT's float32 rounding noise, so there the power itself is compared, relative to the peak.
    """
    assert chunked.shape == full.shape
    power_full = torch.exp(full.double() * extractor.std + extractor.mean)
    power_chunked = torch.exp(chunked.double() * extractor.std + extractor.mean)
    peak = power_full.amax(dim=1, keepdim=True)
    assert float(((power_chunked - power_full).abs() / peak).max()) < 1e-5
    with_energy = power_full > 1e-3 * peak
    assert float((chunked - full).abs()[with_energy].max()) < 1e-5


@pytest.mark.parametrize("frontend", VIT_FRONT_END_NAMES)
def test_frame_blocks_equal_whole_clip_features_on_real_recordings(frontend, sprsound_clips, single_torch_thread):
    extractor = RespAudioFeatureExtractor(frontend=frontend)
    rate = sprsound_clips[0][1]
    joined = np.concatenate([audio for audio, _ in sprsound_clips])  # about 40 s of real 8 kHz recordings
    for audio in [sprsound_clips[0][0], joined]:
        full = extractor([audio], sampling_rate=rate, return_tensors="pt")["input_values"][0]
        for block_frames in [None, 509, 16]:
            blocks = list(extractor.frame_blocks(audio, rate, block_frames=block_frames))
            assert all(block.shape[0] <= (block_frames or block.shape[0]) for block in blocks)
            assert_features_match(torch.cat(blocks), full, extractor)


@pytest.mark.parametrize("frontend", VIT_FRONT_END_NAMES)
@pytest.mark.parametrize("rate", [8000, 44100, "native"])
def test_frame_blocks_equal_whole_clip_features_on_a_long_clip(frontend, rate, single_torch_thread):
    extractor = RespAudioFeatureExtractor(frontend=frontend)
    rate = extractor.sampling_rate if rate == "native" else rate
    audio = synthetic_recording(150.3, rate)  # 2.5 min: several thousand frames, many blocks, odd length
    full = extractor([audio], sampling_rate=rate, return_tensors="pt")["input_values"][0]
    chunked = torch.cat(list(extractor.frame_blocks(audio, rate, block_frames=1000)))
    assert_features_match(chunked, full, extractor)


@pytest.mark.parametrize("frontend", VIT_FRONT_END_NAMES)
@pytest.mark.parametrize("samples", [1, 37, 300, 1700])
def test_frame_blocks_of_clips_shorter_than_one_patch_or_reflection(frontend, samples):
    """Clips padded to one patch, and clips shorter than the STFT's reflection padding, take the same path."""
    extractor = RespAudioFeatureExtractor(frontend=frontend)
    audio = synthetic_recording(1.0, 8000)[:samples] + 0.01
    full = extractor([audio], sampling_rate=8000, return_tensors="pt")["input_values"][0]
    chunked = torch.cat(list(extractor.frame_blocks(audio, 8000, block_frames=5)))
    assert_features_match(chunked, full, extractor)


def test_frame_blocks_check_input_like_the_call():
    extractor = RespAudioFeatureExtractor(frontend="passt")
    with pytest.raises(ValueError, match="sampling_rate is required"):
        next(extractor.frame_blocks(np.ones(8000, np.float32), None))
    with pytest.raises(ValueError, match="NaN or infinite"):
        next(extractor.frame_blocks(np.full(8000, np.nan, np.float32), 8000))
    stereo = np.stack([synthetic_recording(3.0, 8000), synthetic_recording(3.0, 8000, seed=1)])
    full = extractor([stereo], sampling_rate=8000, return_tensors="pt")["input_values"][0]
    assert_features_match(torch.cat(list(extractor.frame_blocks(stereo, 8000))), full, extractor)


@pytest.mark.parametrize("preset", TINY_PRESETS)
@pytest.mark.parametrize("pooling", ["freq_preserving", "mean", "cls"])
def test_pool_frame_stream_equals_windowed_forward(preset, pooling, single_torch_thread):
    config = RespAudioConfig.from_preset(preset, pooling=pooling, window_batch_size=3)
    torch.manual_seed(0)
    model = RespAudioModel(config).eval()
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    # One patch, part of a window, exactly a group of windows' worth of patches, several groups with a ragged end.
    for seconds in [0.25, 1.5, 6.1, 23.7]:
        audio = synthetic_recording(seconds, 8000, seed=int(seconds * 10))
        with torch.no_grad():
            expected = model(**extractor([audio], sampling_rate=8000, return_tensors="pt")).pooler_output
        streamed = model.pool_frame_stream(extractor.frame_blocks(audio, 8000, block_frames=97))
        assert streamed.shape == expected.shape == (1, config.pooled_size)
        torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=1e-5)


def test_pool_frame_stream_holds_one_group_of_windows(monkeypatch):
    """The encoder never sees more than `window_batch_size` windows, however long the stream."""
    config = RespAudioConfig.from_preset("tiny-m2d", window_batch_size=2)
    model = RespAudioModel(config).eval()
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    seen = []
    original = model._encode_window_batch

    def spy(spectrogram, *args, **kwargs):
        seen.append(tuple(spectrogram.shape))
        return original(spectrogram, *args, **kwargs)

    monkeypatch.setattr(model, "_encode_window_batch", spy)
    model.pool_frame_stream(extractor.frame_blocks(synthetic_recording(60.0, 8000), 8000, block_frames=300))
    assert len(seen) > 10 and all(shape[0] <= 2 and shape[1] == config.window_frames for shape in seen)


def test_pool_frame_stream_rejects_bad_blocks():
    config = RespAudioConfig.from_preset("tiny-passt")
    model = RespAudioModel(config).eval()
    with pytest.raises(ValueError, match="at least 16 frames"):
        model.pool_frame_stream([torch.zeros(10, config.num_mel_bins)])
    with pytest.raises(ValueError, match="at least 16 frames"):
        model.pool_frame_stream([])
    with pytest.raises(ValueError, match="log-mel frames"):
        model.pool_frame_stream([torch.zeros(100, config.num_mel_bins + 1)])


def test_bench_batches_never_pad_short_clips_up_to_a_long_one(monkeypatch, single_torch_thread):
    """A 10-minute clip in a batch of short ones is streamed alone; the short ones are padded to their own longest."""
    from resp_audio_hf.extraction import ArrayClipDataset, AudioEncoder, extract_embeddings

    encoder = AudioEncoder.from_preset("tiny-m2d")
    rate = encoder.sampling_rate
    short = [synthetic_recording(seconds, rate, seed=i) for i, seconds in enumerate([1.0, 1.5, 0.7, 1.9, 1.2])]
    long = synthetic_recording(10 * 60, rate, seed=9)
    clips = short[:2] + [long] + short[2:]
    shapes = []
    forward = encoder.model.forward

    def spy(input_values, *args, **kwargs):
        shapes.append(tuple(input_values.shape))
        return forward(input_values, *args, **kwargs)

    monkeypatch.setattr(encoder.model, "forward", spy)
    embeddings = extract_embeddings(
        encoder, ArrayClipDataset(clips, rate, rate), batch_size=8, progress=False
    )
    longest_short = encoder.feature_extractor.num_frames(max(len(clip) for clip in short))
    assert shapes == [(len(short), longest_short, encoder.model.config.num_mel_bins)]

    monkeypatch.setattr(encoder.model, "forward", forward)
    expected = np.concatenate([encoder.embed(encoder.featurize([clip])) for clip in clips])  # each alone, one pass
    np.testing.assert_allclose(embeddings, expected, atol=1e-5, rtol=1e-5)


def test_bench_records_a_refused_long_clip_and_embeds_the_rest():
    from resp_audio_hf.extraction import ArrayClipDataset, AudioEncoder, extract_embeddings

    encoder = AudioEncoder.from_preset("tiny-passt")
    rate = encoder.sampling_rate
    silent_long = np.zeros(rate * 60, dtype=np.float32)
    clips = [synthetic_recording(2.0, rate), silent_long, synthetic_recording(30.0, rate, seed=3)]
    embeddings, failures = extract_embeddings(
        encoder, ArrayClipDataset(clips, rate, rate), batch_size=4, progress=False, return_failures=True
    )
    assert list(failures) == [1] and "silent" in failures[1]
    assert np.isnan(embeddings[1]).all() and np.isfinite(embeddings[[0, 2]]).all()
    np.testing.assert_allclose(embeddings[2], encoder.embed(encoder.featurize([clips[2]]))[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("frontend", VIT_FRONT_END_NAMES)
def test_frame_blocks_read_a_file_block_by_block(frontend, tmp_path, sprsound_clips):
    """A path is read range by range through libsndfile; the features equal those of the decoded array."""
    import soundfile

    extractor = RespAudioFeatureExtractor(frontend=frontend)
    audio, rate = sprsound_clips[1]
    stereo = np.stack([audio, 0.5 * audio[::-1]], axis=1)
    for name, samples, subtype in [("mono.wav", audio, "PCM_16"), ("stereo.flac", stereo, "PCM_24")]:
        path = tmp_path / name
        soundfile.write(path, samples, rate, subtype=subtype)
        decoded, _ = soundfile.read(path, dtype="float32")
        full = extractor([decoded], sampling_rate=rate, return_tensors="pt")["input_values"][0]
        assert_features_match(torch.cat(list(extractor.frame_blocks(path, block_frames=300))), full, extractor)
        assert_features_match(torch.cat(list(extractor.frame_blocks(str(path), rate))), full, extractor)
    with pytest.raises(ValueError, match="not sampling_rate=16000"):
        next(extractor.frame_blocks(tmp_path / "mono.wav", 16000))
    soundfile.write(tmp_path / "silent.wav", np.zeros(rate * 5, np.float32), rate)
    with pytest.raises(ValueError, match="silent.wav is silent"):
        list(extractor.frame_blocks(tmp_path / "silent.wav"))


def test_pool_frame_stream_windows_at_once(single_torch_thread):
    config = RespAudioConfig.from_preset("tiny-passt")
    torch.manual_seed(0)
    model = RespAudioModel(config).eval()
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    audio = synthetic_recording(13.0, 8000)
    expected = model.pool_frame_stream(extractor.frame_blocks(audio, 8000))
    for windows in (1, 2, 5):
        streamed = model.pool_frame_stream(extractor.frame_blocks(audio, 8000), windows_at_once=windows)
        torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=1e-5)


def test_stream_defaults_on_cpu_keep_one_window_and_short_blocks(single_torch_thread):
    """On CPU, `pool_frame_stream` encodes one window per forward unless told otherwise (more at once are no faster
    there and each ViT-B window adds about 105 MB to the peak), and `frame_blocks` yields blocks of 512 frames; the
    result equals `forward`'s pooled output whatever the grouping."""
    from resp_audio_hf.feature_extraction_resp_audio import STREAM_BLOCK_FRAMES

    config = RespAudioConfig.from_preset("tiny-passt", window_batch_size=16)
    torch.manual_seed(0)
    model = RespAudioModel(config).eval()
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    audio = synthetic_recording(30.0, 8000)
    blocks = list(extractor.frame_blocks(audio, 8000))
    assert STREAM_BLOCK_FRAMES == 512 and [len(block) for block in blocks[:-1]] == [512] * (len(blocks) - 1)
    windows_per_call = []
    model.encoder.register_forward_hook(lambda module, args, output: windows_per_call.append(args[0].shape[0]))
    streamed = model.pool_frame_stream(iter(blocks))
    assert len(windows_per_call) > 4 and set(windows_per_call) == {1}
    windows_per_call.clear()
    grouped = model.pool_frame_stream(iter(blocks), windows_at_once=3)
    assert max(windows_per_call) == 3
    with torch.no_grad():
        whole = model(**extractor([audio], sampling_rate=8000, return_tensors="pt")).pooler_output
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-5)
