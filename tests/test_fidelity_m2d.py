"""M2D fidelity: a checkpoint laid out as M2D's `checkpoint-*.pth` (a timm VisionTransformer plus pre-training parts),
converted and compared with M2D's forward_encoder done on the timm model, and the converted front end against
torchaudio's MelSpectrogram with M2D's settings and the checkpoint's norm_stats."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from resp_audio_hf.convert import convert_m2d, parse_m2d_name

timm_vit = pytest.importorskip("timm.models.vision_transformer")

ATOL = 1e-4
NAME = "m2d_vit_base-80x208p16x16-221006-mr7"
NORM_STATS = (-6.3, 3.9)
DIM, HEADS = 64, 4


def make_fake_m2d_checkpoint(folder: Path, seed: int = 0):
    """
    A timm ViT (one input channel, 80 x 208 input, 16 x 16 patches, CLS token, no head) with random weights, saved as
    M2D saves training checkpoints: `{"model": encoder + target/decoder/predictor weights + norm_stats, "epoch",
    "args"}` in `<folder>/<NAME>/checkpoint-300.pth`. Returns the timm model and the checkpoint path.
    """
    torch.manual_seed(seed)
    vit = timm_vit.VisionTransformer(
        img_size=(80, 208), patch_size=16, in_chans=1, embed_dim=DIM, depth=2, num_heads=HEADS, num_classes=0,
        class_token=True,
    )
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in vit.named_parameters():
            noise = 0.1 * torch.randn(parameter.shape, generator=generator)
            parameter.copy_(noise + 1.0 if name.endswith("weight") and parameter.ndim == 1 else noise)
    encoder = vit.state_dict()
    pretraining_parts = {
        "target_blocks.0.norm1.weight": torch.ones(DIM),
        "target_norm.weight": torch.ones(DIM),
        "mask_token": torch.zeros(1, 1, DIM),
        "decoder_embed.weight": torch.randn(32, DIM),
        "decoder_pos_embed": torch.randn(1, 66, 32),
        "decoder_blocks.0.attn.qkv.weight": torch.randn(96, 32),
        "decoder_pred.weight": torch.randn(DIM, 32),
        "offline_predictor.weight": torch.randn(DIM, DIM),
    }
    model_entry = {**encoder, **pretraining_parts, "norm_stats": torch.tensor(NORM_STATS)}
    path = folder / NAME / "checkpoint-300.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": model_entry, "epoch": 300, "args": argparse.Namespace(model="m2d_vit_base")}, path)
    return vit.eval(), path


def m2d_forward_encoder(vit, spectrogram: torch.Tensor) -> torch.Tensor:
    """M2D's LocalViT.forward_encoder on `[batch, 1, mel, frames]`: conv patches, the grid part of pos_embed cropped
    to the input's time columns, then CLS (+ its position), blocks and the final norm."""
    x = vit.patch_embed.proj(spectrogram).flatten(2).transpose(1, 2)
    frequency_patches = 80 // 16
    pos_embed = vit.pos_embed[:, 1:, :]
    if x.shape[1] < pos_embed.shape[1]:
        frames = x.shape[1] // frequency_patches
        pos_embed = pos_embed.reshape(1, frequency_patches, -1, DIM)[:, :, :frames].reshape(1, -1, DIM)
    x = x + pos_embed
    cls_tokens = (vit.cls_token + vit.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
    x = torch.cat((cls_tokens, x), dim=1)
    for block in vit.blocks:
        x = block(x)
    return vit.norm(x)


def m2d_log_mel(wave: torch.Tensor) -> torch.Tensor:
    """M2D's 16 kHz spectrogram (its nnAudio MelSpectrogram, here with torchaudio), log(x + eps), norm_stats."""
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=16000, n_fft=400, win_length=400, hop_length=160, n_mels=80, f_min=50, f_max=8000, power=2.0,
        center=True, mel_scale="slaney", norm="slaney",
    )(wave)
    return ((mel + torch.finfo(torch.float32).eps).log() - NORM_STATS[0]) / NORM_STATS[1]


@pytest.fixture(scope="module")
def fake_m2d(tmp_path_factory):
    return make_fake_m2d_checkpoint(tmp_path_factory.mktemp("m2d"))


@pytest.fixture(scope="module")
def converted(fake_m2d):
    return convert_m2d(fake_m2d[1], num_attention_heads=HEADS)


def test_conversion_reads_the_name_and_leaves_out_pretraining_parts(converted):
    config = converted.model.config
    assert (config.num_mel_bins, config.window_frames, config.patch_size) == (80, 208, 16)
    assert (config.frequency_stride, config.time_stride, config.num_prefix_tokens) == (16, 16, 1)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (DIM, 2, HEADS)
    assert config.frontend == "m2d" and config.sampling_rate == 16000
    assert set(converted.unused_keys) == {
        "target_blocks.0.norm1.weight", "target_norm.weight", "mask_token", "decoder_embed.weight",
        "decoder_pos_embed", "decoder_blocks.0.attn.qkv.weight", "decoder_pred.weight", "offline_predictor.weight",
    }


@pytest.mark.parametrize("frames", [208, 96])
def test_encoder_matches_m2d_forward_encoder(fake_m2d, converted, frames):
    """Full-length input and a shorter one (M2D then crops the time columns of its position table)."""
    vit, _ = fake_m2d
    spectrogram = torch.randn(2, 1, 80, frames, generator=torch.Generator().manual_seed(frames))
    with torch.no_grad():
        expected = m2d_forward_encoder(vit, spectrogram)
        ours = converted.model(spectrogram[:, 0].transpose(1, 2))
    assert ours.last_hidden_state.shape == expected.shape == (2, 1 + 5 * (frames // 16), DIM)
    torch.testing.assert_close(ours.last_hidden_state, expected, atol=ATOL, rtol=0)
    # The default frequency-preserving pooling: time-average of each frequency row of M2D's patch tokens.
    rows = expected[:, 1:].reshape(2, 5, frames // 16, DIM).mean(dim=2).reshape(2, -1)
    torch.testing.assert_close(ours.pooler_output, rows, atol=ATOL, rtol=0)


def test_front_end_uses_the_checkpoint_norm_stats(converted, sprsound_clips):
    fe = converted.feature_extractor
    assert (fe.mean, fe.std) == pytest.approx(NORM_STATS)
    audio, rate = sprsound_clips[1]
    wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)
    expected = m2d_log_mel(wave)  # [mel, frames]
    ours = fe(wave.numpy(), sampling_rate=16000, return_tensors="pt")["input_values"][0]
    assert ours.shape == expected.T.shape
    torch.testing.assert_close(ours, expected.T, atol=ATOL, rtol=0)


def test_audio_to_tokens_matches_m2d(fake_m2d, converted, sprsound_clips):
    """Whole pipeline on a real recording cut to 2.07 s (208 frames): our front end and model against M2D's."""
    vit, _ = fake_m2d
    audio, rate = sprsound_clips[0]
    wave = torchaudio.functional.resample(torch.from_numpy(audio), rate, 16000)[: 207 * 160]
    with torch.no_grad():
        expected = m2d_forward_encoder(vit, m2d_log_mel(wave)[None, None])
        inputs = converted.feature_extractor(wave.numpy(), sampling_rate=16000, return_tensors="pt")
        ours = converted.model(**inputs)
    assert inputs["input_values"].shape == (1, 208, 80)
    torch.testing.assert_close(ours.last_hidden_state, expected, atol=ATOL, rtol=0)


def test_longer_window_interpolates_time_columns(fake_m2d):
    """--window-frames 416 doubles the time columns; each frequency row is np.interp of the original row
    (half-pixel centres, as torch's linear interpolation without align_corners)."""
    vit, path = fake_m2d
    longer = convert_m2d(path, window_frames=416, num_attention_heads=HEADS)
    assert longer.model.config.num_time_patches == 26
    table = longer.model.embeddings.position_embeddings
    original = vit.pos_embed.detach()[0, 1:].reshape(5, 13, DIM).numpy()
    source_positions = np.arange(13)
    target_positions = np.clip((np.arange(26) + 0.5) * 13 / 26 - 0.5, 0, 12)
    expected = np.stack([
        np.stack([np.interp(target_positions, source_positions, original[f, :, d]) for d in range(DIM)], axis=1)
        for f in range(5)
    ])
    torch.testing.assert_close(table[0, 0], vit.pos_embed.detach()[0, 0])  # the CLS position is untouched
    torch.testing.assert_close(table.detach()[0, 1:].reshape(5, 26, DIM), torch.from_numpy(expected).float(),
                               atol=1e-6, rtol=0)


def test_shorter_window_equals_m2d_on_short_input(fake_m2d):
    vit, path = fake_m2d
    short = convert_m2d(path, window_frames=96, num_attention_heads=HEADS)
    spectrogram = torch.randn(1, 1, 80, 96, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        expected = m2d_forward_encoder(vit, spectrogram)
        ours = short.model(spectrogram[:, 0].transpose(1, 2))
    torch.testing.assert_close(ours.last_hidden_state, expected, atol=ATOL, rtol=0)


def test_unknown_encoder_keys_are_an_error(tmp_path, fake_m2d):
    """A layer the converter does not know (timm's LayerScale) must not be dropped silently."""
    vit, path = fake_m2d
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, weights_only=True)
    checkpoint["model"]["blocks.0.ls1.gamma"] = torch.ones(DIM)
    target = tmp_path / NAME / "checkpoint-1.pth"
    target.parent.mkdir()
    torch.save(checkpoint, target)
    with pytest.raises(ValueError, match=r"blocks\.0\.ls1\.gamma"):
        convert_m2d(target, num_attention_heads=HEADS)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("m2d_vit_base-80x608p16x16-221006-mr7", ("m2d_vit_base", 80, 608, 16, "16k")),
        ("m2d_as_vit_base-80x1001p16x16p32k-240413_AS-FT_enconly", ("m2d_as_vit_base", 80, 1001, 16, "32k")),
        ("m2d_clap_vit_base-80x1001p16x16p16kpB-240507", ("m2d_clap_vit_base", 80, 1001, 16, "16k")),
    ],
)
def test_m2d_names_parse_like_m2d_runtime(name, expected):
    parsed = parse_m2d_name(name)
    got = (parsed.model, parsed.num_mel_bins, parsed.window_frames, parsed.patch_size, parsed.sampling_rate_tag)
    assert got == expected


def test_unparseable_name_is_a_clear_error(tmp_path, fake_m2d):
    _, path = fake_m2d
    renamed = tmp_path / "my_model" / "weights.pth"
    renamed.parent.mkdir()
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="m2d_vit_base-80x608p16x16"):
        convert_m2d(renamed)
