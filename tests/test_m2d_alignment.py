"""The options that align the package's M2D pre-training with the reference M2D (nttcslab/m2d): MAE/M2D
initialisation, an independently initialised target, run-scaled EMA, batch-scaled learning rate, normalisation
statistics of the training data, and M2D-X's non-square 16 x 4 patches (issue 17, item 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _paths import REPO_ROOT
from scipy import stats
from torch import nn

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel
from resp_audio_hf.modeling_resp_audio import sincos_2d_position_embeddings
from resp_audio_hf.training.m2d_objective import M2DObjective, M2DObjectiveConfig, resolve_ema_decays

TINY_PREDICTOR = dict(predictor_hidden_size=32, predictor_num_layers=1, predictor_num_heads=2)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def xavier_bound(weight: torch.Tensor) -> float:
    """Glorot and Bengio's uniform bound for a weight read as an `[out, in]` matrix (MAE flattens the patch kernel)."""
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    return math.sqrt(6.0 / (fan_in + fan_out))


def assert_uniform(values: torch.Tensor, bound: float) -> None:
    """The values look drawn from uniform(-bound, bound): Kolmogorov-Smirnov, and the support."""
    values = values.detach().flatten().double().numpy()
    assert np.abs(values).max() <= bound + 1e-7
    assert stats.kstest(values, stats.uniform(-bound, 2 * bound).cdf).pvalue > 1e-4


def built(preset: str, seed: int = 0, **overrides) -> RespAudioModel:
    torch.manual_seed(seed)
    return RespAudioModel(RespAudioConfig.from_preset(preset, **overrides))


# ---------------------------------------------------------------------------------------------- initialisation


def test_mae_initialization_draws_weights_as_mae_and_m2d_do():
    """`initialization="mae"`: MAE's `initialize_weights` (which M2D inherits): xavier-uniform matrices, the patch
    convolution as the matrix of its flattened kernel, zero linear biases, the convolution's default bias, unit
    LayerNorms, CLS from normal(0, 0.02), fixed sine-cosine positions."""
    model = built("small-m2d", initialization="mae")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 4 * 6
    for linear in linears:
        assert_uniform(linear.weight, xavier_bound(linear.weight))
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
    conv = model.embeddings.patch_embeddings.projection
    assert_uniform(conv.weight, math.sqrt(6.0 / (16 * 16 + 256)))
    assert_uniform(conv.bias, 1.0 / math.sqrt(16 * 16))  # nn.Conv2d's own bias, which MAE keeps
    for norm in (m for m in model.modules() if isinstance(m, nn.LayerNorm)):
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()
    cls = model.embeddings.cls_token.detach().flatten().double().numpy()
    assert stats.kstest(cls, stats.norm(0, 0.02).cdf).pvalue > 1e-4
    table = sincos_2d_position_embeddings(256, 5, 13)
    torch.testing.assert_close(model.embeddings.position_embeddings[0, 1:], table, rtol=0, atol=0)
    assert not model.embeddings.position_embeddings[0, 0].any()


def test_default_initialization_is_unchanged_and_differs_from_mae():
    """The default keeps the package's truncated normal (std 0.02): same weights as before the option, for every
    existing preset and converted checkpoint; "mae" draws visibly wider matrices (xavier: std 0.044 for qkv)."""
    default, explicit = built("small-m2d"), built("small-m2d", initialization="trunc_normal")
    assert default.config.initialization == "trunc_normal"
    for (name, a), b in zip(default.state_dict().items(), explicit.state_dict().values()):
        assert torch.equal(a, b), name
    qkv = default.encoder.layers[0].attention.qkv.weight
    assert qkv.std().item() == pytest.approx(0.02, rel=0.02)
    mae = built("small-m2d", initialization="mae").encoder.layers[0].attention.qkv.weight
    assert mae.std().item() == pytest.approx(math.sqrt(2.0 / (256 + 768)), rel=0.02)


def test_mae_initialization_survives_save_and_load(tmp_path):
    model = built("tiny-m2d", initialization="mae", patch_time_size=4, time_stride=4)
    model.save_pretrained(tmp_path)
    loaded = RespAudioModel.from_pretrained(tmp_path)
    assert loaded.config.initialization == "mae" and loaded.config.patch_frames == 4
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), f"{name} was re-initialised on load"
    with pytest.raises(ValueError, match="initialization"):
        RespAudioConfig(initialization="xavier")


def test_predictor_and_mask_token_follow_the_encoder_initialization():
    """M2D's decoder (the predictor) is initialised as MAE's: xavier-uniform matrices, mask token normal(0, 0.02)."""
    torch.manual_seed(0)
    encoder = RespAudioModel(RespAudioConfig.from_preset("small-m2d", initialization="mae"))
    objective = M2DObjective(encoder, M2DObjectiveConfig(predictor_hidden_size=192, predictor_num_layers=3,
                                                         predictor_num_heads=4))
    for linear in (m for m in objective.predictor.modules() if isinstance(m, nn.Linear)):
        assert_uniform(linear.weight, xavier_bound(linear.weight))
        assert not linear.bias.any()
    token = objective.predictor.mask_token.detach().flatten().double().numpy()
    assert stats.kstest(token, stats.norm(0, 0.02).cdf).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------- target encoder


def test_target_starts_as_a_copy_by_default_and_independent_as_m2d_on_request():
    """M2D builds `target_blocks` and initialises them with `_init_weights`, independently of the online blocks;
    the default copy stays for further pre-training from encoder-only checkpoints."""
    def objective(**options):
        torch.manual_seed(0)
        encoder = RespAudioModel(RespAudioConfig.from_preset("small-m2d", initialization="mae"))
        return M2DObjective(encoder, M2DObjectiveConfig(**TINY_PREDICTOR, **options))

    copied = objective()
    assert all(torch.equal(online, target) for online, target in copied.online_target_pairs())
    independent = objective(target_initialization="independent")
    # The online encoder is the same draw either way; only the target differs.
    for (name, a), b in zip(copied.encoder_model.state_dict().items(), independent.encoder_model.state_dict().values()):
        assert torch.equal(a, b), name
    target_linears = [m for m in independent.target_encoder.modules() if isinstance(m, nn.Linear)]
    online_linears = [m for m in independent.encoder_model.encoder.modules() if isinstance(m, nn.Linear)]
    for target, online in zip(target_linears, online_linears, strict=True):
        assert_uniform(target.weight, xavier_bound(target.weight))
        assert abs(np.corrcoef(target.weight.flatten().detach(), online.weight.flatten().detach())[0, 1]) < 0.05
    assert not any(p.requires_grad for p in independent.target_parameters())
    with pytest.raises(ValueError, match="target_initialization"):
        M2DObjectiveConfig(target_initialization="random")


# ---------------------------------------------------------------------------------------------- EMA and learning rate


def shipped_schedule(name: str) -> dict:
    from resp_audio_hf.training.config import PretrainConfig, load_config
    from resp_audio_hf.training.pretrain import resolve_schedule

    config = load_config(PretrainConfig, str(REPO_ROOT / "training" / "configs" / name))
    return resolve_schedule(config, batches_per_epoch=None, world_size=1)


def test_shipped_config_scales_ema_to_its_run_and_keeps_its_learning_rate_through_blr():
    """M2D's EMA 0.99995 -> 0.99999 at 10^5 steps, scaled to the 1,300 steps of small_m2d_resp.yaml (the values its
    comment and card state); its learning rate is now `blr * batch / 256` (M2D's rule) giving the 5e-4 it ran with."""
    schedule = shipped_schedule("small_m2d_resp.yaml")
    assert schedule["total_steps"] == 1300 and schedule["effective_batch_size"] == 32
    assert (schedule["ema_decay_start"], schedule["ema_decay_end"]) == pytest.approx((0.996154, 0.999231), abs=1e-6)
    assert schedule["peak_lr"] == pytest.approx(5e-4, rel=1e-12)
    scaled = (1 - 5e-5 * 1e5 / 1300, 1 - 1e-5 * 1e5 / 1300)
    assert resolve_ema_decays(M2DObjectiveConfig(), 1300) == pytest.approx(scaled)


def test_aligned_config_uses_m2d_learning_rate_rule_and_every_aligned_option():
    from resp_audio_hf.training.config import PretrainConfig, load_config

    config = load_config(PretrainConfig, str(REPO_ROOT / "training" / "configs" / "small_m2d_resp_aligned.yaml"))
    schedule = shipped_schedule("small_m2d_resp_aligned.yaml")
    assert config.optimizer.lr is None
    assert schedule["peak_lr"] == pytest.approx(config.optimizer.blr * schedule["effective_batch_size"] / 256)
    assert config.objective.ema_decay_start is None and config.objective.ema_decay_end is None
    assert config.objective.target_initialization == "independent"
    assert config.data.normalization_statistics == "training"
    encoder_config = RespAudioConfig.from_preset(config.model.preset, **config.model.config_overrides)
    assert encoder_config.initialization == "mae"
    assert (encoder_config.patch_size, encoder_config.patch_frames, encoder_config.time_stride) == (16, 4, 4)
    assert all("test" not in str(c.path) for c in config.data.corpora), "never SPRSound's test part"


# ---------------------------------------------------------------------------------------------- 16 x 4 patches


def test_16x4_patches_embed_each_block_of_16_mel_bins_by_4_frames():
    """Against MAE's `patchify` with `(ph, pw) = (16, 4)`, written out: token (f, t) is the kernel applied to mel bins
    16f..16f+15 of frames 4t..4t+3, frequency-major, plus the sine-cosine position of (f, t)."""
    model = built("small-m2d-16x4", initialization="mae").eval()
    config = model.config
    assert (config.num_frequency_rows, config.num_time_patches) == (5, 50)  # M2D-X's 80x200p16x4
    inputs = torch.randn(2, 200, 80, generator=torch.Generator().manual_seed(3))
    patches, _ = model.embeddings.embed_patch_grid(inputs)
    conv = model.embeddings.patch_embeddings.projection
    blocks = inputs.reshape(2, 50, 4, 5, 16).permute(0, 3, 1, 4, 2)  # [batch, f, t, mel 16, frames 4]
    expected = blocks.reshape(2, 250, 64) @ conv.weight.reshape(256, 64).T + conv.bias
    expected = expected + sincos_2d_position_embeddings(256, 5, 50)
    torch.testing.assert_close(patches, expected, rtol=1e-5, atol=1e-5)


def test_16x4_model_pools_per_frequency_row_and_ignores_padding():
    model = built("tiny-m2d", patch_time_size=4, time_stride=4).eval()
    config = model.config
    assert model.embeddings.patch_embeddings.projection.kernel_size == (16, 4)
    assert config.num_time_patches == (208 - 4) // 4 + 1 == 52
    short = torch.randn(1, 90, 80, generator=torch.Generator().manual_seed(1))
    padded = torch.cat([short, torch.zeros(1, 30, 80)], dim=1)
    mask = torch.cat([torch.ones(1, 90), torch.zeros(1, 30)], dim=1).long()
    with torch.no_grad():
        alone = model(short)
        in_batch = model(padded, attention_mask=mask)
        long = model(torch.randn(1, 500, 80))  # several windows
    assert alone.feature_time_mask.shape == (1, (90 - 4) // 4 + 1)
    torch.testing.assert_close(alone.pooler_output, in_batch.pooler_output, rtol=1e-4, atol=1e-5)
    rows = alone.last_hidden_state[:, 1:].reshape(1, 5, -1, 32).mean(dim=2)
    torch.testing.assert_close(alone.pooler_output, rows.reshape(1, -1), rtol=1e-5, atol=1e-6)
    assert long.pooler_output.shape == (1, 5 * 32) and long.feature_time_mask.shape == (1, (500 - 4) // 4 + 1)
    # The front end built for it needs one 4-frame patch, not 16 frames.
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    assert extractor.patch_size == 4


def test_m2d_objective_masks_the_16x4_grid():
    torch.manual_seed(0)
    encoder = RespAudioModel(RespAudioConfig.from_preset("tiny-m2d", patch_time_size=4, time_stride=4))
    objective = M2DObjective(encoder, M2DObjectiveConfig(**TINY_PREDICTOR))
    inputs = torch.randn(3, 120, 80)
    output = objective(inputs, generator=torch.Generator().manual_seed(0))
    grid = 5 * ((120 - 4) // 4 + 1)
    assert objective.num_patches(120) == (5, 30)
    assert output.visible_ids.shape == (3, int(grid * 0.3)) and output.masked_ids.shape == (3, grid - int(grid * 0.3))
    assert output.prediction.shape == output.target.shape == (3, grid - int(grid * 0.3), 32)
    output.loss.backward()
    assert encoder.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_existing_presets_keep_square_patches():
    from resp_audio_hf import PRESETS

    for name in PRESETS:
        if name != "small-m2d-16x4":
            config = RespAudioConfig.from_preset(name)
            assert config.patch_time_size is None and config.patch_frames == config.patch_size, name
