"""RespAudioModel: pooling, padding invariance, long-input windows, patchout, heads and initialisation."""

import numpy as np
import pytest
import torch
from _preset_helpers import TINY_PRESETS

from resp_audio_hf import (
    RespAudioConfig,
    RespAudioFeatureExtractor,
    RespAudioForAudioClassification,
    RespAudioModel,
)
from resp_audio_hf.modeling_resp_audio import frequency_row_means, sincos_2d_position_embeddings
from resp_audio_hf.pooling import pool_embeddings


def _model(preset, **overrides):
    torch.manual_seed(0)
    return RespAudioModel(RespAudioConfig.from_preset(preset, **overrides)).eval()


@pytest.mark.parametrize(
    "preset, grid, pooled",
    [("resp-passt", (12, 99), 9216), ("resp-ast", (12, 101), 9216), ("resp-m2d", (5, 38), 3840)],
)
def test_published_sizes(preset, grid, pooled):
    # Niizumi et al. 2025: PaSST/AST 12 x 768 = 9216-d and M2D 5 x 768 = 3840-d frequency-preserving embeddings.
    config = RespAudioConfig.from_preset(preset)
    assert (config.num_frequency_rows, config.num_time_patches) == grid
    assert config.pooled_size == pooled
    assert RespAudioConfig.from_preset(preset, pooling="mean").pooled_size == 768


def test_config_rejects_unknown_choices():
    with pytest.raises(ValueError, match="pooling"):
        RespAudioConfig(pooling="max")
    with pytest.raises(ValueError, match="Unknown preset"):
        RespAudioConfig.from_preset("resp-beats")
    with pytest.raises(ValueError, match="divisible"):
        RespAudioConfig(hidden_size=30, num_attention_heads=4)


def test_frequency_preserving_pooling_against_explicit_loops():
    rng = np.random.default_rng(0)
    batch, rows, cols, dim = 2, 3, 5, 4
    tokens = rng.standard_normal((batch, rows * cols, dim)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=bool)
    expected = np.zeros((batch, rows * dim), dtype=np.float32)
    for b in range(batch):
        for f in range(rows):
            kept = [tokens[b, f * cols + t] for t in range(cols) if mask[b, t]]
            expected[b, f * dim : (f + 1) * dim] = np.mean(kept, axis=0)
    row_means = frequency_row_means(torch.from_numpy(tokens), torch.from_numpy(mask))
    pooled = pool_embeddings("freq_preserving", row_means, None)
    np.testing.assert_allclose(pooled.numpy(), expected, atol=1e-6)
    mean = pool_embeddings("mean", row_means, None)
    np.testing.assert_allclose(mean.numpy(), expected.reshape(batch, rows, dim).mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("pooling", ["freq_preserving", "mean", "cls"])
def test_pooling_flag_matches_last_hidden_state(pooling):
    model = _model("tiny-passt", pooling=pooling)
    out = model(torch.randn(2, 150, 128))
    config = model.config
    patches = out.last_hidden_state[:, config.num_prefix_tokens :]
    grid = patches.reshape(2, config.num_frequency_rows, -1, config.hidden_size)
    expected = {
        "freq_preserving": grid.mean(dim=2).reshape(2, -1),
        "mean": patches.mean(dim=1),
        "cls": out.last_hidden_state[:, : config.num_prefix_tokens].mean(dim=1),
    }[pooling]
    assert out.pooler_output.shape == (2, config.pooled_size)
    torch.testing.assert_close(out.pooler_output, expected)


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_clip_embedding_is_independent_of_batch_padding(preset, sprsound_clips):
    model = _model(preset)
    fe = RespAudioFeatureExtractor.from_model_config(model.config)
    rate = sprsound_clips[0][1]
    clips = [sprsound_clips[0][0][: rate * 3 // 2], sprsound_clips[1][0][: 4 * rate], sprsound_clips[3][0]]
    with torch.inference_mode():
        batched = model(**fe(clips, sampling_rate=rate, return_tensors="pt")).pooler_output
        for row, clip in enumerate(clips):
            alone = model(**fe(clip, sampling_rate=rate, return_tensors="pt")).pooler_output[0]
            torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)
    assert torch.isfinite(batched).all()


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_long_input_is_encoded_in_patch_aligned_windows(preset):
    model = _model(preset)
    config = model.config
    window_patches = config.num_time_patches
    hop = window_patches * config.time_stride
    frames = 2 * hop + config.window_frames  # exactly three full windows
    spectrogram = torch.randn(1, frames, config.num_mel_bins)
    with torch.inference_mode():
        whole = model(spectrogram)
        expected_rows, expected_prefix = [], []
        for k in range(3):
            part = model(spectrogram[:, k * hop : k * hop + config.window_frames]).last_hidden_state
            expected_prefix.append(part[:, : config.num_prefix_tokens])
            expected_rows.append(part[:, config.num_prefix_tokens :].reshape(1, config.num_frequency_rows, window_patches, -1))
    grid = torch.cat(expected_rows, dim=2).reshape(1, -1, config.hidden_size)
    prefix = torch.stack(expected_prefix).mean(dim=0)
    assert whole.feature_time_mask.shape == (1, 3 * window_patches)
    torch.testing.assert_close(whole.last_hidden_state, torch.cat([prefix, grid], dim=1), atol=1e-5, rtol=1e-5)


def test_ten_minute_recording_gives_finite_embedding():
    model = _model("tiny-m2d")
    fe = RespAudioFeatureExtractor.from_model_config(model.config)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 600)).astype(np.float32)
    with torch.inference_mode():
        out = model(**fe(audio, sampling_rate=16000, return_tensors="pt"))
    assert out.feature_time_mask.shape[1] == (60001 - 16) // 16 + 1
    assert torch.isfinite(out.pooler_output).all()


def test_structured_patchout_only_in_training():
    model = _model("tiny-passt", structured_patchout_time=5, structured_patchout_frequency=3)
    config = model.config
    spectrogram = torch.randn(2, config.window_frames, config.num_mel_bins)
    eval_tokens = model(spectrogram).last_hidden_state.shape[1]
    model.train()
    train_out = model(spectrogram)
    rows, cols = config.num_frequency_rows - 3, config.num_time_patches - 5
    assert eval_tokens == config.num_prefix_tokens + config.num_frequency_rows * config.num_time_patches
    assert train_out.last_hidden_state.shape[1] == config.num_prefix_tokens + rows * cols
    assert train_out.pooler_output.shape == (2, rows * config.hidden_size)


def test_attention_weights_path_equals_sdpa():
    model = _model("tiny-ast")
    spectrogram = torch.randn(2, 120, 128)
    mask = torch.ones(2, 120, dtype=torch.long)
    mask[1, 70:] = 0
    fast = model(spectrogram, attention_mask=mask)
    slow = model(spectrogram, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(fast.last_hidden_state, slow.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert len(slow.attentions) == model.config.num_hidden_layers
    assert len(slow.hidden_states) == model.config.num_hidden_layers + 1
    probabilities = slow.attentions[0][1].sum(dim=-1)
    torch.testing.assert_close(probabilities, torch.ones_like(probabilities))
    # Padded patch columns receive no attention.
    padded_keys = ~slow.feature_time_mask[1].repeat(model.config.num_frequency_rows)
    assert slow.attentions[0][1][..., model.config.num_prefix_tokens :][..., padded_keys].abs().max() == 0


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_unpadded_forward_traces_as_one_graph(preset):
    """Without an attention mask, torch.compile sees one graph: no data-dependent check breaks it (Dynamo's explain
    traces without compiling, so this needs no C++ compiler)."""
    model = _model(preset)
    spectrogram = torch.randn(2, model.config.window_frames, model.config.num_mel_bins)
    torch._dynamo.reset()
    try:
        explanation = torch._dynamo.explain(model)(spectrogram)
    finally:
        torch._dynamo.reset()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_wrong_input_shape_is_a_clear_error():
    model = _model("tiny-m2d")
    with pytest.raises(ValueError, match="RespAudioFeatureExtractor"):
        model(torch.randn(2, 100, 128))
    with pytest.raises(ValueError, match="at least 16 frames"):
        model(torch.randn(2, 8, 80))


@pytest.mark.parametrize("bad", (float("nan"), float("inf"), -float("inf")))
def test_non_finite_input_is_a_clear_error(bad):
    """Called directly, without the feature extractor's checks: one bad value would make the clip's embedding NaN."""
    model = _model("tiny-m2d")
    spectrogram = torch.randn(3, 100, 80)
    spectrogram[1, 40, 7] = bad
    with pytest.raises(ValueError, match=r"clip\(s\) \[1\] contain 1 NaN or infinite"):
        model(spectrogram)
    with pytest.raises(ValueError, match="NaN or infinite"):
        RespAudioForAudioClassification(model.config).eval()(spectrogram)
    # The frame stream of long recordings checks every block it is given.
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.pool_frame_stream([torch.randn(300, 80), spectrogram[1]])


def test_attention_mask_of_another_length_is_a_clear_error(sprsound_clips):
    """A mask from another batch (another length) would silently mask the wrong frames."""
    config = RespAudioConfig.from_preset("tiny-m2d")
    model = _model("tiny-m2d")
    fe = RespAudioFeatureExtractor.from_model_config(config)
    audio, rate = sprsound_clips[0]
    long = fe([audio[: 3 * rate], audio[: 2 * rate]], sampling_rate=rate, return_tensors="pt")
    short = fe([audio[: 2 * rate], audio[: rate]], sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        model(**long)  # matching mask: fine
    for mask in (short["attention_mask"], long["attention_mask"][:1], long["attention_mask"][:, None]):
        with pytest.raises(ValueError, match=r"attention_mask has shape .* but input_values has 2 clips of \d+ frames"):
            model(long["input_values"], attention_mask=mask)


@pytest.mark.parametrize(
    "problem_type, labels, reference",
    [
        ("single_label_classification", torch.tensor([0, 2]), lambda logits, y: torch.nn.functional.cross_entropy(logits, y)),
        (
            "multi_label_classification",
            torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
            lambda logits, y: torch.nn.functional.binary_cross_entropy_with_logits(logits, y),
        ),
        ("regression", torch.tensor([[0.5, -1.0, 2.0], [1.0, 0.0, 3.0]]), lambda logits, y: torch.nn.functional.mse_loss(logits, y)),
    ],
)
def test_classification_losses(problem_type, labels, reference):
    torch.manual_seed(0)
    config = RespAudioConfig.from_preset("tiny-m2d", num_labels=3, problem_type=problem_type)
    model = RespAudioForAudioClassification(config).eval()
    out = model(torch.randn(2, 100, 80), labels=labels)
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.loss, reference(out.logits, labels))


def test_sincos_positions_are_filled_frozen_and_survive_reload(tmp_path):
    model = _model("tiny-m2d")
    config = model.config
    table = sincos_2d_position_embeddings(config.hidden_size, config.num_frequency_rows, config.num_time_patches)
    positions = model.embeddings.position_embeddings
    assert not positions.requires_grad
    torch.testing.assert_close(positions[0, 1:], table)
    assert torch.all(positions[0, 0] == 0)
    # Independent check of the table: row f, column t -> sin(t * omega_0) in channel 0, sin(f * omega_0) at D/2.
    f, t = 3, 7
    row = positions[0, 1 + f * config.num_time_patches + t]
    assert row[0].item() == pytest.approx(np.sin(t), abs=1e-6)
    assert row[config.hidden_size // 2].item() == pytest.approx(np.sin(f), abs=1e-6)
    model.save_pretrained(tmp_path)
    reloaded = RespAudioModel.from_pretrained(tmp_path).eval()
    spectrogram = torch.randn(1, 150, 80)
    torch.testing.assert_close(reloaded(spectrogram).pooler_output, model(spectrogram).pooler_output)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    config = RespAudioConfig.from_preset("tiny-passt", num_labels=2)
    plain = RespAudioForAudioClassification(config).train()
    checkpointed = RespAudioForAudioClassification(config).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.activation_checkpointing_enable()
    spectrogram, labels = torch.randn(2, 120, 128), torch.tensor([0, 1])
    plain(spectrogram, labels=labels).loss.backward()
    checkpointed(spectrogram, labels=labels).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5, msg=name)
