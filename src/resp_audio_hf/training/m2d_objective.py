"""Masked Modeling Duo (M2D, Niizumi et al.) on top of `RespAudioModel`.

The online encoder (the `RespAudioModel` being trained) sees only the visible patches of each clip; an exponential
moving average (EMA) copy of its Transformer layers, the target encoder, encodes only the masked patches; a small
predictor fills the masked positions from the online output and is trained to match the target features. Only the
online encoder is kept after training.

As in M2D (nttcslab/m2d, `M2DViT`):
- masking is unstructured and random per clip, `int(num_patches * (1 - mask_ratio))` patches stay visible;
- the target encoder shares the online patch embedding, position embeddings and prefix tokens (they run under
  `no_grad` on its side) and owns an EMA copy of the Transformer layers and the final LayerNorm;
- the target features are standardised per token (M2D's default `norm_pix_loss`), then prediction and target are
  L2-normalised and the loss is their squared distance, `2 - 2 cos`, averaged over the masked tokens;
- the EMA decay moves from `ema_decay_start` to `ema_decay_end` over training (linear in M2D's code). M2D's values
  (0.99995 -> 0.99999) suit runs of ~10^5 steps; left unset, both are scaled to the run length (`resolve_ema_decays`);
- M2D builds its target layers as a second, independently initialised copy of the architecture (`target_blocks.apply(
  _init_weights)`), not as a copy of the online layers; when it further pre-trains, its checkpoint brings both. Here
  `target_initialization` chooses: `"copy"` (the default; right for further pre-training from an encoder-only
  checkpoint, which has no target) or `"independent"` (M2D's from-scratch start);
- the predictor is initialised as the encoder (`RespAudioConfig.initialization`): with `"mae"`, xavier-uniform linear
  layers and a mask token drawn from normal(0, 0.02), as M2D's decoder.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from resp_audio_hf import RespAudioConfig, RespAudioModel
from resp_audio_hf.modeling_resp_audio import (
    MAE_TOKEN_STD,
    RespAudioEncoder,
    init_mae_linear_or_patch_conv,
    sincos_2d_position_embeddings,
)

EMA_SCHEDULES = ("linear", "cosine")
TARGET_INITIALIZATIONS = ("copy", "independent")
# M2D's EMA decays (train_audio.py) and the run length they were made for: 1 - decay is the inverse of the number of
# steps the target averages over, so a run `EMA_REFERENCE_STEPS / n` times shorter needs `1 - decay` n times larger.
M2D_EMA_DECAYS = (0.99995, 0.99999)
EMA_REFERENCE_STEPS = 100_000
# Scaled decays never fall below this: shorter horizons make the target chase the online encoder step by step.
MIN_SCALED_EMA_DECAY = 0.99


@dataclass
class M2DObjectiveConfig:
    """
    Settings of the M2D objective.

    Args:
        mask_ratio: fraction of patch tokens hidden from the online encoder (0.7 in M2D).
        predictor_hidden_size: width of the predictor (512 for M2D's ViT-Base).
        predictor_num_layers: Transformer layers of the predictor (8 in M2D; 1-2 suffice for tiny test models).
        predictor_num_heads: attention heads of the predictor; must divide `predictor_hidden_size`.
        predictor_intermediate_size: MLP width of the predictor; `None` means 4 x `predictor_hidden_size`.
        standardize_target: standardise each target token over its features before the L2 normalisation (M2D's
            `norm_pix_loss=True`, the default of its training script).
        ema_decay_start: EMA decay of the target encoder at the first step (M2D: 0.99995, for runs of ~10^5 steps).
            `None` (the default) scales M2D's value to the run length: `1 - 0.00005 * max(1, 10^5 / total_steps)`,
            at least 0.99, e.g. 0.99833 for 3,000 steps (see `resolve_ema_decays`).
        ema_decay_end: EMA decay at the last step (M2D: 0.99999; BYOL-style schedules use 1.0). `None` scales M2D's
            value the same way (0.99967 for 3,000 steps).
        ema_schedule: `"linear"` (M2D's code) or `"cosine"` (BYOL: `end - (end - start) * (cos(pi t) + 1) / 2`).
        target_initialization: how the target layers start: `"copy"` of the online layers (the default: further
            pre-training from an encoder-only checkpoint starts both sides from it) or `"independent"`, drawn afresh
            with the encoder's `initialization` (M2D's own start from scratch, `M2DViT.__init__`).
    """

    mask_ratio: float = 0.7
    predictor_hidden_size: int = 512
    predictor_num_layers: int = 8
    predictor_num_heads: int = 16
    predictor_intermediate_size: int | None = None
    standardize_target: bool = True
    ema_decay_start: float | None = None
    ema_decay_end: float | None = None
    ema_schedule: str = "linear"
    target_initialization: str = "copy"

    def __post_init__(self):
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must lie strictly between 0 and 1, got {self.mask_ratio}.")
        if self.predictor_hidden_size % self.predictor_num_heads:
            raise ValueError(
                f"predictor_hidden_size ({self.predictor_hidden_size}) must be divisible by predictor_num_heads "
                f"({self.predictor_num_heads})."
            )
        if self.predictor_hidden_size % 4:
            raise ValueError(
                f"predictor_hidden_size must be divisible by 4 for its 2-D sine-cosine positions, got "
                f"{self.predictor_hidden_size}."
            )
        if self.target_initialization not in TARGET_INITIALIZATIONS:
            raise ValueError(
                f"target_initialization must be one of {TARGET_INITIALIZATIONS}, got {self.target_initialization!r}."
            )
        if self.ema_schedule not in EMA_SCHEDULES:
            raise ValueError(f"ema_schedule must be one of {EMA_SCHEDULES}, got {self.ema_schedule!r}.")
        for name in ("ema_decay_start", "ema_decay_end"):
            if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}.")


def resolve_ema_decays(config: M2DObjectiveConfig, total_steps: int) -> tuple[float, float]:
    """
    `(start, end)` EMA decays of a run of `total_steps`: the configured values, or, where unset, M2D's scaled so that
    the target averages over the same fraction of the run as in M2D's ~10^5-step runs (never above M2D's values, never
    below `MIN_SCALED_EMA_DECAY`). Unscaled, a run of a few thousand steps would leave the target at its random start.
    """
    shortening = max(1.0, EMA_REFERENCE_STEPS / max(total_steps, 1))
    scaled = [max(MIN_SCALED_EMA_DECAY, 1.0 - (1.0 - decay) * shortening) for decay in M2D_EMA_DECAYS]
    start = config.ema_decay_start if config.ema_decay_start is not None else scaled[0]
    end = config.ema_decay_end if config.ema_decay_end is not None else scaled[1]
    return start, end


def ema_decay_at(step: int, total_steps: int, config: M2DObjectiveConfig) -> float:
    """EMA decay for optimizer step `step` (0-based) of `total_steps` (unset decays scaled by `resolve_ema_decays`)."""
    progress = min(max(step / max(total_steps - 1, 1), 0.0), 1.0)
    start, end = resolve_ema_decays(config, total_steps)
    if config.ema_schedule == "linear":
        return start + (end - start) * progress
    return end - (end - start) * (math.cos(math.pi * progress) + 1.0) / 2.0


@dataclass
class PatchMask:
    """
    Which patch tokens each clip shows to the online encoder.

    Attributes:
        visible_ids: `[batch, num_visible]` sorted indices of the visible patch tokens (frequency-major grid order).
        masked_ids: `[batch, num_masked]` sorted indices of the masked patch tokens.
    """

    visible_ids: torch.Tensor
    masked_ids: torch.Tensor

    def as_boolean(self, num_patches: int) -> torch.Tensor:
        """`[batch, num_patches]` with True where a patch is masked."""
        mask = torch.zeros(self.masked_ids.shape[0], num_patches, dtype=torch.bool, device=self.masked_ids.device)
        return mask.scatter_(1, self.masked_ids, True)


def random_patch_mask(
    batch_size: int,
    num_patches: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> PatchMask:
    """Unstructured random masking, independent per clip, with the same visible count for every clip (M2D/MAE)."""
    num_visible = int(num_patches * (1 - mask_ratio))
    if num_visible < 1 or num_visible >= num_patches:
        raise ValueError(
            f"mask_ratio={mask_ratio} leaves {num_visible} of {num_patches} patches visible; both the visible and "
            "the masked sets must be non-empty. Use longer crops or a mask ratio further from 0 and 1."
        )
    # Drawn on the generator's device then moved, so a CPU generator gives the same masks on any accelerator.
    noise = torch.rand(batch_size, num_patches, generator=generator, device=generator.device if generator else "cpu")
    order = noise.argsort(dim=1).to(device)
    return PatchMask(order[:, :num_visible].sort(dim=1).values, order[:, num_visible:].sort(dim=1).values)


def _gather_tokens(tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens, 1, ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class M2DPredictor(nn.Module):
    """
    M2D's predictor (MAE's decoder with a feature head): projects the online tokens to its own width, puts a learned
    mask token at every masked position, adds fixed 2-D sine-cosine positions and predicts the target encoder's
    features of the masked patches.
    """

    def __init__(self, encoder_config: RespAudioConfig, objective_config: M2DObjectiveConfig):
        super().__init__()
        width = objective_config.predictor_hidden_size
        # The predictor is a small RespAudio encoder of its own width: same block, norm and activation choices.
        self.config = RespAudioConfig(
            hidden_size=width,
            num_hidden_layers=objective_config.predictor_num_layers,
            num_attention_heads=objective_config.predictor_num_heads,
            intermediate_size=objective_config.predictor_intermediate_size or 4 * width,
            hidden_act=encoder_config.hidden_act,
            hidden_dropout_prob=encoder_config.hidden_dropout_prob,
            attention_probs_dropout_prob=encoder_config.attention_probs_dropout_prob,
            layer_norm_eps=encoder_config.layer_norm_eps,
            qkv_bias=encoder_config.qkv_bias,
        )
        self.num_prefix_tokens = encoder_config.num_prefix_tokens
        self.grid_shape = (encoder_config.num_frequency_rows, encoder_config.num_time_patches)
        self.input_projection = nn.Linear(encoder_config.hidden_size, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        table = sincos_2d_position_embeddings(width, *self.grid_shape)
        self.register_buffer("position_embeddings", table[None], persistent=False)
        self.encoder = RespAudioEncoder(self.config)
        self.layernorm = nn.LayerNorm(width, eps=encoder_config.layer_norm_eps)
        self.head = nn.Linear(width, encoder_config.hidden_size)

    def forward(self, online_tokens: torch.Tensor, mask: PatchMask, time_patches: int) -> torch.Tensor:
        """
        online_tokens: `[batch, P + num_visible, encoder_dim]` online encoder output (prefix first).
        Returns the predicted target features of the masked patches, `[batch, num_masked, encoder_dim]`.
        """
        projected = self.input_projection(online_tokens)
        prefix, visible = projected[:, : self.num_prefix_tokens], projected[:, self.num_prefix_tokens :]
        batch, _, width = visible.shape
        num_patches = self.grid_shape[0] * time_patches
        grid = self.mask_token.to(visible.dtype).expand(batch, num_patches, width).clone()
        grid.scatter_(1, mask.visible_ids.unsqueeze(-1).expand(-1, -1, width), visible)
        positions = self.position_embeddings.reshape(1, *self.grid_shape, width)[:, :, :time_patches]
        grid = grid + positions.reshape(1, num_patches, width).to(grid.dtype)
        # Prefix tokens get no position, as the zero CLS row of M2D's decoder position table.
        hidden, _, _ = self.encoder(torch.cat([prefix, grid], dim=1))
        hidden = self.head(self.layernorm(hidden[:, self.num_prefix_tokens :]))
        return _gather_tokens(hidden, mask.masked_ids)


@dataclass
class M2DOutput(ModelOutput):
    """
    Output of [`M2DObjective`] (a `ModelOutput`, so DDP and Accelerate's output casting treat it as a mapping).

    Attributes:
        loss: mean `2 - 2 cos(prediction, target)` over the masked tokens of the batch (a 0-dim float32 tensor).
        prediction: `[batch, num_masked, dim]` predicted features of the masked patches.
        target: `[batch, num_masked, dim]` target encoder features of the masked patches (raw, before
            standardisation and L2 normalisation; no gradient).
        visible_ids: `[batch, num_visible]` patch indices the online encoder saw.
        masked_ids: `[batch, num_masked]` patch indices it had to predict.
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    target: torch.Tensor | None = None
    visible_ids: torch.Tensor | None = None
    masked_ids: torch.Tensor | None = None


class M2DObjective(nn.Module):
    """
    Online encoder (a `RespAudioModel`), its EMA target and the predictor. `forward` returns the M2D loss;
    call `update_target(decay)` after every optimizer step.
    """

    def __init__(self, encoder: RespAudioModel, config: M2DObjectiveConfig):
        super().__init__()
        self.config = config
        self.encoder_model = encoder
        # A copy of the online layers, so further pre-training starts from the pre-trained encoder on both sides
        # (M2D resumes both from its checkpoint); or redrawn, as M2D initialises its target from scratch.
        self.target_encoder = copy.deepcopy(encoder.encoder)
        self.target_layernorm = copy.deepcopy(encoder.layernorm)
        if config.target_initialization == "independent":
            for module in [*self.target_encoder.modules(), self.target_layernorm]:
                self._init_module(module)
        for parameter in self.target_parameters():
            parameter.requires_grad_(False)
        self.predictor = M2DPredictor(encoder.config, config)
        self._init_predictor()

    def _init_module(self, module: nn.Module) -> None:
        """A linear layer or LayerNorm of the predictor or the target, drawn as the encoder's `initialization` says."""
        encoder_config = self.encoder_model.config
        if isinstance(module, nn.Linear):
            if encoder_config.initialization == "mae":
                init_mae_linear_or_patch_conv(module)
            else:
                nn.init.trunc_normal_(module.weight, std=encoder_config.initializer_range)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def _init_predictor(self):
        for module in self.predictor.modules():
            self._init_module(module)
        if self.encoder_model.config.initialization == "mae":
            nn.init.normal_(self.predictor.mask_token, std=MAE_TOKEN_STD)
        else:
            nn.init.trunc_normal_(self.predictor.mask_token, std=self.encoder_model.config.initializer_range)

    def train(self, mode: bool = True) -> M2DObjective:
        super().train(mode)
        # The target is a fixed function between EMA updates: no dropout on its side, as in M2D.
        self.target_encoder.eval()
        self.target_layernorm.eval()
        return self

    def target_parameters(self) -> list[nn.Parameter]:
        return list(self.target_encoder.parameters()) + list(self.target_layernorm.parameters())

    def online_target_pairs(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """(online, target) parameter pairs the EMA ties together."""
        online = list(self.encoder_model.encoder.parameters()) + list(self.encoder_model.layernorm.parameters())
        return list(zip(online, self.target_parameters(), strict=True))

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """target <- decay * target + (1 - decay) * online."""
        for online, target in self.online_target_pairs():
            target.mul_(decay).add_(online.detach(), alpha=1.0 - decay)

    def num_patches(self, num_frames: int) -> tuple[int, int]:
        """(frequency rows, time columns) of the patch grid of a `num_frames`-frame crop."""
        config = self.encoder_model.config
        return config.num_frequency_rows, (num_frames - config.patch_frames) // config.time_stride + 1

    def forward(
        self,
        input_values: torch.Tensor,
        mask: PatchMask | None = None,
        generator: torch.Generator | None = None,
    ) -> M2DOutput:
        """
        input_values: `[batch, frames, num_mel_bins]` normalised log-mel crops,
            `patch_frames <= frames <= window_frames`.
        mask: the patch mask to use; drawn with `generator` (or the global RNG) when not given.
        """
        encoder_config = self.encoder_model.config
        batch, num_frames, _ = input_values.shape
        if not encoder_config.patch_frames <= num_frames <= encoder_config.window_frames:
            raise ValueError(
                f"M2D crops must have between {encoder_config.patch_frames} and "
                f"window_frames={encoder_config.window_frames} "
                f"frames (the span of the position embeddings), got {num_frames}. Crop the audio before featurising."
            )
        frequency_rows, time_patches = self.num_patches(num_frames)
        if mask is None:
            mask = random_patch_mask(
                batch, frequency_rows * time_patches, self.config.mask_ratio, generator, input_values.device
            )

        embeddings = self.encoder_model.embeddings
        patches, prefix = embeddings.embed_patch_grid(input_values)
        prefix = prefix.expand(batch, -1, -1)

        online_input = embeddings.dropout(torch.cat([prefix, _gather_tokens(patches, mask.visible_ids)], dim=1))
        online_hidden, _, _ = self.encoder_model.encoder(online_input)
        online_tokens = self.encoder_model.layernorm(online_hidden)
        prediction = self.predictor(online_tokens, mask, time_patches)

        with torch.no_grad():
            target_input = torch.cat([prefix, _gather_tokens(patches, mask.masked_ids)], dim=1).detach()
            target_hidden, _, _ = self.target_encoder(target_input)
            target = self.target_layernorm(target_hidden)[:, encoder_config.num_prefix_tokens :]

        loss = m2d_loss(prediction, target, self.config.standardize_target)
        return M2DOutput(
            loss=loss, prediction=prediction, target=target, visible_ids=mask.visible_ids, masked_ids=mask.masked_ids
        )


def m2d_loss(prediction: torch.Tensor, target: torch.Tensor, standardize_target: bool = True) -> torch.Tensor:
    """Mean over tokens of `||l2n(prediction) - l2n(target)||^2 = 2 - 2 cos`, computed in float32."""
    prediction, target = prediction.float(), target.float()
    if standardize_target:
        mean = target.mean(dim=-1, keepdim=True)
        variance = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (variance + 1e-6).sqrt()
    prediction = F.normalize(prediction, dim=-1)
    target = F.normalize(target, dim=-1)
    return (2.0 - 2.0 * (prediction * target).sum(dim=-1)).mean()


__all__ = [
    "M2DObjective",
    "M2DObjectiveConfig",
    "M2DOutput",
    "M2DPredictor",
    "PatchMask",
    "ema_decay_at",
    "m2d_loss",
    "random_patch_mask",
    "resolve_ema_decays",
]
