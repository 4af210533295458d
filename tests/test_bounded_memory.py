"""Memory that does not grow with the input: resampling at rates sharing no factor with the model's, long arrays through
the feature extractor, and the bounds on the rate. Peak memory is measured in a fresh process (`ru_maxrss`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchaudio.functional as audio_functional
from _data_helpers import REPO_ROOT

from resp_audio_hf import RespAudioFeatureExtractor, feature_extraction_resp_audio, resampling


@pytest.mark.parametrize("orig, new", [(44100, 32000), (8000, 32000), (48000, 16000), (4001, 16000), (384000, 16000)])
def test_direct_resampling_equals_torchaudio_in_float64(orig, new, monkeypatch):
    """The bounded-kernel method (forced here for every pair) evaluates torchaudio's own filter: equal to torchaudio
    computed in float64, to float32 round-off."""
    monkeypatch.setattr(resampling, "MAX_POLYPHASE_KERNEL_ELEMENTS", 0)
    waveform = torch.from_numpy(np.random.default_rng(orig).standard_normal((2, 12000)).astype(np.float32))
    reference = audio_functional.resample(waveform.double(), orig, new)
    direct = resampling.resample(waveform, orig, new)
    assert direct.shape == reference.shape and direct.dtype == torch.float32
    torch.testing.assert_close(direct.double(), reference, atol=2e-6, rtol=0)


def test_awkward_rates_take_the_bounded_path_and_small_kernels_stay_with_torchaudio():
    assert resampling.polyphase_kernel_elements(22051, 32000) > 700_000_000  # 2.8 GB of float32: torchaudio's kernel
    assert resampling.polyphase_kernel_elements(44100, 32000) <= resampling.MAX_POLYPHASE_KERNEL_ELEMENTS
    waveform = torch.randn(1, 5000)
    assert torch.equal(resampling.resample(waveform, 44100, 32000), audio_functional.resample(waveform, 44100, 32000))


def test_frame_blocks_at_an_awkward_rate_equal_the_whole_clip(monkeypatch):
    """`frame_blocks` reads the bounded resampler span by span: joined, the blocks equal one pass over the clip."""
    extractor = RespAudioFeatureExtractor(frontend="passt")
    audio = np.random.default_rng(0).standard_normal(22051 * 3).astype(np.float32) * 0.1
    whole = extractor(audio, sampling_rate=22051, return_tensors="pt")["input_values"][0]
    blocks = torch.cat(list(extractor.frame_blocks(audio, sampling_rate=22051, block_frames=37)))
    torch.testing.assert_close(blocks, whole, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rate", [999, 384001, 2**40, 22050.0])
def test_rates_outside_1_khz_to_384_khz_are_refused(rate):
    extractor = RespAudioFeatureExtractor(frontend="m2d")
    with pytest.raises(ValueError, match=r"not a plausible audio rate.*from 1000 to 384000"):
        extractor(np.ones(4000, dtype=np.float32), sampling_rate=rate)


def test_a_long_array_is_featurised_in_blocks_equal_to_one_pass(monkeypatch):
    extractor = RespAudioFeatureExtractor(frontend="ast")
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(8000 * 9).astype(np.float32) * 0.1, rng.standard_normal(8000 * 2).astype(np.float32)]
    one_pass = extractor(clips, sampling_rate=8000)
    monkeypatch.setattr(feature_extraction_resp_audio, "STREAM_ABOVE_BINS", 257 * 400)  # the 9 s clip is streamed
    streamed = extractor(clips, sampling_rate=8000)
    np.testing.assert_array_equal(streamed["attention_mask"], one_pass["attention_mask"])
    np.testing.assert_allclose(streamed["input_values"], one_pass["input_values"], atol=1e-4)


# Peak resident memory of one call (Linux VmHWM, reset just before it through /proc/self/clear_refs; `ru_maxrss` is
# not used: a child process starts with its parent's), over the resident memory before it.
_PEAK_OF_ONE_CALL = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from resp_audio_hf import RespAudioFeatureExtractor

    def status(field):
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith(field + ":")) / 1024

    frontend, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    extractor = RespAudioFeatureExtractor(frontend=frontend)
    extractor(np.random.default_rng(0).standard_normal(rate).astype(np.float32), sampling_rate=rate)
    audio = (np.random.default_rng(1).standard_normal(int(rate * seconds)) * 0.1).astype(np.float32)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets the peak (VmHWM) to the current resident size
    before = status("VmRSS")
    frames = extractor(audio, sampling_rate=rate, return_tensors="pt")["input_values"].shape[1]
    print(json.dumps({"frames": frames, "extra_mib": status("VmHWM") - before, "peak_mib": status("VmHWM")}))
    """
)


def _peak_of_one_call(frontend: str, rate: int, seconds: float) -> dict:
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("peak memory is measured through Linux's /proc/self/clear_refs")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_ONE_CALL, frontend, str(rate), str(seconds)],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_eight_seconds_at_22051_hz_take_megabytes_not_gigabytes():
    """8,000-odd samples at 22,051 Hz peaked at 12.5 GB (torchaudio's 32,000-phase kernel)."""
    measured = _peak_of_one_call("passt", 22051, 8.0)
    assert measured["frames"] == 800 and measured["extra_mib"] < 200, measured


def test_ten_minutes_of_array_cost_their_spectrogram_not_a_whole_clip_stft():
    """10 minutes at 8 kHz through PaSST's front end: the spectrogram (60,000 x 128 float32, 29 MiB) and the resampled
    waveform, not the whole clip's STFT (about 850 MiB before streaming)."""
    measured = _peak_of_one_call("passt", 8000, 600.0)
    assert measured["frames"] == 60000 and measured["extra_mib"] < 250, measured


# ---------------------------------------------------------------------------------------------------------------------
# EfficientAT (mn04) on long recordings


@pytest.fixture(scope="module")
def mn04():
    from resp_audio_hf import EfficientATConfig, EfficientATModel

    torch.manual_seed(0)
    return EfficientATModel(EfficientATConfig()).eval(), RespAudioFeatureExtractor(frontend="passt", max_length=1000)


@pytest.mark.parametrize("pooling", ["freq_preserving", "mean"])
def test_mn04_stream_of_up_to_one_window_equals_forward(mn04, pooling, monkeypatch):
    model, extractor = mn04
    monkeypatch.setattr(model.config, "pooling", pooling)
    audio = np.random.default_rng(2).standard_normal(8000 * 12).astype(np.float32) * 0.1
    with torch.no_grad():
        whole = model(**extractor(audio, sampling_rate=8000, return_tensors="pt")).pooler_output
    streamed = model.pool_frame_stream(extractor.frame_blocks(audio, 8000, block_frames=97))
    assert streamed.shape == whole.shape == (1, model.config.pooled_size)
    torch.testing.assert_close(streamed, whole, atol=2e-5, rtol=1e-4)


def test_mn04_stream_of_a_long_recording_averages_the_columns_of_its_windows(mn04, monkeypatch):
    """Longer than a window (300 frames here): windows of 300 frames, the rest (400) in two halves; every column of
    every window's last feature map weighs the same."""
    model, extractor = mn04
    monkeypatch.setattr(model, "stream_window_frames", 300)
    audio = np.random.default_rng(3).standard_normal(32000 * 10).astype(np.float32) * 0.1
    frames = extractor(audio, sampling_rate=32000, return_tensors="pt")["input_values"][0]
    assert frames.shape[0] == 1000
    with torch.no_grad():
        maps = [model(input_values=frames[None, a:b]).last_hidden_state for a, b in
                [(0, 300), (300, 600), (600, 800), (800, 1000)]]
    columns = torch.cat(maps, dim=3)  # [1, channels, F', all columns]
    expected = columns.mean(dim=3).transpose(1, 2).reshape(1, -1)
    streamed = model.pool_frame_stream(frames.split(128))
    torch.testing.assert_close(streamed, expected, atol=1e-5, rtol=1e-4)


_MN04_PEAK = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from resp_audio_hf import EfficientATConfig, EfficientATModel, RespAudioFeatureExtractor
    from resp_audio_hf.extraction import AudioEncoder

    def status(field):
        with open("/proc/self/status") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith(field + ":")) / 1024

    torch.manual_seed(0)
    encoder = AudioEncoder(EfficientATModel(EfficientATConfig()), RespAudioFeatureExtractor(frontend="passt"), "mn04")
    encoder.embed_long(np.random.default_rng(0).standard_normal(32000).astype(np.float32))
    audio = (np.random.default_rng(1).standard_normal(int(32000 * 60 * float(sys.argv[1]))) * 0.1).astype(np.float32)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = status("VmRSS")
    assert encoder.is_long(audio.size)
    embedding = encoder.embed_long(audio)
    print(json.dumps({"dim": int(embedding.shape[0]), "extra_mib": status("VmHWM") - before}))
    """
)


def test_mn04_embeds_a_long_recording_in_bounded_memory():
    """Twelve minutes at 32 kHz through `AudioEncoder.embed_long`: windows of 2 minutes (+276 MiB measured), not one
    12-minute feature map (+729 MiB encoded whole)."""
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("peak memory is measured through Linux's /proc/self/clear_refs")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _MN04_PEAK, "12"], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["dim"] == 384 * 4 and measured["extra_mib"] < 400, measured


def test_vit_layers_keep_window_buffers_one_hidden_state_in_size_without_autograd(single_torch_thread):
    """Without autograd on CPU the attention projects query, key and value as three products and the MLP transforms
    a share of the tokens at a time (here intermediate / hidden = 2: a third, so that a slice's wide activation is
    smaller than a hidden state), and each layer adds its MLP's output in place: every hidden state is bitwise the
    one-pass one, and neither the input nor the hidden states already returned are overwritten."""
    from resp_audio_hf import RespAudioConfig, RespAudioModel

    torch.manual_seed(0)
    config = RespAudioConfig.from_preset("tiny-passt", window_frames=998)  # 12 x 99 patch tokens + 2 prefix tokens
    assert config.intermediate_size == 2 * config.hidden_size
    model = RespAudioModel(config).eval()
    tokens = 12 * 99 + 2
    mlp_tokens, fused_projections = [], []
    layer = model.encoder.layers[0]
    layer.mlp.fc1.register_forward_hook(lambda module, args, out: mlp_tokens.append(args[0].shape[-2]))
    layer.attention.qkv.register_forward_hook(lambda module, args, out: fused_projections.append(out.shape[-1]))
    spectrogram = torch.randn(1, 998, config.num_mel_bins)
    original = spectrogram.clone()

    one_pass = model(input_values=spectrogram, output_hidden_states=True)
    assert mlp_tokens == [tokens] and fused_projections == [3 * config.hidden_size]
    mlp_tokens.clear()
    fused_projections.clear()
    with torch.no_grad():
        sliced = model(input_values=spectrogram, output_hidden_states=True)
    assert mlp_tokens == [397, 397, 396] and fused_projections == []
    assert all(share * config.intermediate_size < tokens * config.hidden_size for share in mlp_tokens)
    assert torch.equal(spectrogram, original)
    assert len(sliced.hidden_states) == config.num_hidden_layers + 1
    for expected, got in zip(one_pass.hidden_states, sliced.hidden_states, strict=True):
        assert torch.equal(expected.detach(), got)
    assert torch.equal(one_pass.pooler_output.detach(), sliced.pooler_output)


@pytest.mark.parametrize(("batch", "tokens"), [(1, 298), (3, 298), (1, 20), (1, 19)])
def test_vit_mlp_slices_are_bitwise_the_one_pass_mlp_at_passt_width(single_torch_thread, batch, tokens):
    """PaSST's width (768 -> 3072: five slices) at a window's 298 tokens, one window or three at once (the slices run
    across the windows), at the fewest tokens that are sliced (five slices of four) and at one token fewer, which is
    transformed in one pass: a product of one to three rows takes another kernel, which rounds differently."""
    from resp_audio_hf import RespAudioConfig
    from resp_audio_hf.modeling_resp_audio import RespAudioMLP

    torch.manual_seed(0)
    mlp = RespAudioMLP(RespAudioConfig.from_preset("resp-passt")).eval()
    calls = []
    mlp.fc1.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[-2]))
    hidden_states = torch.randn(batch, tokens, 768)
    rows = batch * tokens
    with torch.no_grad():
        sliced = mlp(hidden_states)
        assert calls == ([tokens] if rows < 20 else [len(share) for share in torch.arange(rows).tensor_split(5)])
        assert torch.equal(sliced, mlp.transform(hidden_states))
