"""Non-learned baselines as encoders of the benchmark path: log-mel statistics and clip duration.

Each is an `nn.Module` without parameters that turns the output of a [`RespAudioFeatureExtractor`] into one
vector per clip, wrapped in an [`~resp_audio_hf.extraction.encoder.AudioEncoder`], so it goes through the same
streamed extraction, embedding cache, linear probe and reports as a foundation model (`resp-audio-hf bench
--baseline log-mel-stats`). They say how much of a task a model's score owes to what needs no learning:

* `log-mel-stats` - per mel band, statistics of the log-mel spectrogram over the clip's frames (mean, standard
  deviation, 5th / 50th / 95th percentile) and of its frame-to-frame difference (mean absolute value, standard
  deviation): functionals of low-level descriptors in the spirit of the openSMILE baseline of OPERA. The front end is
  M2D's (16 kHz, 25 ms Hann windows, 10 ms hop) with 64 bands between 50 Hz and 4 kHz: SPRSound and the call-centre
  coughs are 8 kHz recordings, so bands above 4 kHz would describe the recording channel, not the sound.
* `duration` - the clip's length in seconds, to the 10 ms frame (one feature). On SPRSound's event task it
  already separates adventitious from normal events, which are longer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

NONLEARNED_BASELINES = ("log-mel-stats", "duration")

#: Statistics of `log-mel-stats`, in the order of each band's block of the embedding.
LOG_MEL_STATISTICS = ("mean", "std", "p05", "median", "p95", "delta_abs_mean", "delta_std")
_QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class NonLearnedConfig:
    """What a non-learned baseline computes (part of the embedding cache key through `to_dict`).

    Attributes:
        name: `"log-mel-stats"` or `"duration"`.
        num_mel_bins: bands of the front end.
        statistics: the statistics per band (`log-mel-stats`) or `("duration_s",)`.
        hop_length, sampling_rate: frame hop of the front end (samples) and its rate, which turn frames into seconds.
    """

    name: str
    num_mel_bins: int
    statistics: tuple[str, ...]
    hop_length: int
    sampling_rate: int

    pooling = None  # no pooling choice: recorded as the model's own

    @property
    def pooled_size(self) -> int:
        return len(self.statistics) * (self.num_mel_bins if self.name == "log-mel-stats" else 1)

    def to_dict(self) -> dict:
        return {"model_type": "nonlearned", **asdict(self), "statistics": list(self.statistics)}


def baseline_feature_extractor():
    """The front end of both baselines: M2D's 16 kHz log-mel with 64 bands from 50 Hz to 4 kHz, one frame minimum."""
    from ..feature_extraction_resp_audio import RespAudioFeatureExtractor

    # patch_size=1: a clip shorter than one ViT patch keeps its own length instead of being padded to 16 frames.
    return RespAudioFeatureExtractor(frontend="m2d", num_mel_bins=64, f_min=50.0, f_max=4000.0, patch_size=1)


def _frame_counts(input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return torch.full((input_values.shape[0],), input_values.shape[1], dtype=torch.long)
    return attention_mask.to(torch.long).sum(dim=1)


class LogMelStatistics(nn.Module):
    """`[batch, frames, mels]` log-mel frames (padding masked out) -> `[batch, mels * 7]` statistics: for each band
    in turn its mean, std (ddof 0), 5th, 50th and 95th percentiles (linear interpolation) over the clip's frames, and
    the mean absolute value and std of its first difference along time (0 for a one-frame clip)."""

    def __init__(self, config: NonLearnedConfig):
        super().__init__()
        self.config = config

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **_):
        counts = _frame_counts(input_values, attention_mask)
        vectors = []
        for clip, count in zip(input_values.to(torch.float64), counts.tolist()):
            frames = clip[:count]
            quantiles = torch.quantile(frames, torch.tensor(_QUANTILES, dtype=frames.dtype), dim=0)
            delta = frames[1:] - frames[:-1]
            has_delta = delta.shape[0] > 0
            stats = [
                frames.mean(dim=0),
                frames.std(dim=0, correction=0),
                *quantiles,
                delta.abs().mean(dim=0) if has_delta else torch.zeros_like(frames[0]),
                delta.std(dim=0, correction=0) if has_delta else torch.zeros_like(frames[0]),
            ]
            vectors.append(torch.stack(stats, dim=1).reshape(-1))  # band-major: band 0's statistics first
        pooled = torch.stack(vectors).to(torch.float32)
        return BaseModelOutputWithPooling(last_hidden_state=None, pooler_output=pooled)


class ClipDuration(nn.Module):
    """The clip's duration in seconds, `(frames - 1) * hop / rate` (the M2D front end yields `1 + samples // hop`
    frames, so this is the length rounded down to the 10 ms hop), as a `[batch, 1]` embedding."""

    def __init__(self, config: NonLearnedConfig):
        super().__init__()
        self.config = config

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None, **_):
        frames = _frame_counts(input_values, attention_mask).to(torch.float32)
        seconds = (frames - 1) * self.config.hop_length / self.config.sampling_rate
        return BaseModelOutputWithPooling(last_hidden_state=None, pooler_output=seconds[:, None])


def nonlearned_encoder(name: str, device: str | torch.device = "cpu"):
    """The [`AudioEncoder`] of baseline `name` (one of `NONLEARNED_BASELINES`)."""
    from ..extraction.encoder import AudioEncoder

    if name not in NONLEARNED_BASELINES:
        raise ValueError(f"Unknown baseline {name!r}; choose from {', '.join(NONLEARNED_BASELINES)}.")
    feature_extractor = baseline_feature_extractor()
    statistics = LOG_MEL_STATISTICS if name == "log-mel-stats" else ("duration_s",)
    config = NonLearnedConfig(
        name, feature_extractor.num_mel_bins, statistics, feature_extractor.hop_length, feature_extractor.sampling_rate
    )
    model = LogMelStatistics(config) if name == "log-mel-stats" else ClipDuration(config)
    return AudioEncoder(model, feature_extractor, model_id=f"baseline:{name}", device=device)


__all__ = [
    "LOG_MEL_STATISTICS",
    "NONLEARNED_BASELINES",
    "ClipDuration",
    "LogMelStatistics",
    "NonLearnedConfig",
    "baseline_feature_extractor",
    "nonlearned_encoder",
]
