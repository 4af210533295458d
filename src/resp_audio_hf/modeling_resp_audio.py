"""Spectrogram Vision Transformer for respiratory audio (PaSST, AST and M2D families) with frequency-preserving pooling."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, add_start_docstrings_to_model_forward
from transformers.utils.generic import can_return_tuple

from .audio_classifier import AudioClassifierMixin
from .configuration_resp_audio import RespAudioConfig
from .model_inputs import MODEL_INPUTS_DOCSTRING, check_model_inputs, checked_frame_block
from .pooling import pool_embeddings


@dataclass
class RespAudioModelOutput(ModelOutput):
    """
    Output of [`RespAudioModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_prefix_tokens + F' * T', hidden_size)`):
            Final tokens: the prefix (CLS, distillation) tokens, then the patch tokens in frequency-major order (row `f`
            of the patch grid holds tokens `f * T' ... f * T' + T' - 1`). For inputs longer than one window the patch
            tokens of all windows are joined along time and the prefix tokens are averaged over windows.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, config.pooled_size)`):
            The clip embedding chosen by `config.pooling`.
        feature_time_mask (`torch.BoolTensor` of shape `(batch_size, T')`):
            Which time columns of the patch grid hold real audio (not padding).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Embedding output and the output of every layer, laid out like `last_hidden_state`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Attention probabilities of every layer, `(batch_size * num_windows, num_heads, tokens, tokens)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    feature_time_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def sincos_2d_position_embeddings(hidden_size: int, frequency_patches: int, time_patches: int) -> torch.Tensor:
    """MAE/M2D fixed 2-D sine-cosine table `[frequency_patches * time_patches, hidden_size]` (frequency-major)."""
    if hidden_size % 4:
        raise ValueError(f"sincos_2d position embeddings need hidden_size divisible by 4, got {hidden_size}.")
    quarter = hidden_size // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    freq_index, time_index = torch.meshgrid(
        torch.arange(frequency_patches, dtype=torch.float64), torch.arange(time_patches, dtype=torch.float64),
        indexing="ij",
    )

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # As in MAE's rectangular variant, the first half of the channels encodes the column (time), the second the row.
    return torch.cat([encode(time_index), encode(freq_index)], dim=1).float()


class EncodedWindows(NamedTuple):
    """What `RespAudioModel` gets from encoding a batch of windows (or joining the windows of longer input)."""

    hidden: torch.Tensor  # [batch, prefix + F' * T', dim], after the final LayerNorm
    all_hidden: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None
    time_mask: torch.Tensor  # [batch, T'], the feature time mask
    frequency_rows: int


class RespAudioPatchEmbeddings(nn.Module):
    """Cuts a `[batch, frames, mel_bins]` spectrogram into (possibly overlapping) patches: `[batch, dim, F', T']`."""

    def __init__(self, config: RespAudioConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            1,
            config.hidden_size,
            kernel_size=(config.patch_size, config.patch_frames),
            stride=(config.frequency_stride, config.time_stride),
        )

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        spectrogram = input_values.transpose(1, 2).unsqueeze(1)
        return self.projection(spectrogram.to(self.projection.weight.dtype))


class RespAudioEmbeddings(nn.Module):
    """Patch embeddings plus position information and the CLS (and distillation) tokens."""

    def __init__(self, config: RespAudioConfig):
        super().__init__()
        self.config = config
        dim = config.hidden_size
        self.patch_embeddings = RespAudioPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, dim)) if config.num_prefix_tokens == 2 else None
        grid_f, grid_t = config.num_frequency_rows, config.num_time_patches
        if config.position_embedding_type == "time_freq":
            self.prefix_position_embeddings = nn.Parameter(torch.zeros(1, config.num_prefix_tokens, dim))
            self.frequency_position_embeddings = nn.Parameter(torch.zeros(1, dim, grid_f, 1))
            self.time_position_embeddings = nn.Parameter(torch.zeros(1, dim, 1, grid_t))
        else:
            self.position_embeddings = nn.Parameter(
                torch.zeros(1, config.num_prefix_tokens + grid_f * grid_t, dim),
                requires_grad=config.position_embedding_type == "learned_2d",
            )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _grid_and_prefix_positions(self, time_patches: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Position embeddings `[1, dim, F', time_patches]` for the grid and `[1, P, dim]` for the prefix tokens."""
        config = self.config
        if config.position_embedding_type == "time_freq":
            grid = self.frequency_position_embeddings + self.time_position_embeddings[..., :time_patches]
            return grid, self.prefix_position_embeddings
        prefix = self.position_embeddings[:, : config.num_prefix_tokens]
        grid = self.position_embeddings[:, config.num_prefix_tokens :]
        grid = grid.reshape(1, config.num_frequency_rows, config.num_time_patches, -1)[:, :, :time_patches]
        return grid.permute(0, 3, 1, 2), prefix

    def _structured_patchout(self, grid: torch.Tensor, time_mask: torch.Tensor):
        config = self.config
        _, _, grid_f, grid_t = grid.shape
        if config.structured_patchout_time and grid_t > config.structured_patchout_time:
            keep = torch.randperm(grid_t, device=grid.device)[: grid_t - config.structured_patchout_time].sort().values
            grid, time_mask = grid[..., keep], time_mask[:, keep]
        if config.structured_patchout_frequency and grid_f > config.structured_patchout_frequency:
            keep_f = grid_f - config.structured_patchout_frequency
            keep = torch.randperm(grid_f, device=grid.device)[:keep_f].sort().values
            grid = grid[:, :, keep]
        return grid, time_mask

    def _position_embedded_pieces(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The position-embedded patch grid `[batch, dim, F', T']` and prefix tokens `[1, P, dim]`."""
        grid = self.patch_embeddings(input_values)
        time_patches = grid.shape[-1]
        if time_patches > self.config.num_time_patches:
            raise ValueError(
                f"Got {time_patches} time patches but the position embeddings cover {self.config.num_time_patches}; "
                "RespAudioModel splits longer input into windows, call it rather than the embeddings directly."
            )
        grid_positions, prefix_positions = self._grid_and_prefix_positions(time_patches)
        prefix = [self.cls_token] + ([self.distillation_token] if self.distillation_token is not None else [])
        return grid + grid_positions, torch.cat(prefix, dim=1) + prefix_positions

    def embed_patch_grid(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The pieces masked-modelling objectives (M2D) choose from before calling the encoder: the position-embedded
        patch tokens `[batch, F' * T', dim]` (frequency-major, no patchout, no dropout) and the position-embedded
        prefix tokens `[1, P, dim]`. `forward` joins the same pieces after optional patchout.
        """
        grid, prefix = self._position_embedded_pieces(input_values)
        return grid.flatten(2).transpose(1, 2), prefix

    def forward(self, input_values: torch.Tensor, feature_time_mask: torch.Tensor):
        """
        Returns the token sequence `[batch, P + F'' * T'', dim]`, the number of frequency rows `F''` kept and the time
        mask `[batch, T'']` (patchout may drop rows and columns during training).
        """
        grid, prefix = self._position_embedded_pieces(input_values)
        if self.training:
            grid, feature_time_mask = self._structured_patchout(grid, feature_time_mask)
        frequency_rows = grid.shape[2]
        patches = grid.flatten(2).transpose(1, 2)
        tokens = torch.cat([prefix.expand(grid.shape[0], -1, -1), patches], dim=1)
        return self.dropout(tokens), frequency_rows, feature_time_mask


def _inference_on_cpu(hidden_states: torch.Tensor) -> bool:
    """
    Whether a layer runs eagerly on CPU without autograd, where it keeps every large buffer of a window at most one
    hidden state in size: the attention projects query, key and value as three `dim`-wide products instead of one
    `3 * dim`-wide one, and the MLP transforms one `intermediate_size / hidden_size + 1`-th of the tokens at a time
    into a preallocated output. The allocator then reuses the buffers freed by one step for the next instead of
    growing its heap, and the 4x-wide activations are alive for one share of the tokens only. The rows and columns of
    a product are independent, so the outputs are bitwise those of the fused, one-pass computation.
    """
    return hidden_states.device.type == "cpu" and not torch.is_grad_enabled() and not torch.compiler.is_compiling()


class RespAudioSelfAttention(nn.Module):
    """Multi-head self-attention with one fused query/key/value projection (timm layout), computed with SDPA."""

    def __init__(self, config: RespAudioConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)

    def project(self, hidden_states):
        """Query, key and value, each `[batch, heads, tokens, head_dim]`."""
        batch, tokens, dim = hidden_states.shape
        if not _inference_on_cpu(hidden_states):
            qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
            return qkv.permute(2, 0, 3, 1, 4).unbind(0)
        weights = self.qkv.weight.split(dim)
        biases = (None,) * 3 if self.qkv.bias is None else self.qkv.bias.split(dim)
        return tuple(
            nn.functional.linear(hidden_states, weight, bias).view(batch, tokens, self.num_heads, self.head_dim)
            .transpose(1, 2)
            for weight, bias in zip(weights, biases, strict=True)
        )

    def forward(self, hidden_states, key_mask=None, output_attentions: bool = False):
        batch, tokens, dim = hidden_states.shape
        query, key, value = self.project(hidden_states)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        dropout = self.attention_dropout if self.training else 0.0
        if output_attentions:
            scores = (query @ key.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, torch.finfo(scores.dtype).min)
            weights = nn.functional.dropout(scores.softmax(dim=-1), p=dropout, training=self.training)
            context = weights @ value
        else:
            weights = None
            context = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout)
        del query, key, value  # freed before the output projection allocates
        context = context.transpose(1, 2).reshape(batch, tokens, dim)
        return self.output_dropout(self.proj(context)), weights


class RespAudioMLP(nn.Module):
    def __init__(self, config: RespAudioConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # One slice more than the width ratio, so that a slice's wide activation is smaller than a hidden state and
        # fits in the blocks the attention freed; at exactly the ratio, rounding up made it a few rows larger.
        self.slices = config.intermediate_size // config.hidden_size + 1
        self.min_tokens_per_slice = 4  # products of 1 to 3 rows take another kernel, which rounds differently

    def transform(self, hidden_states):
        return self.dropout(self.fc2(self.dropout(self.activation(self.fc1(hidden_states)))))

    def forward(self, hidden_states):
        if hidden_states.numel() < self.slices * self.min_tokens_per_slice * hidden_states.shape[-1] or (
            not _inference_on_cpu(hidden_states)
        ):
            return self.transform(hidden_states)
        # Tokens of every batch item in one row each, so that every slice is a contiguous matrix, whose product is
        # computed as the one-pass product is; a slice across a batch of 3-d tensors takes another kernel.
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
        # Written into one preallocated output rather than concatenated: one window buffer less at the peak.
        transformed = torch.empty_like(tokens)
        for part, destination in zip(tokens.tensor_split(self.slices), transformed.tensor_split(self.slices), strict=True):
            destination.copy_(self.transform(part))
        return transformed.view_as(hidden_states)


class RespAudioLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer block."""

    def __init__(self, config: RespAudioConfig):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = RespAudioSelfAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = RespAudioMLP(config)

    def forward(self, hidden_states, key_mask=None, output_attentions: bool = False):
        attended, weights = self.attention(self.layernorm_before(hidden_states), key_mask, output_attentions)
        hidden_states = hidden_states + attended
        del attended
        transformed = self.mlp(self.layernorm_after(hidden_states))
        if torch.is_grad_enabled():
            return hidden_states + transformed, weights
        # Without autograd the sum can overwrite this layer's own intermediate tensor: one ViT-B window buffer less.
        return hidden_states.add_(transformed), weights


class RespAudioEncoder(nn.Module):
    def __init__(self, config: RespAudioConfig):
        super().__init__()
        self.layers = nn.ModuleList([RespAudioLayer(config) for _ in range(config.num_hidden_layers)])
        self.gradient_checkpointing = False

    def forward(self, hidden_states, key_mask=None, output_hidden_states=False, output_attentions=False):
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, key_mask, output_attentions)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        return hidden_states, all_hidden, all_attentions


def frequency_row_means(patch_tokens: torch.Tensor, feature_time_mask: torch.Tensor) -> torch.Tensor:
    """
    Patch tokens `[batch, F' * T', dim]` (frequency rows of `T'` time columns, as the encoder orders them) averaged
    over the valid time columns (`feature_time_mask` `[batch, T']`) of each frequency row -> `[batch, F', dim]`.
    """
    batch, num_tokens, dim = patch_tokens.shape
    time_patches = feature_time_mask.shape[1]
    grid = patch_tokens.reshape(batch, num_tokens // time_patches, time_patches, dim)
    weights = feature_time_mask.to(grid.dtype)[:, None, :, None]
    return (grid * weights).sum(dim=2) / weights.sum(dim=2).clamp_min(1.0)


class RespAudioPreTrainedModel(PreTrainedModel):
    config_class = RespAudioConfig
    config: RespAudioConfig
    base_model_prefix = "resp_audio"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["RespAudioEmbeddings", "RespAudioLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if self.config.initialization == "mae" and isinstance(module, (nn.Linear, nn.Conv2d)):
            init_mae_linear_or_patch_conv(module)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, RespAudioEmbeddings):
            tokens = [module.cls_token, module.distillation_token]
            for token in (t for t in tokens if t is not None):
                if self.config.initialization == "mae":
                    init.normal_(token, std=MAE_TOKEN_STD)
                else:
                    init.trunc_normal_(token, std=std)
            config = self.config
            if config.position_embedding_type == "time_freq":
                init.trunc_normal_(module.prefix_position_embeddings, std=std)
                init.trunc_normal_(module.frequency_position_embeddings, std=std)
                init.trunc_normal_(module.time_position_embeddings, std=std)
            elif config.position_embedding_type == "learned_2d":
                init.trunc_normal_(module.position_embeddings, std=std)
            else:
                table = sincos_2d_position_embeddings(
                    config.hidden_size, config.num_frequency_rows, config.num_time_patches
                )
                prefix = torch.zeros(config.num_prefix_tokens, config.hidden_size)
                init.copy_(module.position_embeddings, torch.cat([prefix, table])[None])


# MAE/M2D draw their CLS and mask tokens from a normal of this std, whatever the width.
MAE_TOKEN_STD = 0.02


def init_mae_linear_or_patch_conv(module: nn.Linear | nn.Conv2d) -> None:
    """
    MAE's and M2D's initialisation (`MaskedAutoencoderViT.initialize_weights`) of a linear layer or of the patch
    convolution: xavier-uniform on the weight as a `[out, in]` matrix (the convolution's kernel flattened, "like
    nn.Linear"); linear biases zero; the convolution's bias is left as `nn.Conv2d` draws it in MAE, which only
    re-initialises its weight: uniform within `1 / sqrt(fan_in)`, drawn here explicitly so that models built on the
    meta device get it too.
    """
    weight = module.weight
    fan_out, fan_in = weight.shape[0], weight[0].numel()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    init.uniform_(weight, -bound, bound)
    if module.bias is not None:
        if isinstance(module, nn.Conv2d):
            init.uniform_(module.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        else:
            init.zeros_(module.bias)


class RespAudioModel(RespAudioPreTrainedModel):
    """
    The encoder. Input: normalised log-mel frames `[batch, frames, num_mel_bins]` from [`RespAudioFeatureExtractor`]
    and their frame mask. Padding is excluded from attention and pooling, so a clip gives the same embedding alone or
    in a padded batch. Input longer than `config.window_frames` frames is encoded in consecutive, non-overlapping windows
    aligned to the patch grid (as M2D's runtime does; PaSST's HEAR wrapper averages overlapping windows instead, which
    `resp_audio_hf.hear_windows.hear_scene_embeddings` reproduces), `config.window_batch_size` windows at a time.
    """

    def __init__(self, config: RespAudioConfig):
        super().__init__(config)
        self.embeddings = RespAudioEmbeddings(config)
        self.encoder = RespAudioEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> RespAudioPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def time_mask(self, attention_mask, num_frames: int, batch: int, device) -> torch.Tensor:
        config = self.config
        time_patches = (num_frames - config.patch_frames) // config.time_stride + 1
        starts = torch.arange(time_patches, device=device) * config.time_stride
        if attention_mask is None:
            return torch.ones(batch, time_patches, dtype=torch.bool, device=device)
        valid_frames = attention_mask.to(device).sum(dim=1)
        # A patch is real audio when it lies wholly inside the clip, as it would when the clip is encoded alone.
        mask = (starts[None, :] + config.patch_frames) <= valid_frames[:, None]
        mask[:, 0] = True
        return mask

    def _encode_window_batch(self, spectrogram, time_mask, output_hidden_states, output_attentions, may_be_padded=True):
        tokens, frequency_rows, time_mask = self.embeddings(spectrogram, time_mask)
        attend_mask = None
        # Without padding there is nothing to mask, and no need for the device sync of `all()` (a graph break under
        # torch.compile); with a mask, an all-true one is still dropped so that SDPA can pick its fastest kernel.
        if may_be_padded:
            prefix_mask = torch.ones(
                tokens.shape[0], self.config.num_prefix_tokens, dtype=torch.bool, device=tokens.device
            )
            key_mask = torch.cat([prefix_mask, time_mask.repeat(1, frequency_rows)], dim=1)
            attend_mask = None if bool(key_mask.all()) else key_mask
        hidden, all_hidden, attentions = self.encoder(tokens, attend_mask, output_hidden_states, output_attentions)
        return EncodedWindows(self.layernorm(hidden), all_hidden, attentions, time_mask, frequency_rows)

    @can_return_tuple
    @add_start_docstrings_to_model_forward(MODEL_INPUTS_DOCSTRING)
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> RespAudioModelOutput:
        config = self.config
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        check_model_inputs(input_values, attention_mask, config.num_mel_bins, min_frames=config.patch_frames)
        batch, num_frames, _ = input_values.shape

        time_mask = self.time_mask(attention_mask, num_frames, batch, input_values.device)
        total_time_patches = time_mask.shape[1]
        window_patches = config.num_time_patches
        if total_time_patches <= window_patches:
            hidden, all_hidden, attentions, time_mask, frequency_rows = self._encode_window_batch(
                input_values,
                time_mask,
                output_hidden_states,
                output_attentions,
                may_be_padded=attention_mask is not None,
            )
        else:
            hidden, all_hidden, attentions, time_mask, frequency_rows = self._encode_in_windows(
                input_values, time_mask, output_hidden_states, output_attentions
            )

        prefix_tokens = config.num_prefix_tokens
        row_means = frequency_row_means(hidden[:, prefix_tokens:], time_mask)
        pooled = pool_embeddings(config.pooling, row_means, hidden[:, :prefix_tokens])
        return RespAudioModelOutput(
            last_hidden_state=hidden,
            pooler_output=pooled,
            feature_time_mask=time_mask,
            hidden_states=all_hidden,
            attentions=attentions,
        )

    def split_into_windows(self, input_values, time_mask):
        """
        Consecutive `window_frames`-frame windows `[batch * W, window_frames, mel]` (zero-padded at the end), their patch
        time masks `[batch * W, T']` and the input's time mask padded to `W * T'` columns.
        """
        config = self.config
        batch, num_frames, mel_bins = input_values.shape
        window_patches = config.num_time_patches
        hop_frames = window_patches * config.time_stride
        num_windows = math.ceil(time_mask.shape[1] / window_patches)
        padded_frames = (num_windows - 1) * hop_frames + config.window_frames
        padded = nn.functional.pad(input_values, (0, 0, 0, max(0, padded_frames - num_frames)))
        windows = padded.unfold(1, config.window_frames, hop_frames)[:, :num_windows]  # [B, W, mel, frames]
        windows = windows.permute(0, 1, 3, 2).reshape(batch * num_windows, config.window_frames, mel_bins)
        padded_mask = nn.functional.pad(time_mask, (0, num_windows * window_patches - time_mask.shape[1]))
        # Windows made only of padding still run (their tokens are discarded); their queries attend to the prefix.
        return windows, padded_mask.reshape(batch * num_windows, window_patches), padded_mask

    def _encode_in_windows(self, input_values, time_mask, output_hidden_states, output_attentions):
        config = self.config
        batch = input_values.shape[0]
        window_patches = config.num_time_patches
        windows, window_masks, padded_mask = self.split_into_windows(input_values, time_mask)
        num_windows = windows.shape[0] // batch

        outputs = [
            self._encode_window_batch(
                windows[start : start + config.window_batch_size],
                window_masks[start : start + config.window_batch_size],
                output_hidden_states,
                output_attentions,
            )
            for start in range(0, batch * num_windows, config.window_batch_size)
        ]
        frequency_rows = outputs[0].frequency_rows
        merged_mask = torch.cat([o.time_mask for o in outputs]).reshape(batch, -1)
        if merged_mask.shape[1] == num_windows * window_patches:  # no patchout: drop the padding past the input
            merged_mask = merged_mask[:, : time_mask.shape[1]]
        real_windows = padded_mask.reshape(batch, num_windows, window_patches).any(dim=2)

        def join(states: torch.Tensor) -> torch.Tensor:
            prefix = states[:, : config.num_prefix_tokens].reshape(batch, num_windows, config.num_prefix_tokens, -1)
            weights = real_windows.to(states.dtype)[:, :, None, None]
            prefix = (prefix * weights).sum(dim=1) / weights.sum(dim=1)
            patches = states[:, config.num_prefix_tokens :].reshape(batch, num_windows, frequency_rows, -1, states.shape[-1])
            patches = patches.permute(0, 2, 1, 3, 4).reshape(batch, frequency_rows, -1, states.shape[-1])
            patches = patches[:, :, : merged_mask.shape[1]].reshape(batch, -1, states.shape[-1])
            return torch.cat([prefix, patches], dim=1)

        hidden = join(torch.cat([o.hidden for o in outputs]))
        all_hidden = None
        if output_hidden_states:
            layers = range(len(outputs[0].all_hidden))
            all_hidden = tuple(join(torch.cat([o.all_hidden[i] for o in outputs])) for i in layers)
        attentions = None
        if output_attentions:
            layers = range(len(outputs[0].attentions))
            attentions = tuple(torch.cat([o.attentions[i] for o in outputs]) for i in layers)
        return EncodedWindows(hidden, all_hidden, attentions, merged_mask, frequency_rows)

    @torch.no_grad()
    def pool_frame_stream(self, frame_blocks, windows_at_once: int | None = None) -> torch.Tensor:
        """
        `pooler_output` `[1, config.pooled_size]` of one recording whose normalised log-mel frames arrive as
        consecutive `[frames, num_mel_bins]` blocks, e.g. from [`RespAudioFeatureExtractor.frame_blocks`]: equal to
        `model(input_values=all_frames[None]).pooler_output` within float round-off, but only `windows_at_once`
        windows of frames and tokens are alive at a time (default: one on CPU, `config.window_batch_size` on an
        accelerator), so hours of audio embed in bounded memory. Each group of windows is encoded as `forward` encodes
        it, then reduced to running sums (the poolings are means over time), and freed. Runs without gradients; put the
        model in eval mode first.
        """
        config = self.config
        device = self.embeddings.patch_embeddings.projection.weight.device
        # On CPU each more ViT-B window at once adds 50 to 100 MB to the peak and is no faster (PaSST, 3 min: 54 s for
        # 1, 2 or 4 at a time; benchmarks/README.md), so one at a time keeps the peak lowest.
        group = windows_at_once or (1 if device.type == "cpu" else config.window_batch_size)
        hop_frames = config.num_time_patches * config.time_stride
        group_frames = (group - 1) * hop_frames + config.window_frames
        pooling = _RunningPool(config)
        pending = None  # frames not yet encoded, starting at the next window's first frame
        for block in frame_blocks:
            block = checked_frame_block(block, config.num_mel_bins, device)
            pending = block if pending is None else torch.cat([pending, block])
            while pending.shape[0] >= group_frames:  # a full group: every patch of its windows is real audio
                self._pool_windows(pending[None, :group_frames], pooling, group)
                pending = pending[group * hop_frames :].clone()
        if pooling.windows == 0 and (pending is None or pending.shape[0] < config.patch_frames):
            got = 0 if pending is None else pending.shape[0]
            raise ValueError(f"Need at least {config.patch_frames} frames (one patch), got {got}.")
        if pending is not None and pending.shape[0] >= config.patch_frames:
            self._pool_windows(pending[None], pooling, group)
        return pooling.result()

    def _pool_windows(self, input_values: torch.Tensor, pooling: _RunningPool, group: int) -> None:
        """Encode the frames `[1, frames, mel]` in windows, `group` at a time, into `pooling`."""
        time_mask = self.time_mask(None, input_values.shape[1], 1, input_values.device)
        windows, window_masks, _ = self.split_into_windows(input_values, time_mask)
        for start in range(0, windows.shape[0], group):
            encoded = self._encode_window_batch(
                windows[start : start + group], window_masks[start : start + group], False, False
            )
            pooling.add(encoded.hidden, encoded.time_mask, encoded.frequency_rows)


class _RunningPool:
    """Running sums behind `config.pooling` over windows of one clip: the poolings are means, so sums and counts do."""

    def __init__(self, config: RespAudioConfig):
        self.config = config
        self.windows = 0
        self.token_sums = None  # [F', dim]: patch tokens summed over the real time columns of every window
        self.columns = 0
        self.prefix_sum = None  # [P, dim]: prefix tokens summed over windows

    def add(self, hidden: torch.Tensor, time_mask: torch.Tensor, frequency_rows: int) -> None:
        prefix_tokens = self.config.num_prefix_tokens
        windows, _, dim = hidden.shape
        grid = hidden[:, prefix_tokens:].reshape(windows, frequency_rows, time_mask.shape[1], dim)
        weights = time_mask.to(hidden.dtype)[:, None, :, None]
        token_sums = (grid * weights).sum(dim=(0, 2))
        prefix_sum = hidden[:, :prefix_tokens].sum(dim=0)  # every window of one clip holds real audio
        # Summed in place: a new sum per window would be a long-lived allocation made at the window's memory peak.
        self.token_sums = token_sums if self.token_sums is None else self.token_sums.add_(token_sums)
        self.prefix_sum = prefix_sum if self.prefix_sum is None else self.prefix_sum.add_(prefix_sum)
        self.columns += int(time_mask.sum())  # real (window, time column) pairs; every frequency row has them all
        self.windows += windows

    def result(self) -> torch.Tensor:
        rows = self.token_sums / max(self.columns, 1)
        return pool_embeddings(self.config.pooling, rows[None], (self.prefix_sum / self.windows)[None])


class RespAudioClassificationHead(nn.Module):
    """LayerNorm and a linear layer on the pooled embedding, as PaSST's head."""

    def __init__(self, config: RespAudioConfig):
        super().__init__()
        eps = config.classifier_layer_norm_eps or config.layer_norm_eps
        self.layernorm = nn.LayerNorm(config.pooled_size, eps=eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.dense = nn.Linear(config.pooled_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(self.layernorm(pooled)))


class RespAudioForAudioClassification(AudioClassifierMixin, RespAudioPreTrainedModel):
    """
    [`RespAudioModel`] with a classification head on `pooler_output`. `config.problem_type` selects the loss:
    `single_label_classification` (cross-entropy), `multi_label_classification` (binary cross-entropy on float
    multi-hot labels) or `regression` (mean squared error, `num_labels` targets); unset, it is inferred from the
    labels as everywhere in transformers.
    """

    def __init__(self, config: RespAudioConfig):
        super().__init__(config)
        self.resp_audio = RespAudioModel(config)
        self.classifier = RespAudioClassificationHead(config)
        self.post_init()

    def head_input(self, input_values, attention_mask, output_hidden_states, output_attentions):
        outputs = self.resp_audio(
            input_values,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        return outputs.pooler_output, outputs.hidden_states, outputs.attentions


__all__ = [
    "RespAudioForAudioClassification",
    "RespAudioModel",
    "RespAudioModelOutput",
    "RespAudioPreTrainedModel",
]
