"""EfficientAT's MobileNetV3 audio tagger (Schmid, Koutini and Widmer, ICASSP 2023) with frequency-preserving pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, add_start_docstrings_to_model_forward
from transformers.utils.generic import can_return_tuple

from .audio_classifier import AudioClassifierMixin
from .configuration_efficientat import EfficientATConfig, make_divisible
from .model_inputs import MODEL_INPUTS_DOCSTRING, check_model_inputs, checked_frame_block
from .pooling import pool_embeddings


class InvertedResidualSpec(NamedTuple):
    """One row of MobileNetV3-Large's block table (Howard et al. 2019, table 1), widths before scaling."""

    in_channels: int
    kernel_size: int
    expanded_channels: int
    out_channels: int
    squeeze_excitation: bool
    hard_swish: bool  # otherwise ReLU
    stage: int | None  # index into `config.stage_strides` for the four downsampling blocks, else stride 1


MOBILENET_V3_LARGE_BLOCKS = (
    InvertedResidualSpec(16, 3, 16, 16, False, False, None),
    InvertedResidualSpec(16, 3, 64, 24, False, False, 0),
    InvertedResidualSpec(24, 3, 72, 24, False, False, None),
    InvertedResidualSpec(24, 5, 72, 40, True, False, 1),
    InvertedResidualSpec(40, 5, 120, 40, True, False, None),
    InvertedResidualSpec(40, 5, 120, 40, True, False, None),
    InvertedResidualSpec(40, 3, 240, 80, False, True, 2),
    InvertedResidualSpec(80, 3, 200, 80, False, True, None),
    InvertedResidualSpec(80, 3, 184, 80, False, True, None),
    InvertedResidualSpec(80, 3, 184, 80, False, True, None),
    InvertedResidualSpec(80, 3, 480, 112, True, True, None),
    InvertedResidualSpec(112, 3, 672, 112, True, True, None),
    InvertedResidualSpec(112, 5, 672, 160, True, True, 3),
    InvertedResidualSpec(160, 5, 960, 160, True, True, None),
    InvertedResidualSpec(160, 5, 960, 160, True, True, None),
)
STEM_CHANNELS = 16


@dataclass
class EfficientATModelOutput(ModelOutput):
    """
    Output of [`EfficientATModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, channels, F', T')`):
            The last feature map (EfficientAT's `features[-1]` output; `384 x 4 x 32` for `mn04` on a 10 s clip).
            Clips of a padded batch are encoded at their own length; columns past a clip's end are zero.
        pooler_output (`torch.FloatTensor` of shape `(batch_size, config.pooled_size)`):
            The clip embedding chosen by `config.pooling`.
        feature_time_mask (`torch.BoolTensor` of shape `(batch_size, T')`):
            Which time columns of `last_hidden_state` belong to each clip.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            The stem's output and every block's output, `(batch_size, channels_i, F_i, T_i)`, zero past each clip's
            end like `last_hidden_state`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    feature_time_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class EfficientATConvLayer(nn.Module):
    """Convolution without bias, BatchNorm and an optional activation (torchvision's `Conv2dNormActivation`)."""

    def __init__(
        self,
        config: EfficientATConfig,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = None,
    ):
        super().__init__()
        self.convolution = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, groups=groups,
            bias=False,
        )
        self.normalization = nn.BatchNorm2d(
            out_channels, eps=config.batch_norm_eps, momentum=config.batch_norm_momentum
        )
        self.activation = activation() if activation is not None else nn.Identity()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.normalization(self.convolution(hidden_states)))


class EfficientATSqueezeExcitation(nn.Module):
    """Channel squeeze-and-excitation: a per-channel gate from the mean over frequency and time."""

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Linear(channels, squeeze_channels)
        self.activation = nn.ReLU()
        self.expand = nn.Linear(squeeze_channels, channels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        squeezed = hidden_states.mean(dim=(2, 3))
        gate = torch.sigmoid(self.expand(self.activation(self.reduce(squeezed))))
        return hidden_states * gate[:, :, None, None]


class EfficientATInvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expansion, depthwise convolution, optional squeeze-excitation, 1x1 projection."""

    def __init__(self, config: EfficientATConfig, spec: InvertedResidualSpec):
        super().__init__()
        in_channels, out_channels = config.channels(spec.in_channels), config.channels(spec.out_channels)
        expanded = config.channels(spec.expanded_channels)
        stride = 1 if spec.stage is None else config.stage_strides[spec.stage]
        activation = nn.Hardswish if spec.hard_swish else nn.ReLU
        self.expansion = (
            EfficientATConvLayer(config, in_channels, expanded, activation=activation)
            if expanded != in_channels
            else None
        )
        self.depthwise = EfficientATConvLayer(
            config, expanded, expanded, spec.kernel_size, stride=stride, groups=expanded, activation=activation
        )
        self.squeeze_excitation = (
            EfficientATSqueezeExcitation(
                expanded, make_divisible(expanded // config.squeeze_excitation_reduction)
            )
            if spec.squeeze_excitation
            else None
        )
        self.projection = EfficientATConvLayer(config, expanded, out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = hidden_states if self.expansion is None else self.expansion(hidden_states)
        output = self.depthwise(output)
        if self.squeeze_excitation is not None:
            output = self.squeeze_excitation(output)
        output = self.projection(output)
        return output + hidden_states if self.use_residual else output


class EfficientATClassificationHead(nn.Module):
    """EfficientAT's `mlp` head on the mean of the last feature map: Linear, hard swish, dropout, Linear."""

    def __init__(self, config: EfficientATConfig):
        super().__init__()
        self.dense = nn.Linear(config.feature_channels, config.classifier_hidden_size)
        self.activation = nn.Hardswish()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.out_proj = nn.Linear(config.classifier_hidden_size, config.num_labels)

    def forward(self, mean_features: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.dropout(self.activation(self.dense(mean_features))))


class EfficientATPreTrainedModel(PreTrainedModel):
    config_class = EfficientATConfig
    config: EfficientATConfig
    base_model_prefix = "efficientat"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    _no_split_modules = ["EfficientATInvertedResidual"]

    def _init_weights(self, module):
        # EfficientAT's initialisation; BatchNorm buffers are refilled too, since meta-device loading leaves them empty.
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out")
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)


def _masked_time_mean(feature_map: torch.Tensor, time_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[batch, channels, F', T']` over the valid time columns -> `[batch, channels, F']`."""
    weights = time_mask.to(feature_map.dtype)[:, None, None, :]
    return (feature_map * weights).sum(dim=3) / weights.sum(dim=3).clamp_min(1.0)


def _pad_time(feature_map: torch.Tensor, width: int) -> torch.Tensor:
    return nn.functional.pad(feature_map, (0, width - feature_map.shape[-1]))


class EfficientATModel(EfficientATPreTrainedModel):
    """
    The MobileNetV3 feature extractor. Input: normalised log-mel frames `[batch, frames, num_mel_bins]` from
    [`RespAudioFeatureExtractor`] (PaSST's front end, which EfficientAT shares) and their frame mask. The network is
    fully convolutional, so a clip of any length is encoded whole, as EfficientAT does; in a padded batch every clip
    is encoded at its own length (clips of equal length together), so it gets the same output alone or batched.
    """

    def __init__(self, config: EfficientATConfig):
        super().__init__(config)
        self.stem = EfficientATConvLayer(
            config, 1, config.channels(STEM_CHANNELS), kernel_size=3, stride=2, activation=nn.Hardswish
        )
        self.blocks = nn.ModuleList(EfficientATInvertedResidual(config, spec) for spec in MOBILENET_V3_LARGE_BLOCKS)
        self.last_layer = EfficientATConvLayer(
            config, config.channels(MOBILENET_V3_LARGE_BLOCKS[-1].out_channels), config.feature_channels,
            activation=nn.Hardswish,
        )
        self.post_init()

    # The AudioSet head of a classifier checkpoint (the shipped `pretrained/efficientat-mn04-as`): loading the bare
    # encoder from one leaves it out by design, which transformers would otherwise report as UNEXPECTED keys.
    _keys_to_ignore_on_load_unexpected = [r"^classifier\."]

    # Frames of one window of `pool_frame_stream` (2 minutes at PaSST's 10 ms hop): recordings up to this long are
    # encoded whole, longer ones window by window, so that memory stays near that of a 2-minute clip.
    stream_window_frames = 12000

    def get_input_embeddings(self) -> EfficientATConvLayer:
        return self.stem

    def feature_maps(self, spectrogram: torch.Tensor, output_hidden_states: bool):
        """`[batch, frames, mel]` -> the last feature map and, if asked, every earlier one."""
        hidden = self.stem(spectrogram.transpose(1, 2).unsqueeze(1).to(self.stem.convolution.weight.dtype))
        all_hidden = (hidden,) if output_hidden_states else None
        for block in self.blocks:
            hidden = block(hidden)
            if output_hidden_states:
                all_hidden += (hidden,)
        return self.last_layer(hidden), all_hidden

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None, output_hidden_states: bool):
        """
        The last feature map `[batch, channels, F', T']`, its time mask `[batch, T']` and the hidden states, encoding
        each group of clips of equal length at that length.
        """
        check_model_inputs(input_values, attention_mask, self.config.num_mel_bins)
        batch, num_frames, _ = input_values.shape
        lengths = (
            torch.full((batch,), num_frames, dtype=torch.long)
            if attention_mask is None
            else attention_mask.sum(dim=1).cpu().long().clamp_min(1)
        )
        groups = [(int(length), (lengths == length).nonzero()[:, 0]) for length in lengths.unique()]
        if len(groups) == 1:
            length = groups[0][0]
            last, all_hidden = self.feature_maps(input_values[:, :length], output_hidden_states)
            time_mask = torch.ones(batch, last.shape[-1], dtype=torch.bool, device=last.device)
            return last, time_mask, all_hidden

        results = [
            (rows, self.feature_maps(input_values[rows.to(input_values.device), :length], output_hidden_states))
            for length, rows in groups
        ]
        widths = [maps[0].shape[-1] for _, maps in results]
        width = max(widths)
        first = results[0][1][0]
        last = first.new_zeros(batch, first.shape[1], first.shape[2], width)
        time_mask = torch.zeros(batch, width, dtype=torch.bool, device=first.device)
        for (rows, (group_last, _)), group_width in zip(results, widths):
            rows = rows.to(first.device)
            last[rows] = _pad_time(group_last, width)
            time_mask[rows, :group_width] = True
        all_hidden = None
        if output_hidden_states:
            all_hidden = []
            for level in range(len(results[0][1][1])):
                maps = [(rows, group[1][level]) for rows, group in results]
                level_width = max(m.shape[-1] for _, m in maps)
                merged = maps[0][1].new_zeros(batch, *maps[0][1].shape[1:3], level_width)
                for rows, m in maps:
                    merged[rows.to(merged.device)] = _pad_time(m, level_width)
                all_hidden.append(merged)
            all_hidden = tuple(all_hidden)
        return last, time_mask, all_hidden

    @can_return_tuple
    @add_start_docstrings_to_model_forward(MODEL_INPUTS_DOCSTRING)
    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> EfficientATModelOutput:
        config = self.config
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        last, time_mask, all_hidden = self.encode(input_values, attention_mask, output_hidden_states)
        row_means = _masked_time_mean(last, time_mask).transpose(1, 2)  # [batch, F', channels]
        pooled = pool_embeddings(config.pooling, row_means)
        return EfficientATModelOutput(
            last_hidden_state=last, pooler_output=pooled, feature_time_mask=time_mask, hidden_states=all_hidden
        )


    def pool_frame_stream(self, frame_blocks, windows_at_once: int | None = None) -> torch.Tensor:
        """
        `pooler_output` `[1, config.pooled_size]` of one recording whose normalised log-mel frames arrive as
        consecutive `[frames, num_mel_bins]` blocks (e.g. [`RespAudioFeatureExtractor.frame_blocks`]), in memory
        bounded by one window of `stream_window_frames` frames (2 minutes) whatever the recording's length.

        A recording of up to one window is encoded whole: the result equals `forward`'s `pooler_output` to float
        round-off. A longer one is encoded window by window and the last feature maps' columns are averaged over all
        windows (each column weighs the same, as in `forward`'s mean over time). This differs from encoding it whole
        in two ways, both confined to long inputs: each window's squeeze-excitation gates come from that window's own
        mean (not the whole recording's), and the convolutions see zero padding at the window edges (a few frames of
        each 2-minute window). `windows_at_once` is accepted for the interface `RespAudioModel` shares and unused: the
        windows are encoded one at a time. Runs without gradients; put the model in eval mode first.
        """
        config = self.config
        window = self.stream_window_frames
        column_sums, columns = None, 0
        pending = None  # frames not yet encoded

        def add(frames: torch.Tensor) -> None:
            nonlocal column_sums, columns
            last, _ = self.feature_maps(frames[None], output_hidden_states=False)
            sums = last.sum(dim=3)  # [1, channels, F']
            column_sums = sums if column_sums is None else column_sums + sums
            columns += last.shape[-1]

        device = self.stem.convolution.weight.device
        with torch.no_grad():
            for block in frame_blocks:
                block = checked_frame_block(block, config.num_mel_bins, device)
                pending = block if pending is None else torch.cat([pending, block])
                # Keep at least one full window back, so that the end is never a tail of a few frames on its own.
                while pending.shape[0] >= 2 * window:
                    add(pending[:window])
                    pending = pending[window:].clone()
            if pending is None or pending.shape[0] == 0:
                raise ValueError("Got no frames to encode.")
            if pending.shape[0] > window:
                # Split the rest in two near-equal windows rather than leave a tail of a few frames on its own.
                half = pending.shape[0] // 2
                add(pending[:half])
                add(pending[half:])
            else:
                add(pending)
            row_means = (column_sums / columns).transpose(1, 2)  # [1, F', channels]
        return pool_embeddings(config.pooling, row_means)


class EfficientATForAudioClassification(AudioClassifierMixin, EfficientATPreTrainedModel):
    """
    [`EfficientATModel`] with EfficientAT's classification head on the mean of the last feature map (whatever
    `config.pooling` makes `pooler_output`). AudioSet tagging is multi-label: converted checkpoints set
    `problem_type="multi_label_classification"`, so the loss is binary cross-entropy and the pipeline applies a sigmoid.
    """

    def __init__(self, config: EfficientATConfig):
        super().__init__(config)
        self.efficientat = EfficientATModel(config)
        self.classifier = EfficientATClassificationHead(config)
        self.post_init()

    def head_input(self, input_values, attention_mask, output_hidden_states, output_attentions):
        # The head reads the mean of the last feature map, whatever `config.pooling` makes `pooler_output`; a CNN
        # has no attentions.
        last, time_mask, all_hidden = self.efficientat.encode(
            input_values, attention_mask, output_hidden_states or self.config.output_hidden_states
        )
        return _masked_time_mean(last, time_mask).mean(dim=2), all_hidden, None


__all__ = [
    "EfficientATForAudioClassification",
    "EfficientATModel",
    "EfficientATModelOutput",
    "EfficientATPreTrainedModel",
]
