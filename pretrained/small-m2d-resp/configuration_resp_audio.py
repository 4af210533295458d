"""Configuration of the respiratory-audio spectrogram transformer (PaSST, AST and M2D families)."""

from __future__ import annotations

import copy
import sys

from transformers import PreTrainedConfig

FRONTENDS = ("passt", "ast", "m2d")
POSITION_EMBEDDING_TYPES = ("time_freq", "learned_2d", "sincos_2d")
POOLING_TYPES = ("freq_preserving", "mean", "cls")

# Published sizes of the three families plus tiny variants for tests. Every field not listed keeps
# the default of `RespAudioConfig.__init__`.
_VIT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_VIT_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
# A few million parameters: pre-trainable from scratch on a CPU in an hour or two (training/configs/small_m2d_resp.yaml).
_VIT_SMALL = dict(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, intermediate_size=1024)
_PASST = dict(
    frontend="passt",
    sampling_rate=32000,
    num_mel_bins=128,
    max_length=998,
    patch_size=16,
    frequency_stride=10,
    time_stride=10,
    num_prefix_tokens=2,
    position_embedding_type="time_freq",
    layer_norm_eps=1e-6,
)
_AST = dict(
    frontend="ast",
    sampling_rate=16000,
    num_mel_bins=128,
    max_length=1024,
    patch_size=16,
    frequency_stride=10,
    time_stride=10,
    num_prefix_tokens=2,
    position_embedding_type="learned_2d",
    layer_norm_eps=1e-12,
)
_M2D = dict(
    frontend="m2d",
    sampling_rate=16000,
    num_mel_bins=80,
    max_length=608,
    patch_size=16,
    frequency_stride=16,
    time_stride=16,
    num_prefix_tokens=1,
    position_embedding_type="sincos_2d",
    layer_norm_eps=1e-6,
)
PRESETS: dict[str, dict] = {
    "resp-passt": {**_PASST, **_VIT_BASE},
    "resp-ast": {**_AST, **_VIT_BASE},
    "resp-m2d": {**_M2D, **_VIT_BASE},
    "tiny-passt": {**_PASST, **_VIT_TINY, "max_length": 198},
    "tiny-ast": {**_AST, **_VIT_TINY, "max_length": 198},
    "tiny-m2d": {**_M2D, **_VIT_TINY, "max_length": 208},
    # M2D layout (80 mels, 16 x 16 patches) in 2.08 s windows, 4.8 M parameters.
    "small-m2d": {**_M2D, **_VIT_SMALL, "max_length": 208},
}


def _pipeline_is_registered() -> bool:
    """Whether `resp_audio_hf.pipeline_resp_audio.register_pipeline` has run in this process."""
    pipelines = sys.modules.get("transformers.pipelines")
    if pipelines is None:
        return False
    implementation = pipelines.PIPELINE_REGISTRY.supported_tasks.get("audio-classification", {}).get("impl")
    return getattr(implementation, "__name__", None) == "RespAudioClassificationPipeline"


class RespAudioConfig(PreTrainedConfig):
    r"""
    Configuration of [`RespAudioModel`]: one spectrogram Vision Transformer whose fields select the PaSST, AST or M2D
    family. Use [`RespAudioConfig.from_preset`] for the published sizes (`resp-passt`, `resp-ast`, `resp-m2d`) or tiny
    test sizes (`tiny-passt`, `tiny-ast`, `tiny-m2d`), or `small-m2d` (4.8 M parameters, pre-trainable on a CPU).

    Args:
        frontend (`str`, *optional*, defaults to `"passt"`):
            Which family's audio front end the matching [`RespAudioFeatureExtractor`] reproduces: `"passt"`,
            `"ast"` or `"m2d"`.
        sampling_rate (`int`, *optional*, defaults to 32000):
            Sampling rate (Hz) the front end and the encoder were trained at.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel bins of the input spectrogram (the frequency axis of the patch grid).
        max_length (`int`, *optional*, defaults to 998):
            Number of spectrogram frames of one pre-training clip. It fixes the size of the time position embedding;
            longer inputs are encoded in consecutive windows of this length (see [`RespAudioModel`]).
        patch_size (`int`, *optional*, defaults to 16):
            Height and width of one square patch, in mel bins and frames.
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
        num_prefix_tokens (`int`, *optional*, defaults to 2):
            Tokens put before the patch tokens: 1 (CLS, as M2D) or 2 (CLS and distillation, as PaSST and AST).
        position_embedding_type (`str`, *optional*, defaults to `"time_freq"`):
            `"time_freq"`: separate learned time and frequency embeddings added on the patch grid (PaSST);
            `"learned_2d"`: one learned embedding per grid position (AST);
            `"sincos_2d"`: fixed 2-D sine-cosine embedding per grid position, not trained (M2D).
        pooling (`str`, *optional*, defaults to `"freq_preserving"`):
            How `pooler_output` is made from the final tokens: `"freq_preserving"` averages the patch tokens over time
            only and concatenates the frequency rows (`num_frequency_patches * hidden_size` features, Niizumi et al.
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
    # Declared as a dataclass field so that `save_pretrained` does not mistake it for the generation parameter of
    # the same name (transformers refuses to save configs carrying undeclared generation parameters).
    max_length: int = 998

    def __init__(
        self,
        frontend: str = "passt",
        sampling_rate: int = 32000,
        num_mel_bins: int = 128,
        max_length: int = 998,
        patch_size: int = 16,
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
        num_prefix_tokens: int = 2,
        position_embedding_type: str = "time_freq",
        pooling: str = "freq_preserving",
        structured_patchout_time: int = 0,
        structured_patchout_frequency: int = 0,
        window_batch_size: int = 16,
        classifier_layer_norm_eps: float | None = None,
        **kwargs,
    ):
        if frontend not in FRONTENDS:
            raise ValueError(f"frontend must be one of {FRONTENDS}, got {frontend!r}.")
        if position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, got {position_embedding_type!r}."
            )
        if pooling not in POOLING_TYPES:
            raise ValueError(f"pooling must be one of {POOLING_TYPES}, got {pooling!r}.")
        if num_prefix_tokens not in (1, 2):
            raise ValueError(f"num_prefix_tokens must be 1 (CLS) or 2 (CLS + distillation), got {num_prefix_tokens}.")
        if hidden_size % num_attention_heads:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
            )
        if num_mel_bins < patch_size or max_length < patch_size:
            raise ValueError(
                f"num_mel_bins ({num_mel_bins}) and max_length ({max_length}) must be at least patch_size ({patch_size})."
            )
        self.frontend = frontend
        self.sampling_rate = sampling_rate
        self.num_mel_bins = num_mel_bins
        self.max_length = max_length
        self.patch_size = patch_size
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
        self.num_prefix_tokens = num_prefix_tokens
        self.position_embedding_type = position_embedding_type
        self.pooling = pooling
        self.structured_patchout_time = structured_patchout_time
        self.structured_patchout_frequency = structured_patchout_frequency
        self.window_batch_size = window_batch_size
        self.classifier_layer_norm_eps = classifier_layer_norm_eps
        # Saved classifiers name their pipeline in `custom_pipelines`, for processes without this package, where
        # `pipeline(..., trust_remote_code=True)` builds it from the folder. Where the package has registered it for
        # the task already, the entry is dropped: transformers would demand trust_remote_code for it.
        if kwargs.get("custom_pipelines") and _pipeline_is_registered():
            kwargs.pop("custom_pipelines")
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "RespAudioConfig":
        """Build the configuration of a named preset (`resp-passt`, `tiny-m2d`, ...), overriding any field."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**copy.deepcopy(PRESETS[name]), **overrides})

    @property
    def num_frequency_patches(self) -> int:
        """Rows of the patch grid (F')."""
        return (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1

    @property
    def num_time_patches(self) -> int:
        """Columns of the patch grid for one `max_length` window (T')."""
        return (self.max_length - self.patch_size) // self.time_stride + 1

    @property
    def pooled_size(self) -> int:
        """Width of `pooler_output`."""
        if self.pooling == "freq_preserving":
            return self.num_frequency_patches * self.hidden_size
        return self.hidden_size


__all__ = ["RespAudioConfig", "PRESETS"]
