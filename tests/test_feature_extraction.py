"""RespAudioFeatureExtractor: filterbanks against torchaudio, resampling, channels, padding and bad input."""

import numpy as np
import pytest
import torch
import torchaudio

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor
from resp_audio_hf.configuration_resp_audio import VIT_FRONT_END_NAMES


@pytest.fixture(params=VIT_FRONT_END_NAMES)
def extractor(request):
    return RespAudioFeatureExtractor(frontend=request.param)


def test_every_config_frontend_has_one_front_end_record():
    from resp_audio_hf.feature_extraction_resp_audio import FRONT_ENDS

    assert sorted(FRONT_ENDS) == sorted(VIT_FRONT_END_NAMES)
    for name, record in FRONT_ENDS.items():
        fe = RespAudioFeatureExtractor(frontend=name)
        assert fe.front_end is record and fe.to_dict()["frontend"] == name and "front_end" not in fe.to_dict()
        assert {key: getattr(fe, key) for key in record.defaults} == dict(record.defaults)
    with pytest.raises(ValueError, match="frontend must be one of"):
        RespAudioFeatureExtractor(frontend="beats")


def test_kaldi_filterbanks_match_torchaudio():
    for frontend in ("passt", "ast"):
        fe = RespAudioFeatureExtractor(frontend=frontend)
        reference, _ = torchaudio.compliance.kaldi.get_mel_banks(
            fe.num_mel_bins, fe.n_fft, float(fe.sampling_rate), fe.f_min, fe.f_max, 100.0, -500.0, 1.0
        )
        reference = torch.nn.functional.pad(reference, (0, 1))  # Kaldi leaves out the Nyquist bin
        torch.testing.assert_close(fe.mel_filters.T, reference.float(), atol=1e-5, rtol=1e-4)


def test_slaney_filterbank_matches_torchaudio():
    fe = RespAudioFeatureExtractor(frontend="m2d")
    reference = torchaudio.functional.melscale_fbanks(
        fe.n_fft // 2 + 1, fe.f_min, fe.f_max, fe.num_mel_bins, fe.sampling_rate, norm="slaney", mel_scale="slaney"
    )
    torch.testing.assert_close(fe.mel_filters, reference, atol=1e-6, rtol=1e-4)


def test_m2d_front_end_equals_torchaudio_melspectrogram(sprsound_clips):
    fe = RespAudioFeatureExtractor(frontend="m2d")
    audio, rate = sprsound_clips[1]
    wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=400, win_length=400, hop_length=160, f_min=50, f_max=8000, n_mels=80,
        power=2.0, center=True, norm="slaney", mel_scale="slaney",
    )(wave)
    reference = ((mel + torch.finfo(torch.float32).eps).log() - fe.mean) / fe.std
    ours = fe(wave.numpy(), sampling_rate=16000, return_tensors="pt")["input_values"][0]
    assert ours.shape == reference.T.shape
    torch.testing.assert_close(ours, reference.T, atol=2e-4, rtol=1e-4)


def test_resampling_equals_torchaudio_resample_first(extractor, sprsound_clips):
    audio, rate = sprsound_clips[0]
    direct = extractor(audio, sampling_rate=rate, return_tensors="pt")
    resampled = torchaudio.functional.resample(torch.from_numpy(audio), rate, extractor.sampling_rate)
    reference = extractor(resampled.numpy(), sampling_rate=extractor.sampling_rate, return_tensors="pt")
    torch.testing.assert_close(direct["input_values"], reference["input_values"])
    assert direct["attention_mask"].sum() == reference["attention_mask"].sum()


def test_batch_equals_single_clips_on_valid_frames(extractor, sprsound_clips):
    rate = sprsound_clips[0][1]
    # Different lengths on purpose, cropped here explicitly: 2 s, 5 s and the whole 9.2 s recording.
    clips = [sprsound_clips[0][0][: 2 * rate], sprsound_clips[1][0][: 5 * rate], sprsound_clips[2][0]]
    batch = extractor(clips, sampling_rate=rate, return_tensors="pt")
    frames = batch["attention_mask"].sum(dim=1)
    assert frames.tolist() == sorted(frames.tolist()) and len(set(frames.tolist())) == 3
    for row, clip in enumerate(clips):
        single = extractor(clip, sampling_rate=rate, return_tensors="pt")["input_values"][0]
        n = int(frames[row])
        assert single.shape[0] == n
        torch.testing.assert_close(batch["input_values"][row, :n], single, atol=1e-5, rtol=1e-5)
        padded = batch["input_values"][row, n:]
        assert torch.all(padded == torch.tensor(extractor.padding_value, dtype=padded.dtype))


def test_stereo_is_downmixed_either_layout(extractor, sprsound_clips):
    left, rate = sprsound_clips[0]
    right = sprsound_clips[1][0][: left.size]
    mono = extractor((left + right) / 2, sampling_rate=rate)["input_values"]
    channels_first = extractor([np.stack([left, right])], sampling_rate=rate)["input_values"]
    channels_last = extractor([np.stack([left, right], axis=1)], sampling_rate=rate)["input_values"]
    np.testing.assert_allclose(channels_first, mono, atol=1e-5)
    np.testing.assert_allclose(channels_last, mono, atol=1e-5)


def test_soundfile_layout_is_one_clip(extractor, sprsound_clips, tmp_path):
    """
    `soundfile.read` returns `(frames, channels)`: at the top level that is one clip (downmixed), not a batch of
    thousands of 2-sample clips; a mono file read with `always_2d=True` is the mono clip.
    """
    import soundfile

    left, rate = sprsound_clips[0]
    right = sprsound_clips[1][0][: left.size]
    mono = extractor((left + right) / 2, sampling_rate=rate, return_tensors="np")
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), rate, subtype="FLOAT")
    stereo, file_rate = soundfile.read(tmp_path / "stereo.wav", dtype="float32")
    assert stereo.shape == (left.size, 2) and file_rate == rate
    for audio in (stereo, torch.from_numpy(stereo)):
        out = extractor(audio, sampling_rate=rate, return_tensors="np")
        assert out["input_values"].shape == mono["input_values"].shape
        np.testing.assert_allclose(out["input_values"], mono["input_values"], atol=1e-5)

    soundfile.write(tmp_path / "mono.wav", left, rate, subtype="FLOAT")
    column, _ = soundfile.read(tmp_path / "mono.wav", dtype="float32", always_2d=True)
    assert column.shape == (left.size, 1)
    np.testing.assert_allclose(
        extractor(column, sampling_rate=rate)["input_values"], extractor(left, sampling_rate=rate)["input_values"]
    )


def test_many_channels_last_is_refused_with_the_layout(sprsound_clips, tmp_path):
    """A 5.1 recording as soundfile reads it names its 6 channels instead of failing on one of its rows."""
    import soundfile

    audio, rate = sprsound_clips[0]
    soundfile.write(tmp_path / "surround.wav", np.stack([audio] * 6, axis=1), rate, subtype="FLOAT")
    surround, _ = soundfile.read(tmp_path / "surround.wav", dtype="float32")
    fe = RespAudioFeatureExtractor(frontend="m2d")
    with pytest.raises(ValueError, match=r"6 channels \(shape \(\d+, 6\), read as \(frames, channels\)"):
        fe(surround, sampling_rate=rate)


def test_top_level_2d_batch_is_still_a_batch(sprsound_clips):
    """Rows of a 2-D array longer than 16 samples stay a batch of mono clips, as in transformers."""
    fe = RespAudioFeatureExtractor(frontend="m2d")
    audio, rate = sprsound_clips[0]
    rows = np.stack([audio[:rate], audio[rate : 2 * rate]])
    batch = fe(rows, sampling_rate=rate)["input_values"]
    assert batch.shape[0] == 2
    np.testing.assert_allclose(batch[1], fe(rows[1], sampling_rate=rate)["input_values"][0], atol=1e-5)


def test_int16_pcm_is_scaled(extractor, sprsound_clips):
    audio, rate = sprsound_clips[2]
    pcm = np.round(audio * 32767).astype(np.int16)
    from_int = extractor(pcm, sampling_rate=rate)["input_values"]
    from_float = extractor(pcm.astype(np.float32) / 32768, sampling_rate=rate)["input_values"]
    np.testing.assert_allclose(from_int, from_float, atol=1e-5)


def test_unsigned_pcm_is_centred_like_libsndfile_reads_it(extractor, sprsound_clips, tmp_path):
    """uint8 samples are unsigned 8-bit PCM: centred on 128 and divided by 128, as libsndfile reads a PCM_U8 WAV."""
    import soundfile

    audio, rate = sprsound_clips[2]
    pcm = (np.round(audio * 127) + 128).astype(np.uint8)
    soundfile.write(tmp_path / "u8.wav", pcm.astype(np.int16) - 128 << 8, rate, subtype="PCM_U8")
    libsndfile_floats, _ = soundfile.read(tmp_path / "u8.wav", dtype="float32")
    reference = extractor(libsndfile_floats, sampling_rate=rate)["input_values"]
    np.testing.assert_allclose(extractor(pcm, sampling_rate=rate)["input_values"], reference, atol=1e-5)
    np.testing.assert_allclose(extractor(torch.from_numpy(pcm), sampling_rate=rate)["input_values"], reference, atol=1e-5)


@pytest.mark.parametrize("unsigned, signed", [(np.uint16, np.int16), (np.uint32, np.int32)])
def test_wider_unsigned_pcm_equals_the_same_samples_signed(unsigned, signed, sprsound_clips):
    """An unsigned sample u is the signed sample u - 2^(n-1): both give one spectrogram."""
    extractor = RespAudioFeatureExtractor(frontend="passt")
    audio, rate = sprsound_clips[1]
    bits = np.iinfo(signed).bits
    as_signed = np.round(audio.astype(np.float64) * (2 ** (bits - 1) - 1)).astype(signed)
    as_unsigned = (as_signed.astype(np.int64) + 2 ** (bits - 1)).astype(unsigned)
    np.testing.assert_allclose(
        extractor(as_unsigned, sampling_rate=rate)["input_values"],
        extractor(as_signed, sampling_rate=rate)["input_values"],
        atol=1e-5,
    )


def test_short_clip_is_padded_to_one_patch(extractor):
    rng = np.random.default_rng(0)
    out = extractor(rng.standard_normal(400).astype(np.float32), sampling_rate=8000)
    assert out["input_values"].shape[1] == 16
    assert np.isfinite(out["input_values"]).all()


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (np.zeros(0, dtype=np.float32), {}, "empty"),
        (np.array([0.1, np.nan] * 4000, dtype=np.float32), {}, "NaN or infinite"),
        (np.array([0.1, np.inf] * 4000, dtype=np.float32), {}, "NaN or infinite"),
        (np.zeros(16000, dtype=np.float32), {}, "silent"),
        ([np.ones((6, 16000), dtype=np.float32)], {}, "6 channels"),
        (np.ones((2, 2, 16000), dtype=np.float32), {}, "shape"),
        (np.ones(16000, dtype=np.float32), {"sampling_rate": None}, "sampling_rate is required"),
        (np.ones(16000, dtype=np.float32), {"sampling_rate": 0}, "plausible"),
        (np.array(["a", "b"]), {}, "dtype"),
    ],
)
def test_bad_input_raises_clear_error(audio, kwargs, message):
    fe = RespAudioFeatureExtractor(frontend="m2d")
    kwargs = {"sampling_rate": 16000, **kwargs}
    with pytest.raises(ValueError, match=message):
        fe(audio, **kwargs)


def test_silence_allowed_when_asked_gives_finite_features():
    fe = RespAudioFeatureExtractor(frontend="passt", reject_silent_audio=False)
    out = fe(np.zeros(32000, dtype=np.float32), sampling_rate=32000)
    assert np.isfinite(out["input_values"]).all()


def test_no_silent_truncation():
    fe = RespAudioFeatureExtractor(frontend="m2d", max_length=100)
    long_clip = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32)
    with pytest.raises(ValueError, match="truncation=True"):
        fe(long_clip, sampling_rate=16000, padding="max_length")
    cut = fe(long_clip, sampling_rate=16000, padding="max_length", truncation=True)
    assert cut["input_values"].shape[1] == 100 and cut["attention_mask"].sum() == 100
    whole = fe(long_clip, sampling_rate=16000)
    assert whole["input_values"].shape[1] == 1 + 16000 * 3 // 160


def test_from_model_config_and_json_round_trip(tmp_path):
    config = RespAudioConfig.from_preset("tiny-m2d")
    fe = RespAudioFeatureExtractor.from_model_config(config)
    assert (fe.frontend, fe.sampling_rate, fe.num_mel_bins, fe.max_length) == ("m2d", 16000, 80, 208)
    fe.save_pretrained(tmp_path)
    text = (tmp_path / "preprocessor_config.json").read_text()
    assert "mel_filters" not in text and "window" not in text.replace("win_length", "")
    reloaded = RespAudioFeatureExtractor.from_pretrained(tmp_path)
    clip = np.random.default_rng(2).standard_normal(16000).astype(np.float32)
    np.testing.assert_array_equal(reloaded(clip, sampling_rate=16000)["input_values"], fe(clip, sampling_rate=16000)["input_values"])


@pytest.mark.parametrize(("frontend", "preemphasis"), [("passt", 0.0), ("m2d", 0.97)])
def test_preemphasis_override_is_the_published_front_end_on_the_emphasised_signal(
    frontend, preemphasis, sprsound_clips, recwarn
):
    """Turning pre-emphasis off on PaSST (on for M2D) changes the STFT's input, so it must frame the clip as the
    other setting's front end frames the pre-emphasised signal: every frame computed, none left uninitialised."""
    audio, rate = sprsound_clips[0]
    overridden = RespAudioFeatureExtractor(frontend=frontend, preemphasis=preemphasis)
    plain = RespAudioFeatureExtractor(frontend=frontend, preemphasis=0.0)
    resampled = torchaudio.functional.resample(torch.from_numpy(audio), rate, overridden.sampling_rate).numpy()
    # A whole number of hops: where the sample pre-emphasis drops changes the frame count.
    resampled = resampled[: len(resampled) // overridden.hop_length * overridden.hop_length]
    emphasised = resampled[1:] - preemphasis * resampled[:-1] if preemphasis else resampled
    features = overridden([resampled], sampling_rate=overridden.sampling_rate, return_tensors="pt")
    expected = plain([emphasised], sampling_rate=plain.sampling_rate, return_tensors="pt")
    assert features["input_values"].shape == expected["input_values"].shape
    assert features["input_values"].shape[-2] == overridden.num_frames(len(resampled))
    torch.testing.assert_close(features["input_values"], expected["input_values"], atol=1e-5, rtol=0)
    again = overridden([resampled], sampling_rate=overridden.sampling_rate, return_tensors="pt")
    assert torch.equal(features["input_values"], again["input_values"])
    assert not [w for w in recwarn if "resized" in str(w.message)]
