"""Poolings derived from frequency-preserving embeddings against what the models compute themselves."""

import numpy as np
import pytest
import torch

from resp_audio_hf import (
    EfficientATConfig,
    EfficientATModel,
    RespAudioConfig,
    RespAudioFeatureExtractor,
    RespAudioModel,
)
from resp_audio_hf.benchmark.pooling import (
    derive_pooling,
    mel_band_centres,
    signal_rows,
)


def _clips(sprsound_clips, seconds=(2.0, 3.3)):
    return [audio[: int(rate * s)] for (audio, rate), s in zip(sprsound_clips, seconds)], sprsound_clips[0][1]


def _embed(model_class, config, feature_extractor, clips, rate):
    torch.manual_seed(0)
    model = model_class(config).eval()
    inputs = feature_extractor(clips, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        return model, inputs, model(**inputs)


@pytest.mark.parametrize("family", ["resp_audio", "efficientat"])
def test_mean_and_band_limited_derived_from_freq_preserving_equal_the_models_own(
    family, sprsound_clips, single_torch_thread
):
    clips, rate = _clips(sprsound_clips)
    if family == "resp_audio":
        config = RespAudioConfig.from_preset("tiny-m2d")
        feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
        model_class = RespAudioModel
    else:
        config = EfficientATConfig(width_multiplier=0.1)
        feature_extractor = RespAudioFeatureExtractor(frontend="passt")
        model_class = EfficientATModel
    n_rows = len(config.frequency_row_spans())
    _, _, preserving = _embed(model_class, config, feature_extractor, clips, rate)
    mean_config = type(config).from_dict({**config.to_dict(), "pooling": "mean"})
    _, _, mean = _embed(model_class, mean_config, feature_extractor, clips, rate)
    fp = preserving.pooler_output.numpy()
    np.testing.assert_allclose(derive_pooling(fp, n_rows, "mean"), mean.pooler_output.numpy(), rtol=1e-5, atol=1e-6)
    assert derive_pooling(fp, n_rows, "freq_preserving") is fp

    # band_limited = the time-average of the selected rows of the last feature map, straight from last_hidden_state.
    rows = signal_rows(config, feature_extractor, 4000.0)
    hidden = preserving.last_hidden_state
    if family == "resp_audio":
        per_clip = []  # each clip alone, so that every patch column is its own audio
        for clip in clips:
            _, _, alone = _embed(model_class, config, feature_extractor, [clip], rate)
            tokens = alone.last_hidden_state[0, config.num_prefix_tokens :]
            grid = tokens.reshape(n_rows, -1, config.hidden_size)
            per_clip.append(grid[rows].mean(dim=1).reshape(-1).numpy())
        direct = np.stack(per_clip)
    else:
        time_mask = preserving.feature_time_mask.to(hidden.dtype)  # [B, T']
        time_means = (hidden * time_mask[:, None, None, :]).sum(-1) / time_mask.sum(-1)[:, None, None]  # [B, C, F']
        direct = time_means[:, :, rows].transpose(1, 2).reshape(hidden.shape[0], -1).numpy()
    np.testing.assert_allclose(derive_pooling(fp, n_rows, "band_limited", rows), direct, rtol=1e-4, atol=1e-5)


def test_rows_carrying_8_khz_signal_follow_the_mel_band_centres():
    # M2D's front end: 80 Slaney bands, 50 Hz-8 kHz; small-m2d's 5 rows of 16 bands. PaSST's (EfficientAT's):
    # 128 Kaldi bands, 0-15 kHz, mn04's 4 rows of 32 bands.
    m2d = RespAudioConfig.from_preset("small-m2d")
    m2d_front_end = RespAudioFeatureExtractor.from_model_config(m2d)
    passt_front_end = RespAudioFeatureExtractor(frontend="passt")
    mn04 = EfficientATConfig()
    assert [list(s)[:1] + list(s)[-1:] for s in mn04.frequency_row_spans()] == [[0, 31], [32, 63], [64, 95], [96, 127]]
    # Kaldi's mel scale, independently: band k (0-based) of 128 peaks at mel (k + 1) * mel(15 kHz) / 129.
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731
    inverse = lambda m: 700.0 * np.expm1(m / 1127.0)  # noqa: E731
    expected = inverse((np.arange(128) + 1) * mel(15000.0) / 129)
    np.testing.assert_allclose(mel_band_centres(passt_front_end), expected, atol=32.0)  # one FFT bin at 32 kHz / 1024
    assert signal_rows(mn04, passt_front_end, 4000.0) == [0, 1]  # row 2 (2.6-6.5 kHz) has 14 of 32 bands below
    assert signal_rows(m2d, m2d_front_end, 4000.0) == [0, 1, 2, 3]  # row 3 has 14 of 16 bands below 4 kHz
    assert signal_rows(m2d, m2d_front_end, 16000.0) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="band_limited needs rows"):
        derive_pooling(np.zeros((2, 8)), 4, "band_limited", [4])
    with pytest.raises(ValueError, match="not 3 concatenated"):
        derive_pooling(np.zeros((2, 8)), 3, "mean")
