"""The M2D objective of training/: masking, the masked-only target path, no gradient into the target, EMA, loss."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _preset_helpers import TINY_PRESETS

from resp_audio_hf import RespAudioConfig, RespAudioModel
from resp_audio_hf.training.m2d_objective import (
    M2DObjective,
    M2DObjectiveConfig,
    PatchMask,
    ema_decay_at,
    m2d_loss,
    random_patch_mask,
    resolve_ema_decays,
)

TINY_PREDICTOR = dict(predictor_hidden_size=32, predictor_num_layers=1, predictor_num_heads=2)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny_objective(preset: str = "tiny-m2d", seed: int = 0, **objective_overrides) -> M2DObjective:
    torch.manual_seed(seed)
    encoder = RespAudioModel(RespAudioConfig.from_preset(preset))
    return M2DObjective(encoder, M2DObjectiveConfig(**{**TINY_PREDICTOR, **objective_overrides}))


def spectrogram(config: RespAudioConfig, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, config.window_frames, config.num_mel_bins, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_embed_patch_grid_feeds_the_encoder_exactly_as_the_model_does(preset):
    """With every patch visible, the objective's token path is the model's own forward pass."""
    model = RespAudioModel(RespAudioConfig.from_preset(preset)).eval()
    inputs = spectrogram(model.config)
    patches, prefix = model.embeddings.embed_patch_grid(inputs)
    tokens = torch.cat([prefix.expand(inputs.shape[0], -1, -1), patches], dim=1)
    hidden, _, _ = model.encoder(tokens)
    with torch.no_grad():
        reference = model(inputs).last_hidden_state
    torch.testing.assert_close(model.layernorm(hidden), reference, rtol=0, atol=1e-6)


def test_random_patch_mask_hides_the_configured_fraction_per_clip():
    num_patches = 5 * 13  # tiny-m2d: 80 mel bins / 16 x (208 frames - 16) / 16 + 1
    mask = random_patch_mask(400, num_patches, 0.7, torch.Generator().manual_seed(0))
    assert mask.visible_ids.shape == (400, int(num_patches * 0.3)) == (400, 19)
    assert mask.masked_ids.shape == (400, num_patches - 19)
    both = torch.cat([mask.visible_ids, mask.masked_ids], dim=1).sort(dim=1).values
    assert torch.equal(both, torch.arange(num_patches).expand(400, -1)), "visible and masked must partition the grid"
    assert torch.equal(mask.visible_ids, mask.visible_ids.sort(dim=1).values)
    assert len({tuple(row.tolist()) for row in mask.visible_ids}) == 400, "each clip draws its own mask"
    # Every position is masked about 70% of the time: the mask is unstructured and unbiased over the grid.
    frequency = mask.as_boolean(num_patches).float().mean(dim=0)
    assert frequency.min() > 0.6 and frequency.max() < 0.8
    again = random_patch_mask(400, num_patches, 0.7, torch.Generator().manual_seed(0))
    assert torch.equal(again.masked_ids, mask.masked_ids)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1])
def test_mask_ratio_outside_the_open_interval_is_rejected(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        M2DObjectiveConfig(mask_ratio=ratio)


@pytest.mark.parametrize("ratio, num_patches", [(0.999, 65), (0.5, 1)])
def test_masks_that_would_leave_a_side_empty_are_rejected(ratio, num_patches):
    with pytest.raises(ValueError, match="non-empty"):
        random_patch_mask(2, num_patches, ratio)


def test_no_gradient_reaches_the_target_or_the_masked_patches():
    objective = tiny_objective().train()
    config = objective.encoder_model.config
    inputs = spectrogram(config).requires_grad_(True)
    mask = random_patch_mask(2, 65, 0.7, torch.Generator().manual_seed(3))
    output = objective(inputs, mask=mask)
    output.loss.backward()

    assert not output.target.requires_grad
    for parameter in objective.target_parameters():
        assert not parameter.requires_grad and parameter.grad is None
    for name, parameter in objective.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} got no gradient"

    # tiny-m2d patches do not overlap: each spectrogram cell belongs to one patch. Cells of masked patches reach the
    # loss only through the target, so their gradient must be exactly zero; visible cells must get a gradient.
    grad = inputs.grad.transpose(1, 2)  # [batch, mel, frames], the patch grid's orientation
    grid_f, grid_t = objective.num_patches(config.window_frames)
    for clip in range(2):
        for patch in range(grid_f * grid_t):
            f, t = divmod(patch, grid_t)
            cells = grad[clip, f * 16 : (f + 1) * 16, t * 16 : (t + 1) * 16]
            if patch in mask.masked_ids[clip]:
                assert torch.count_nonzero(cells) == 0
            else:
                assert cells.abs().sum() > 0


def test_target_encodes_only_the_masked_patches_with_the_ema_layers():
    objective = tiny_objective().eval()
    encoder = objective.encoder_model
    inputs = spectrogram(encoder.config)
    mask = random_patch_mask(2, 65, 0.7, torch.Generator().manual_seed(4))
    with torch.no_grad():
        output = objective(inputs, mask=mask)
        # Independent reference: a frozen copy of the online layers run on [prefix, masked patches] only.
        reference_layers = copy.deepcopy(encoder)
        patches, prefix = encoder.embeddings.embed_patch_grid(inputs)
        masked = torch.stack([patches[b, mask.masked_ids[b]] for b in range(2)])
        hidden, _, _ = reference_layers.encoder(torch.cat([prefix.expand(2, -1, -1), masked], dim=1))
        expected = reference_layers.layernorm(hidden)[:, encoder.config.num_prefix_tokens :]
        # Seeing the whole clip gives other features: the target really is restricted to the masked patches.
        full = reference_layers(inputs).last_hidden_state[:, 1:]
        full_masked = torch.stack([full[b, mask.masked_ids[b]] for b in range(2)])
    assert output.target.shape == (2, 46, encoder.config.hidden_size)
    torch.testing.assert_close(output.target, expected, rtol=0, atol=1e-6)
    assert (output.target - full_masked).abs().max() > 1e-3
    assert torch.equal(output.masked_ids, mask.masked_ids)


def test_loss_is_the_distance_of_l2_normalised_standardised_features():
    objective = tiny_objective().eval()
    with torch.no_grad():
        output = objective(spectrogram(objective.encoder_model.config), generator=torch.Generator().manual_seed(5))
    std, mean = torch.std_mean(output.target, dim=-1, keepdim=True)
    standardised = (output.target - mean) / std
    expected = (2 - 2 * F.cosine_similarity(output.prediction, standardised, dim=-1)).mean()
    torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-5)
    features = torch.randn(3, 7, 16)
    assert m2d_loss(features, features, standardize_target=False).item() == pytest.approx(0.0, abs=1e-6)
    assert m2d_loss(features, -features, standardize_target=False).item() == pytest.approx(4.0, abs=1e-5)


def test_ema_update_moves_the_target_towards_the_online_layers_only():
    objective = tiny_objective()
    with torch.no_grad():  # make online and target differ
        for parameter in objective.encoder_model.parameters():
            parameter.add_(torch.randn_like(parameter))
    online_before = {k: v.clone() for k, v in objective.encoder_model.state_dict().items()}
    pairs = [(online.detach().clone(), target.detach().clone()) for online, target in objective.online_target_pairs()]
    objective.update_target(0.9)
    for (online, target_before), (_, target_after) in zip(pairs, objective.online_target_pairs()):
        torch.testing.assert_close(target_after, 0.9 * target_before + 0.1 * online, rtol=0, atol=1e-6)
    for key, value in objective.encoder_model.state_dict().items():
        assert torch.equal(value, online_before[key])
    frozen = [t.detach().clone() for t in objective.target_parameters()]
    objective.update_target(1.0)
    assert all(torch.equal(a, b) for a, b in zip(frozen, objective.target_parameters()))
    # The target does not share storage with the online encoder (a real copy, not an alias).
    assert all(o.data_ptr() != t.data_ptr() for o, t in objective.online_target_pairs())


def test_ema_decay_schedules():
    linear = M2DObjectiveConfig(ema_decay_start=0.99995, ema_decay_end=0.99999)
    assert ema_decay_at(0, 1000, linear) == pytest.approx(0.99995)
    assert ema_decay_at(999, 1000, linear) == pytest.approx(0.99999)
    assert ema_decay_at(500, 1001, linear) == pytest.approx((0.99995 + 0.99999) / 2)
    cosine = M2DObjectiveConfig(ema_schedule="cosine", ema_decay_start=0.996, ema_decay_end=1.0)
    values = [ema_decay_at(step, 100, cosine) for step in range(100)]
    assert values[0] == pytest.approx(0.996) and values[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        M2DObjectiveConfig(ema_schedule="step")


def test_unset_ema_decays_scale_with_the_run_length():
    scaled = M2DObjectiveConfig()
    # Runs as long as M2D's (10^5 steps) or longer keep M2D's values.
    assert resolve_ema_decays(scaled, 100_000) == pytest.approx((0.99995, 0.99999))
    assert resolve_ema_decays(scaled, 1_000_000) == pytest.approx((0.99995, 0.99999))
    # Shorter runs: the weight the target still gives its initial state after the whole run at the start decay,
    # decay ** steps, stays what M2D's start decay leaves after 10^5 steps (e^-5), instead of ~0.9 unscaled.
    for steps in (1_300, 3_000, 20_000):
        start, end = resolve_ema_decays(scaled, steps)
        assert start**steps == pytest.approx(0.99995**100_000, rel=0.02)
        assert end**steps == pytest.approx(0.99999**100_000, rel=0.02)
    assert 0.99995**3_000 > 0.85, "unscaled, a 3,000-step run would leave the target near its random start"
    assert resolve_ema_decays(scaled, 3_000) == pytest.approx((1 - 0.05 / 30, 1 - 0.01 / 30))
    assert resolve_ema_decays(scaled, 10) == (0.99, 0.99), "floored for very short runs"
    # Explicit values are kept, one side at a time, and the schedule interpolates between the resolved values.
    assert resolve_ema_decays(M2DObjectiveConfig(ema_decay_end=1.0), 3_000) == pytest.approx((1 - 0.05 / 30, 1.0))
    assert ema_decay_at(0, 3_000, scaled) == pytest.approx(1 - 0.05 / 30)
    assert ema_decay_at(2_999, 3_000, scaled) == pytest.approx(1 - 0.01 / 30)


def test_bf16_autocast_gives_finite_loss_and_gradients():
    objective = tiny_objective().train()
    inputs = spectrogram(objective.encoder_model.config, batch=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = objective(inputs, generator=torch.Generator().manual_seed(6))
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)
    assert output.prediction.dtype == torch.bfloat16  # autocast really ran the layers in bf16
    output.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in objective.parameters() if p.grad is not None)


def test_crops_beyond_the_position_table_are_rejected():
    objective = tiny_objective()
    config = objective.encoder_model.config
    with pytest.raises(ValueError, match="window_frames"):
        objective(torch.randn(1, config.window_frames + 16, config.num_mel_bins))


def test_patch_mask_as_boolean_marks_masked_ids():
    mask = PatchMask(torch.tensor([[0, 2]]), torch.tensor([[1, 3]]))
    assert mask.as_boolean(4).tolist() == [[False, True, False, True]]
