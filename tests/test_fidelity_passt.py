"""PaSST fidelity: converted weights and our front end against hear21passt's own model and AugmentMelSTFT."""

import contextlib
import importlib.util
import io
import warnings
from pathlib import Path

import pytest
import torch
import torchaudio

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioForAudioClassification
from resp_audio_hf.convert import convert_passt

pytest.importorskip("timm")
hear21passt_passt = pytest.importorskip("hear21passt.models.passt")
hear21passt_preprocess = pytest.importorskip("hear21passt.models.preprocess")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "convert_checkpoint.py"
INPUT_FRAMES = 198  # a 2 s window keeps the 768-wide PaSST fast on CPU
NUM_LAYERS = 2
ATOL = 1e-4


@contextlib.contextmanager
def quiet():
    """hear21passt prints model summaries and tensor shapes on its first forward; keep test output readable."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def perturb_(module: torch.nn.Module, seed: int) -> None:
    """Random values in every parameter (LayerNorms and biases start at 1/0 and would hide swapped weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))


@pytest.fixture(scope="module")
def passt_net():
    """hear21passt's PaSST-S (AudioSet head, distillation token) cut to two blocks, with random weights."""
    torch.manual_seed(0)
    with quiet():
        net = hear21passt_passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False, input_tdim=INPUT_FRAMES)
    net.blocks = net.blocks[:NUM_LAYERS]
    perturb_(net, seed=1)
    return net.eval()


@pytest.fixture(scope="module")
def augment_mel():
    """The front end exactly as hear21passt.base.get_basic_model configures it, in eval mode (no augmentation)."""
    with quiet():
        mel = hear21passt_preprocess.AugmentMelSTFT(
            n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192, htk=False,
            fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000,
        )
    return mel.eval()


@pytest.fixture(scope="module")
def converted(passt_net):
    return convert_passt(passt_net.state_dict())


def passt_reference(net, spectrogram: torch.Tensor):
    """hear21passt forward on `[batch, mel, frames]`: logits, (CLS + dist) / 2 features, and the final tokens."""
    captured = {}
    hook = net.norm.register_forward_hook(lambda module, args, output: captured.update(tokens=output))
    try:
        with torch.no_grad(), quiet():
            logits, features = net(spectrogram[:, None])
    finally:
        hook.remove()
    return logits, features, captured["tokens"]


def test_converted_config_is_the_resp_passt_preset(converted):
    config = converted.model.config
    preset = RespAudioConfig.from_preset("resp-passt", num_hidden_layers=NUM_LAYERS)
    for name in (
        "frontend", "sampling_rate", "num_mel_bins", "patch_size", "frequency_stride", "time_stride", "hidden_size",
        "num_hidden_layers", "num_attention_heads", "intermediate_size", "layer_norm_eps", "num_prefix_tokens",
        "position_embedding_type", "qkv_bias",
    ):
        assert getattr(config, name) == getattr(preset, name), name
    assert config.pooling == "cls" and config.num_labels == 527
    assert config.num_time_patches == (INPUT_FRAMES - 16) // 10 + 1
    assert isinstance(converted.model, RespAudioForAudioClassification)
    assert sorted(converted.unused_keys) == ["head_dist.bias", "head_dist.weight"]


def test_encoder_matches_hear21passt(passt_net, converted):
    spectrogram = torch.randn(2, 128, INPUT_FRAMES, generator=torch.Generator().manual_seed(2))
    logits, features, tokens = passt_reference(passt_net, spectrogram)
    with torch.no_grad():
        ours = converted.model.resp_audio(spectrogram.transpose(1, 2))
        our_logits = converted.model(spectrogram.transpose(1, 2)).logits
    torch.testing.assert_close(ours.pooler_output, features, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.last_hidden_state, tokens, atol=ATOL, rtol=0)
    torch.testing.assert_close(our_logits, logits, atol=ATOL, rtol=0)


def test_shorter_window_equals_passt_on_short_input(passt_net):
    """Cropping the time embedding at conversion equals hear21passt's own crop for inputs shorter than its clip."""
    short = convert_passt(passt_net.state_dict(), window_frames=98)
    assert short.model.config.num_time_patches == 9
    spectrogram = torch.randn(1, 128, 98, generator=torch.Generator().manual_seed(3))
    logits, features, _ = passt_reference(passt_net, spectrogram)
    with torch.no_grad():
        output = short.model(spectrogram.transpose(1, 2))
    torch.testing.assert_close(output.logits, logits, atol=ATOL, rtol=0)


def test_front_end_matches_augment_mel_stft(augment_mel, sprsound_clips):
    """Real recordings at 32 kHz, batched with padding: every clip's frames equal AugmentMelSTFT on that clip alone."""
    clips = [
        torchaudio.functional.resample(torch.from_numpy(audio), rate, 32000)[: seconds * 32000]
        for (audio, rate), seconds in zip(sprsound_clips[:2], (3, 5))
    ]
    fe = RespAudioFeatureExtractor.from_model_config(RespAudioConfig.from_preset("resp-passt"))
    batch = fe([clip.numpy() for clip in clips], sampling_rate=32000, return_tensors="pt")
    for row, clip in enumerate(clips):
        with torch.no_grad(), quiet():
            reference = augment_mel(clip[None])[0]  # [mel, frames]
        valid = int(batch["attention_mask"][row].sum())
        assert valid == reference.shape[1]
        torch.testing.assert_close(batch["input_values"][row, :valid], reference.T, atol=ATOL, rtol=0)


def test_audio_to_logits_matches_hear21passt(passt_net, converted, augment_mel):
    """Whole pipeline on a synthetic chirp plus noise: our front end and model against AugmentMelSTFT and PaSST."""
    samples = (INPUT_FRAMES - 1) * 320 + 1  # what AugmentMelSTFT turns into exactly INPUT_FRAMES frames
    time = torch.arange(samples) / 32000
    wave = 0.3 * torch.sin(2 * torch.pi * (200 + 2000 * time) * time)
    wave = wave + 0.05 * torch.randn(samples, generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), quiet():
        spectrogram = augment_mel(wave[None])
    logits, features, _ = passt_reference(passt_net, spectrogram)
    inputs = converted.feature_extractor(wave.numpy(), sampling_rate=32000, return_tensors="pt")
    assert inputs["input_values"].shape == (1, INPUT_FRAMES, 128)
    with torch.no_grad():
        ours = converted.model(**inputs)
    torch.testing.assert_close(ours.logits, logits, atol=ATOL, rtol=0)


def test_cli_converts_a_passt_state_dict_file(passt_net, tmp_path):
    """The released format: a plain .pt state dict; the saved folder reloads through the Auto classes."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    source = tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt"
    torch.save(passt_net.state_dict(), source)
    spec = importlib.util.spec_from_file_location("convert_checkpoint", SCRIPT)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["--family", "passt", str(source), str(tmp_path / "out")]) == 0

    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "out").eval()
    fe = AutoFeatureExtractor.from_pretrained(tmp_path / "out")
    assert isinstance(fe, RespAudioFeatureExtractor) and fe.frontend == "passt" and fe.sampling_rate == 32000
    spectrogram = torch.randn(1, 128, INPUT_FRAMES, generator=torch.Generator().manual_seed(5))
    logits, _, _ = passt_reference(passt_net, spectrogram)
    with torch.no_grad():
        torch.testing.assert_close(model(spectrogram.transpose(1, 2)).logits, logits, atol=ATOL, rtol=0)


def test_hear_wrapper_state_dict_converts(passt_net, tmp_path, monkeypatch):
    """
    The whole `PasstBasicWrapper` of hear21passt's `get_basic_model` (what `load_model` returns), saved as a state
    dict: its keys sit under `net.` next to `device_proxy`. It converts, and the converted front end and model give
    the wrapper's own logits on audio.
    """
    import hear21passt.base as hear_base

    # get_basic_model downloads the released weights; here it wraps the random two-block PaSST instead.
    monkeypatch.setattr(hear_base, "get_model_passt", lambda arch, **kwargs: passt_net)
    with quiet():
        wrapper = hear_base.get_basic_model(mode="logits").eval()
    state = wrapper.state_dict()
    assert "net.time_new_pos_embed" in state and "device_proxy" in state
    source = tmp_path / "hear21passt-wrapper.pt"
    torch.save(state, source)

    converted = convert_passt(source)
    assert sorted(converted.unused_keys) == ["device_proxy", "head_dist.bias", "head_dist.weight"]
    samples = (INPUT_FRAMES - 1) * 320 + 1
    wave = 0.1 * torch.randn(samples, generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), quiet():
        reference = wrapper(wave[None])
        ours = converted.model(**converted.feature_extractor(wave.numpy(), sampling_rate=32000, return_tensors="pt"))
    torch.testing.assert_close(ours.logits, reference, atol=ATOL, rtol=0)
