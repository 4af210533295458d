"""Configuration of the respiratory-audio spectrogram transformer (PaSST, AST and M2D families)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from transformers import PreTrainedConfig

from .pipeline_entry import without_registered_pipeline
from .pooling import POOLINGS

POSITION_EMBEDDING_TYPES = ("time_freq", "learned_2d", "sincos_2d")
# "trunc_normal": every weight drawn from a normal of std `initializer_range` (timm/transformers ViTs, this package's
# original scheme); "mae": the MAE/M2D scheme (xavier-uniform matrices, the patch convolution as a matrix).
INITIALIZATIONS = ("trunc_normal", "mae")

# Encoder sizes, shared by the families' presets.
VIT_BASE = MappingProxyType(dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072))
VIT_TINY = MappingProxyType(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
# A few million parameters: pre-trainable from scratch on a CPU in an hour or two (training/configs/small_m2d_resp.yaml).
VIT_SMALL = MappingProxyType(dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024))


def _frozen(**entries) -> Mapping[str, Any]:
    """A read-only mapping: the family table is shared by the whole process."""
    return MappingProxyType(entries)


class _ResolvedAutoClass:
    """A `ModelType` attribute that is the class the model type names for one Auto class (see `ModelType.resolve`)."""

    def __init__(self, auto_class: str):
        self.auto_class = auto_class

    def __get__(self, model_type: ModelType | None, owner: type) -> type:
        return self if model_type is None else model_type.resolve(self.auto_class)


@dataclass(frozen=True)
class ModelType:
    """
    The contract of one model type (one configuration class, as `model_type` names it): what every consumer of a
    model asks of it, stated once so that none tests a `model_type` string or `hasattr`. The Auto registration, the
    `auto_map` of saved folders, the remote-code files a published folder needs, the poolings, the classifier's head
    and the Hub tools read it. Classes are named as `auto_map` names them (`module.Class`, modules of this package),
    so the record stays plain data in this remote-code module; `resolve` imports them.

    Args:
        model_type: `model_type` of its configuration class.
        auto_classes: Auto class -> `module.Class` of this package, for every Auto class the model type loads with.
        poolings: the `config.pooling` values it offers, among `pooling.POOLINGS`.
        head_reads_pooler_output: whether its classifier's head reads `pooler_output` (so a pooling changes the
            logits) or a representation of its own (EfficientAT's head reads the mean whatever `config.pooling`).
        remote_code_files: the package modules a published folder ships so that `trust_remote_code=True` loads it
            without the package: the modules the Auto classes name and those they import.
        export_graph: `module.Class` of its ONNX export graph (`resp_audio_hf.export.onnx`).
        publishable: whether `resp-audio-hf push` stages and uploads its folders.
    """

    model_type: str
    auto_classes: Mapping[str, str]
    poolings: tuple[str, ...]
    head_reads_pooler_output: bool
    remote_code_files: tuple[str, ...]
    export_graph: str
    publishable: bool = True

    def resolve(self, auto_class: str) -> type:
        """The class this model type names for `auto_class` (`"AutoModel"`, ...), imported from this package."""
        return _import_class(self.auto_classes[auto_class])

    @property
    def export_graph_class(self) -> type:
        return _import_class(self.export_graph)

    config_class = _ResolvedAutoClass("AutoConfig")
    base_model_class = _ResolvedAutoClass("AutoModel")
    classifier_class = _ResolvedAutoClass("AutoModelForAudioClassification")
    # `feature_extractor_class.from_model_config(config)` is the front end of a model.
    feature_extractor_class = _ResolvedAutoClass("AutoFeatureExtractor")


def _import_class(reference: str) -> type:
    """The class `module.Class` names, `module` a module of this package."""
    module, name = reference.rsplit(".", 1)
    return getattr(importlib.import_module(f".{module}", __package__), name)


# What every model type shares: the feature extractor (one class, each front end a setting of it), the pipeline, the
# poolings, the input checks and the classifier's loss.
_FEATURE_EXTRACTOR = "feature_extraction_resp_audio.RespAudioFeatureExtractor"
_SHARED_REMOTE_CODE = (
    "configuration_resp_audio.py",  # the family records
    "pipeline_entry.py",  # the registered-pipeline check
    "auto_classes.py",
    "pooling.py",
    "model_inputs.py",
    "audio_classifier.py",
    "feature_extraction_resp_audio.py",
    "resampling.py",  # imported by the feature extractor
    "pipeline_resp_audio.py",
    "cut_wav.py",  # imported by the pipeline
)
MODEL_TYPES: Mapping[str, ModelType] = _frozen(
    resp_audio=ModelType(
        "resp_audio",
        _frozen(
            AutoConfig="configuration_resp_audio.RespAudioConfig",
            AutoModel="modeling_resp_audio.RespAudioModel",
            AutoModelForAudioClassification="modeling_resp_audio.RespAudioForAudioClassification",
            AutoFeatureExtractor=_FEATURE_EXTRACTOR,
        ),
        poolings=POOLINGS,
        head_reads_pooler_output=True,
        remote_code_files=(*_SHARED_REMOTE_CODE, "modeling_resp_audio.py"),
        export_graph="export.onnx.ViTExportGraph",
    ),
    efficientat=ModelType(
        "efficientat",
        _frozen(
            AutoConfig="configuration_efficientat.EfficientATConfig",
            AutoModel="modeling_efficientat.EfficientATModel",
            AutoModelForAudioClassification="modeling_efficientat.EfficientATForAudioClassification",
            AutoFeatureExtractor=_FEATURE_EXTRACTOR,
        ),
        # A CNN has no prefix tokens, so no `cls`; its own embedding is `mean`.
        poolings=tuple(pooling for pooling in POOLINGS if pooling != "cls"),
        head_reads_pooler_output=False,
        remote_code_files=(*_SHARED_REMOTE_CODE, "configuration_efficientat.py", "modeling_efficientat.py"),
        export_graph="export.onnx.EfficientATExportGraph",
    ),
)


def find_model_type(model_type_or_config: str | PreTrainedConfig) -> ModelType:
    """The `ModelType` record of a `model_type` or of a configuration (any object with `model_type`)."""
    model_type = getattr(model_type_or_config, "model_type", model_type_or_config)
    if model_type not in MODEL_TYPES:
        raise ValueError(f"Unknown model_type {model_type!r}; this package has {sorted(MODEL_TYPES)}.")
    return MODEL_TYPES[model_type]


def check_pooling(model_type: str, pooling: str) -> None:
    """Refuse a `config.pooling` its model type does not offer."""
    poolings = MODEL_TYPES[model_type].poolings
    if pooling not in poolings:
        raise ValueError(f"pooling must be one of {poolings} for model_type {model_type!r}, got {pooling!r}.")


@dataclass(frozen=True)
class ModelFamily:
    """
    One model family, stated once (as timm states a model's `default_cfgs` next to its `@register_model`). The
    configuration presets, `resp-audio-hf convert --family`, the converters' constants and the model cards are derived
    from `MODEL_FAMILIES`. Adding a family is adding its record here, its converter to `convert/<family>.py` and, to
    publish it, `model_cards/<card>.yaml`. This module is shipped as remote code, so the record is plain data.

    Three axes are named apart: the *family* (the original model and its checkpoints: `"passt"`), its *front end*
    (the spectrogram it was trained on, a key of `FRONT_ENDS` in feature_extraction_resp_audio.py; EfficientAT's is
    PaSST's) and its *presets* (named sizes of its configuration: `"resp-passt"`, `"tiny-passt"`).

    Args:
        name: the family, as `resp-audio-hf convert --family` and the Hub tools take it.
        architecture: how its paper writes it (`"PaSST"`); the model card's family name.
        model_type: `model_type` of its configuration class (`"resp_audio"`: `RespAudioConfig`), a key of
            `MODEL_TYPES`, whose record holds its classes, poolings, head and remote code.
        frontend: its front end, a key of `FRONT_ENDS`.
        layout: the `RespAudioConfig` fields of its published encoder besides `frontend`, shared by its presets.
        presets: preset name -> encoder size and fields overriding `layout` (`RespAudioConfig.from_preset`).
        converter: the name of its converter function, registered in `resp_audio_hf.convert.CONVERTERS` by its module.
        card: the model card facts `model_cards/<card>.yaml`, also the Hub repository name of the published model;
            `None` for families published without the card template.
        front_end_variants: front-end settings its checkpoints name (M2D's sampling-rate tag in the folder name),
            each overriding the published defaults of `frontend`.
    """

    name: str
    architecture: str
    model_type: str
    frontend: str
    converter: str
    layout: Mapping[str, Any] = field(default_factory=lambda: _frozen())
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _frozen())
    card: str | None = None
    front_end_variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _frozen())

    @property
    def model(self) -> ModelType:
        """The contract of its model type."""
        return MODEL_TYPES[self.model_type]


# PaSST and AST are both DeiT-style: overlapping 16 x 16 patches (stride 10), CLS and distillation tokens.
_DEIT_PATCHES = _frozen(patch_size=16, frequency_stride=10, time_stride=10, num_prefix_tokens=2)
MODEL_FAMILIES: Mapping[str, ModelFamily] = _frozen(
    # hear21passt's PaSST-S: separate learned time and frequency positions.
    passt=ModelFamily("passt", "PaSST", "resp_audio", frontend="passt", converter="convert_passt", card="resp-passt",
        layout=_frozen(sampling_rate=32000, num_mel_bins=128, window_frames=998, **_DEIT_PATCHES,
                       position_embedding_type="time_freq", layer_norm_eps=1e-6),
        presets=_frozen(**{"resp-passt": VIT_BASE, "tiny-passt": _frozen(**VIT_TINY, window_frames=198)})),
    # YuanGongND/ast and transformers' AST: one learned position per patch, transformers' LayerNorm epsilon.
    ast=ModelFamily("ast", "AST", "resp_audio", frontend="ast", converter="convert_ast", card="resp-ast",
        layout=_frozen(sampling_rate=16000, num_mel_bins=128, window_frames=1024, **_DEIT_PATCHES,
                       position_embedding_type="learned_2d", layer_norm_eps=1e-12),
        presets=_frozen(**{"resp-ast": VIT_BASE, "tiny-ast": _frozen(**VIT_TINY, window_frames=198)})),
    # nttcslab/m2d: non-overlapping patches of 80 mel bins, fixed sine-cosine positions, one CLS token.
    m2d=ModelFamily("m2d", "M2D", "resp_audio", frontend="m2d", converter="convert_m2d", card="resp-m2d",
        layout=_frozen(sampling_rate=16000, num_mel_bins=80, window_frames=608, patch_size=16, frequency_stride=16,
                       time_stride=16, num_prefix_tokens=1, position_embedding_type="sincos_2d", layer_norm_eps=1e-6),
        presets=_frozen(**{
            "resp-m2d": VIT_BASE,
            "tiny-m2d": _frozen(**VIT_TINY, window_frames=208),
            # M2D layout (80 mels, 16 x 16 patches) in 2.08 s windows, 4.8 M parameters.
            "small-m2d": _frozen(**VIT_SMALL, window_frames=208),
            # small-m2d with M2D-X's respiratory patches and window (ICBHI/SPRSound: `80x200p16x4`, 16 mel bins x 4
            # frames, 5 x 50 patches per 2 s window).
            "small-m2d-16x4": _frozen(**VIT_SMALL, window_frames=200, patch_time_size=4, time_stride=4),
        }),
        # M2D's runtime per sampling-rate tag of the checkpoint name (`...p16x16p32k-...`); 16k is the published one.
        front_end_variants=_frozen(**{
            "16k": _frozen(),
            "32k": _frozen(sampling_rate=32000, n_fft=800, win_length=800, hop_length=320, f_max=16000.0),
        }),
    ),
    # EfficientAT's MobileNetV3 (`mn*`): its own configuration class (configuration_efficientat.py), PaSST's front end.
    efficientat=ModelFamily(
        "efficientat", "EfficientAT", "efficientat", frontend="passt", converter="convert_efficientat"
    ),
)
# Front ends a `RespAudioConfig` may name: those of the ViT families.
VIT_FRONT_END_NAMES = tuple(dict.fromkeys(f.frontend for f in MODEL_FAMILIES.values() if f.model_type == "resp_audio"))
# Every preset of every family, as full `RespAudioConfig` fields (its family's front end and layout, then its own).
PRESETS: Mapping[str, Mapping[str, Any]] = _frozen(**{
    preset: _frozen(frontend=family.frontend, **{**family.layout, **fields})
    for family in MODEL_FAMILIES.values()
    for preset, fields in family.presets.items()
})


def family_of_config(config: PreTrainedConfig) -> ModelFamily:
    """The family a configuration belongs to: its `model_type` and, among the ViT families, its front end."""
    for family in MODEL_FAMILIES.values():
        if family.model_type == config.model_type and family.frontend == getattr(config, "frontend", family.frontend):
            return family
    raise ValueError(f"No model family has model_type {config.model_type!r} and front end "
                     f"{getattr(config, 'frontend', None)!r}; known: {sorted(MODEL_FAMILIES)}.")


class RespAudioConfig(PreTrainedConfig):
    r"""
    Configuration of [`RespAudioModel`]: one spectrogram Vision Transformer whose fields select the PaSST, AST or M2D
    family. Use [`RespAudioConfig.from_preset`] for the published sizes (`resp-passt`, `resp-ast`, `resp-m2d`) or tiny
    test sizes (`tiny-passt`, `tiny-ast`, `tiny-m2d`), or `small-m2d` (4.8 M parameters, pre-trainable on a CPU;
    `small-m2d-16x4` has M2D-X's respiratory 16 x 4 patches); `MODEL_FAMILIES` states each family's layout and presets.

    Args:
        frontend (`str`, *optional*, defaults to `"passt"`):
            Which audio front end the matching [`RespAudioFeatureExtractor`] reproduces: `"passt"`, `"ast"` or
            `"m2d"` (each ViT family's own).
        sampling_rate (`int`, *optional*, defaults to 32000):
            Sampling rate (Hz) the front end and the encoder were trained at.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel bins of the input spectrogram (the frequency axis of the patch grid).
        window_frames (`int`, *optional*, defaults to 998):
            Spectrogram frames of one encoder window (the family's pre-training clip). It fixes the size of the time
            position embedding; longer inputs are encoded in consecutive windows of this length (see
            [`RespAudioModel`]). Formerly `max_length`, which configurations and old `config.json` files may still
            use (with a `FutureWarning`), and which still reads this field.
        patch_size (`int`, *optional*, defaults to 16):
            Height of one patch in mel bins, and its width in frames unless `patch_time_size` is set.
        patch_time_size (`int`, *optional*):
            Width of one patch in frames, for non-square patches (M2D-X's respiratory models use 16 x 4: 16 mel bins
            by 4 frames, with `time_stride=4`); `None` (the default) makes patches square. `patch_frames` reads it.
        frequency_stride (`int`, *optional*, defaults to 10):
            Stride of the patch grid along frequency (10 overlaps patches as PaSST and AST do, 16 does not as in M2D).
        time_stride (`int`, *optional*, defaults to 10):
            Stride of the patch grid along time.
        hidden_size (`int`, *optional*, defaults to 768):
            Width of the token embeddings.
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of Transformer layers.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Number of attention heads of each layer.
        intermediate_size (`int`, *optional*, defaults to 3072):
            Hidden width of the MLP of each layer.
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the MLP.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the position embeddings, the attention projection and the MLP.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of every LayerNorm (1e-6 in PaSST and M2D, 1e-12 in transformers' AST).
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the query/key/value projection has a bias.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialisation of linear layers and tokens.
        initialization (`str`, *optional*, defaults to `"trunc_normal"`):
            How a model built from this configuration draws its weights (loaded checkpoints overwrite them):
            `"trunc_normal"`: linear layers, the patch convolution, tokens and learned positions from a truncated
            normal of std `initializer_range`, biases zero; `"mae"`: MAE's and M2D's own scheme (`initialize_weights`
            of their `MaskedAutoencoderViT`): xavier-uniform linear layers with zero biases, the patch convolution
            xavier-uniform as the matrix of its flattened kernel with PyTorch's default convolution bias, prefix tokens
            normal of std 0.02; learned positions as `"trunc_normal"`. Fixed sine-cosine positions are the same in
            both.
        num_prefix_tokens (`int`, *optional*, defaults to 2):
            Tokens put before the patch tokens: 1 (CLS, as M2D) or 2 (CLS and distillation, as PaSST and AST).
        position_embedding_type (`str`, *optional*, defaults to `"time_freq"`):
            `"time_freq"`: separate learned time and frequency embeddings added on the patch grid (PaSST);
            `"learned_2d"`: one learned embedding per grid position (AST);
            `"sincos_2d"`: fixed 2-D sine-cosine embedding per grid position, not trained (M2D).
        pooling (`str`, *optional*, defaults to `"freq_preserving"`):
            How `pooler_output` is made from the final tokens: `"freq_preserving"` averages the patch tokens over time
            only and concatenates the frequency rows (`num_frequency_rows * hidden_size` features, Niizumi et al.
            2025); `"mean"` averages all patch tokens; `"cls"` averages the prefix tokens (PaSST's and AST's pooling).
        structured_patchout_time (`int`, *optional*, defaults to 0):
            During training, number of random time columns of the patch grid to drop (PaSST's structured patchout).
        structured_patchout_frequency (`int`, *optional*, defaults to 0):
            During training, number of random frequency rows of the patch grid to drop.
        window_batch_size (`int`, *optional*, defaults to 16):
            How many windows of a long input are encoded at once; bounds memory for recordings of hours.
        classifier_layer_norm_eps (`float`, *optional*):
            Epsilon of the classification head's LayerNorm; `None` uses `layer_norm_eps`. PaSST's and the original
            AST's heads use PyTorch's default 1e-5 whatever their encoders use, and converted checkpoints record it.
    """

    model_type = "resp_audio"
    # `max_length`, the former name of `window_frames`, reads and writes it. It is declared as a field so that
    # `save_pretrained` does not mistake it for the generation parameter of that name (transformers refuses to save
    # configurations carrying undeclared generation parameters); it is never saved itself.
    attribute_map = {"max_length": "window_frames"}
    max_length: int | None = None

    def __init__(
        self,
        frontend: str = "passt",
        sampling_rate: int = 32000,
        num_mel_bins: int = 128,
        window_frames: int = 998,
        patch_size: int = 16,
        patch_time_size: int | None = None,
        frequency_stride: int = 10,
        time_stride: int = 10,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "gelu",
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        initializer_range: float = 0.02,
        initialization: str = "trunc_normal",
        num_prefix_tokens: int = 2,
        position_embedding_type: str = "time_freq",
        pooling: str = "freq_preserving",
        structured_patchout_time: int = 0,
        structured_patchout_frequency: int = 0,
        window_batch_size: int = 16,
        classifier_layer_norm_eps: float | None = None,
        **kwargs,
    ):
        if "max_length" in kwargs:
            # Configurations written before the rename; transformers would drop the key as a generation parameter.
            warnings.warn(
                "RespAudioConfig's max_length is now window_frames (the frames of one encoder window); max_length "
                "will stop being read in a future version.",
                FutureWarning,
                stacklevel=2,
            )
            window_frames = kwargs.pop("max_length")
        if frontend not in VIT_FRONT_END_NAMES:
            raise ValueError(f"frontend must be one of {VIT_FRONT_END_NAMES}, got {frontend!r}.")
        if position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, got {position_embedding_type!r}."
            )
        check_pooling(self.model_type, pooling)
        if num_prefix_tokens not in (1, 2):
            raise ValueError(f"num_prefix_tokens must be 1 (CLS) or 2 (CLS + distillation), got {num_prefix_tokens}.")
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        if initialization not in INITIALIZATIONS:
            raise ValueError(f"initialization must be one of {INITIALIZATIONS}, got {initialization!r}.")
        if patch_time_size is not None and patch_time_size < 1:
            raise ValueError(f"patch_time_size must be a positive number of frames or None, got {patch_time_size}.")
        patch_frames = patch_time_size or patch_size
        if num_mel_bins < patch_size or window_frames < patch_frames:
            raise ValueError(
                f"num_mel_bins ({num_mel_bins}) must be at least patch_size ({patch_size}) and window_frames "
                f"({window_frames}) at least the patch width ({patch_frames} frames)."
            )
        self.frontend = frontend
        self.sampling_rate = sampling_rate
        self.num_mel_bins = num_mel_bins
        self.window_frames = window_frames
        self.patch_size = patch_size
        self.patch_time_size = patch_time_size
        self.frequency_stride = frequency_stride
        self.time_stride = time_stride
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.layer_norm_eps = layer_norm_eps
        self.qkv_bias = qkv_bias
        self.initializer_range = initializer_range
        self.initialization = initialization
        self.num_prefix_tokens = num_prefix_tokens
        self.position_embedding_type = position_embedding_type
        self.pooling = pooling
        self.structured_patchout_time = structured_patchout_time
        self.structured_patchout_frequency = structured_patchout_frequency
        self.window_batch_size = window_batch_size
        self.classifier_layer_norm_eps = classifier_layer_norm_eps
        super().__init__(**without_registered_pipeline(kwargs))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> RespAudioConfig:
        """Build the configuration of a named preset (`resp-passt`, `tiny-m2d`, ...), overriding any field."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def patch_frames(self) -> int:
        """Width of one patch in frames (`patch_time_size`, or `patch_size` for square patches)."""
        return self.patch_time_size or self.patch_size

    @property
    def num_frequency_rows(self) -> int:
        """Frequency rows of the patch grid (F'), the name every model type gives its feature grid's rows."""
        return (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1

    def frequency_row_spans(self) -> list[range]:
        """The mel bands (indices) each frequency row stands for: its patches' bands, `patch_size` bands every
        `frequency_stride`."""
        return [
            range(row * self.frequency_stride, row * self.frequency_stride + self.patch_size)
            for row in range(self.num_frequency_rows)
        ]

    @property
    def num_time_patches(self) -> int:
        """Columns of the patch grid for one window of `window_frames` frames (T')."""
        return (self.window_frames - self.patch_frames) // self.time_stride + 1

    def describe_architecture(self, num_parameters: int) -> str:
        """The model in one sentence, for reports: its size, its family's layout, front end, patches and window."""
        return (
            f"A {num_parameters / 1e6:.1f} M-parameter {family_of_config(self).architecture}-layout spectrogram ViT "
            f"({self.hidden_size} wide, "
            f"{self.num_hidden_layers} layers, {self.num_attention_heads} heads; "
            f"{self.num_mel_bins}-band log-mel at {self.sampling_rate} Hz, "
            f"{self.patch_size}x{self.patch_frames} (mel bins x frames) patches, {self.window_frames}-frame windows)"
        )

    def feature_extractor_settings(self) -> dict[str, Any]:
        """`RespAudioFeatureExtractor` settings of this model's front end (`from_model_config` reads them): front
        end, rate, mel bins, the fewest frames of one patch (its width in time) and the window as `max_length`."""
        return dict(frontend=self.frontend, sampling_rate=self.sampling_rate, num_mel_bins=self.num_mel_bins,
                    patch_size=self.patch_frames, max_length=self.window_frames)

    @property
    def pooled_size(self) -> int:
        """Width of `pooler_output`."""
        if self.pooling == "freq_preserving":
            return self.num_frequency_rows * self.hidden_size
        return self.hidden_size


__all__ = [
    "MODEL_FAMILIES",
    "MODEL_TYPES",
    "PRESETS",
    "ModelFamily",
    "ModelType",
    "RespAudioConfig",
    "family_of_config",
    "find_model_type",
]
