"""Configuration of EfficientAT's MobileNetV3 audio tagger (Schmid, Koutini and Widmer, ICASSP 2023)."""

from __future__ import annotations

from transformers import PreTrainedConfig

from .configuration_resp_audio import MODEL_FAMILIES, check_pooling
from .pipeline_entry import without_registered_pipeline


def make_divisible(value: float, divisor: int = 8) -> int:
    """
    MobileNet's channel rounding: the nearest multiple of `divisor` (at least `divisor`), raised by one step when
    rounding lost more than 10 %. EfficientAT scales every width of MobileNetV3-Large this way.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class EfficientATConfig(PreTrainedConfig):
    r"""
    Configuration of [`EfficientATModel`]: EfficientAT's MobileNetV3 (the `mn*` models) on PaSST's 128-band log-mel
    spectrogram. The block table is MobileNetV3-Large's (15 inverted residual blocks, channel-wise
    squeeze-and-excitation in the blocks MobileNetV3 puts it); `width_multiplier` scales every width, so 0.4 is
    `mn04` (about 1 M parameters) and 1.0 is `mn10`.

    Args:
        width_multiplier (`float`, *optional*, defaults to 0.4):
            Scales the channels of every layer (rounded to multiples of 8), as EfficientAT's `width_mult`.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Mel bands of the input spectrogram.
        sampling_rate (`int`, *optional*, defaults to 32000):
            Rate (Hz) the front end and the network were trained at.
        stage_strides (`list[int]`, *optional*, defaults to `[2, 2, 2, 2]`):
            Strides of the four downsampling blocks (MobileNetV3's C1-C4), applied to frequency and time alike. With
            the stride-2 stem, 128 mel bands and 1,000 frames (10 s) become a `4 x 32` feature map.
        squeeze_excitation_reduction (`int`, *optional*, defaults to 4):
            Bottleneck ratio of the squeeze-and-excitation layers (EfficientAT's `se_r`).
        batch_norm_eps (`float`, *optional*, defaults to 1e-3):
            Epsilon of every BatchNorm (EfficientAT's, as in TensorFlow's MobileNet).
        batch_norm_momentum (`float`, *optional*, defaults to 0.01):
            Momentum of the BatchNorm running statistics during training.
        classifier_hidden_size (`int`, *optional*):
            Width of the classification head's hidden layer; `None` is MobileNetV3's 1280 scaled by
            `width_multiplier` (512 for `mn04`).
        classifier_dropout (`float`, *optional*, defaults to 0.2):
            Dropout before the head's output layer.
        pooling (`str`, *optional*, defaults to `"freq_preserving"`):
            How `pooler_output` is made from the last feature map `[channels, F', T']`: `"freq_preserving"` averages
            over time only (ignoring padding) and concatenates the `F'` frequency rows (`F' * channels` features,
            Niizumi et al. 2025); `"mean"` averages over frequency and time, which is exactly EfficientAT's own
            embedding (the `features` its `forward` returns). The classification head always reads the mean, as it
            was trained to.
        initializer_range (`float`, *optional*, defaults to 0.01):
            Standard deviation of the normal initialisation of the head's linear layers (convolutions use Kaiming
            initialisation, as in EfficientAT).
    """

    model_type = "efficientat"

    def __init__(
        self,
        width_multiplier: float = 0.4,
        num_mel_bins: int = 128,
        sampling_rate: int = 32000,
        stage_strides: list[int] | tuple[int, ...] = (2, 2, 2, 2),
        squeeze_excitation_reduction: int = 4,
        batch_norm_eps: float = 1e-3,
        batch_norm_momentum: float = 0.01,
        classifier_hidden_size: int | None = None,
        classifier_dropout: float = 0.2,
        pooling: str = "freq_preserving",
        initializer_range: float = 0.01,
        **kwargs,
    ):
        check_pooling(self.model_type, pooling)
        stage_strides = list(stage_strides)
        if len(stage_strides) != 4 or any(stride not in (1, 2) for stride in stage_strides):
            raise ValueError(f"stage_strides must be four strides of 1 or 2, got {stage_strides}.")
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}.")
        self.width_multiplier = float(width_multiplier)
        self.num_mel_bins = num_mel_bins
        self.sampling_rate = sampling_rate
        self.stage_strides = stage_strides
        self.squeeze_excitation_reduction = squeeze_excitation_reduction
        self.batch_norm_eps = batch_norm_eps
        self.batch_norm_momentum = batch_norm_momentum
        self.classifier_hidden_size = classifier_hidden_size or make_divisible(1280 * self.width_multiplier)
        self.classifier_dropout = classifier_dropout
        self.pooling = pooling
        self.initializer_range = initializer_range
        super().__init__(**without_registered_pipeline(kwargs))

    def channels(self, width: int) -> int:
        """A MobileNetV3-Large channel count scaled by `width_multiplier`."""
        return make_divisible(width * self.width_multiplier)

    @property
    def feature_channels(self) -> int:
        """Channels of the last feature map (6 x the last block's output: 384 for `mn04`)."""
        return 6 * self.channels(160)

    @property
    def num_frequency_rows(self) -> int:
        """Frequency rows `F'` of the last feature map."""
        rows = (self.num_mel_bins - 1) // 2 + 1  # stride-2 stem, kernel 3, padding 1
        for stride in self.stage_strides:
            rows = (rows - 1) // stride + 1
        return rows

    def frequency_row_spans(self) -> list[range]:
        """The mel bands (indices) each frequency row stands for: an equal share of the bands, as the strides divide
        them."""
        share = self.num_mel_bins / self.num_frequency_rows
        return [range(round(row * share), round((row + 1) * share)) for row in range(self.num_frequency_rows)]

    def describe_architecture(self, num_parameters: int) -> str:
        """The model in one sentence, for reports: its size, width and front end."""
        return (
            f"A {num_parameters / 1e6:.2f} M-parameter EfficientAT MobileNetV3 (width x{self.width_multiplier:g}; "
            f"{self.num_mel_bins}-band log-mel at {self.sampling_rate} Hz, PaSST's front end, any length)"
        )

    def feature_extractor_settings(self) -> dict:
        """`RespAudioFeatureExtractor` settings of EfficientAT's front end, `AugmentMelSTFT` in eval mode, which is
        PaSST's (`from_model_config` reads them); `max_length` is EfficientAT's 10 s training clip (1,000 frames),
        the target of `padding="max_length"`."""
        return dict(frontend=MODEL_FAMILIES["efficientat"].frontend, sampling_rate=self.sampling_rate,
                    num_mel_bins=self.num_mel_bins, max_length=1000)

    @property
    def pooled_size(self) -> int:
        """Width of `pooler_output`."""
        if self.pooling == "freq_preserving":
            return self.num_frequency_rows * self.feature_channels
        return self.feature_channels


__all__ = ["EfficientATConfig", "make_divisible"]
