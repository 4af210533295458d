"""Batch collation for fine-tuning: examples holding raw audio -> padded log-mel batches the model takes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature

from .data.audio import audio_file_source, load_audio

logger = logging.getLogger(__name__)


@dataclass
class RespAudioCollator:
    r"""
    Turns a list of examples holding audio of any length into one padded batch: `input_values`
    `[batch, frames, num_mel_bins]`, `attention_mask` `[batch, frames]` and, when the examples carry labels, `labels`.
    The spectrograms are computed by the feature extractor, so clips of different lengths and sampling rates can share
    a batch and the model masks the padding out.

    Files are decoded as `resp-audio-hf bench` decodes them (`resp_audio_hf.data.audio.load_audio`: FFmpeg resamples
    to the model's rate, the channels are averaged), so a recording gives the features here that it gives in the
    benchmark: a path, a `datasets` `Audio` column, decoded (the decoder is opened again on its file, whatever rate
    the column was cast to) or not (`Audio(decode=False)`, `{"path", "bytes"}`). Arrays in memory go the feature
    extractor's way (torchaudio's resampler, the same channel mean).

    Use it as `Trainer(data_collator=RespAudioCollator(feature_extractor), args=TrainingArguments(...,
    remove_unused_columns=False))`: the Trainer otherwise drops the audio column, which the model's `forward` does not
    name.

    Args:
        feature_extractor ([`RespAudioFeatureExtractor`]):
            The model's front end; it resamples, featurises and pads the clips.
        sampling_rate (`int`, *optional*):
            Rate (Hz) of examples whose audio is a bare array or tensor. Examples that carry their own rate (a
            `{"array", "sampling_rate"}` dict, a torchcodec decoder, or a per-example `"sampling_rate"` field) use that
            instead; files are decoded at the feature extractor's rate. One of the two must be known for every
            array.
        audio_column (`str`, *optional*, defaults to `"audio"`):
            Key of the audio in each example.
        label_column (`str` or `None`, *optional*, defaults to `"label"`):
            Key of the target in each example: an integer class, or a list of floats for multi-label or regression.
            Batches of examples without this key get no `labels` (for prediction); `None` never adds labels.
        start_column (`str` or `None`, *optional*, defaults to `"start_s"`):
            Key of a segment's start in seconds; see `end_column`.
        end_column (`str` or `None`, *optional*, defaults to `"end_s"`):
            Key of a segment's end in seconds (event-level tasks such as `ICBHI-cycle` or `SPRSound-1-2`,
            whose rows are annotated segments of a recording): an example that has them (not `None`) gives only
            that part of its audio, decoded as `bench` decodes segments (`load_audio(..., start_s, end_s)`), or
            sliced from an array at its sampling rate. Examples without them, or with `None`, give the whole clip.
        max_seconds (`float`, *optional*):
            Crop clips longer than this to their first `max_seconds` seconds (to bound memory when training on long
            recordings). Nothing is cropped unless this is set; every crop is counted in `num_cropped` and
            `cropped_seconds` and the first one is logged, so cropping is never silent.
        waveform_transform (`Callable`, *optional*):
            Applied to the decoded clips of each batch before `max_seconds` and featurisation, as
            `waveform_transform(clips, rates, examples, decode)` -> clips, where `decode(example)` returns another
            example's `(clip, rate)` the way this collator decodes it: training augmentation
            (`resp_audio_hf.training.augmentation.LungSoundAugmentation`). Give it to the training collator only.

    Attributes:
        num_cropped (`int`): how many clips `max_seconds` has cropped so far (in this process: crops made in
            DataLoader worker processes are counted in the workers' copies).
        cropped_seconds (`float`): total audio dropped by those crops, in seconds.
    """

    feature_extractor: Any
    sampling_rate: int | None = None
    audio_column: str = "audio"
    label_column: str | None = "label"
    start_column: str | None = "start_s"
    end_column: str | None = "end_s"
    max_seconds: float | None = None
    waveform_transform: Any = None
    num_cropped: int = field(default=0, init=False)
    cropped_seconds: float = field(default=0.0, init=False)

    def __post_init__(self):
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be a positive number of seconds or None, got {self.max_seconds!r}.")
        rate = self.sampling_rate
        if rate is not None and not (isinstance(rate, (int, np.integer)) and rate > 0):
            raise ValueError(f"sampling_rate must be a positive integer rate in Hz or None, got {rate!r}.")

    def __call__(self, examples: list[Mapping[str, Any]]) -> BatchFeature:
        if len(examples) == 0:
            raise ValueError("RespAudioCollator got an empty list of examples.")
        clips, rates = zip(*(self._audio_and_rate(example, index) for index, example in enumerate(examples)))
        if self.waveform_transform is not None:
            clips = self.waveform_transform(list(clips), list(rates), examples, self.decode)
        if self.max_seconds is not None:
            clips = [self._crop(clip, rate) for clip, rate in zip(clips, rates)]
        batch = self._featurise(list(clips), list(rates))
        labels = self._labels(examples)
        if labels is not None:
            batch["labels"] = labels
        return batch

    # ------------------------------------------------------------------ audio

    def decode(self, example: Mapping[str, Any]) -> tuple[Any, int]:
        """One example's audio (its segment, when it has one) and its rate, as a batch decodes it."""
        return self._audio_and_rate(example, 0)

    def _audio_and_rate(self, example: Mapping[str, Any], index: int) -> tuple[Any, int]:
        if self.audio_column not in example:
            raise KeyError(
                f"Example {index} has no {self.audio_column!r} field (it has {sorted(example)}); set audio_column to "
                "the key of the audio, and pass remove_unused_columns=False to the Trainer so that it keeps it."
            )
        audio = example[self.audio_column]
        rate = example.get("sampling_rate", self.sampling_rate)
        start, end = self._segment(example, index)
        if audio_file_source(audio) is not None:
            # Files go `bench`'s way (FFmpeg resamples to the model's rate, channels averaged), not the arrays' way.
            return load_audio(audio, self.feature_extractor.sampling_rate, start, end)
        clip, rate = self._array_and_rate(audio, rate, index)
        if start is None and end is None:
            return clip, rate
        clip = np.asarray(clip) if isinstance(clip, (list, tuple)) else clip
        first = 0 if start is None else int(round(start * rate))
        last = None if end is None else int(round(end * rate))
        segment = clip[..., first:last] if _time_axis(clip) == -1 else clip[first:last]
        if segment.shape[_time_axis(clip)] == 0:
            raise ValueError(f"Example {index}: the segment {start}-{end} s of its audio is empty.")
        return segment, rate

    def _segment(self, example: Mapping[str, Any], index: int) -> tuple[float | None, float | None]:
        """The example's segment bounds in seconds (`None` where it has none)."""
        bounds = []
        for column in (self.start_column, self.end_column):
            value = example.get(column) if column is not None else None
            bounds.append(None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value))
        start, end = bounds
        if start is not None and end is not None and not end > start:
            raise ValueError(f"Example {index}: segment end {end} s is not after its start {start} s.")
        return start, end

    def _array_and_rate(self, audio, rate, index: int) -> tuple[Any, int]:
        if hasattr(audio, "get_all_samples"):  # a torchcodec AudioDecoder that does not know its file
            samples = audio.get_all_samples()
            audio, rate = samples.data, samples.sample_rate
        elif isinstance(audio, Mapping):
            array = audio.get("array", audio.get("raw"))
            if array is None:
                raise ValueError(
                    f"Example {index}: the audio dict has keys {sorted(audio)} but neither 'array' (or 'raw') "
                    "samples nor a 'path' or 'bytes' of a file."
                )
            audio, rate = array, audio.get("sampling_rate", rate)
        if rate is None:
            raise ValueError(
                f"Example {index}: unknown sampling rate of a bare audio array. Pass RespAudioCollator(..., "
                "sampling_rate=...) or give each example a 'sampling_rate' field."
            )
        return audio, int(rate)

    def _crop(self, clip, rate: int):
        limit = int(round(self.max_seconds * rate))
        clip = np.asarray(clip) if isinstance(clip, (list, tuple)) else clip
        time_axis = _time_axis(clip)
        length = clip.shape[time_axis]
        if length <= limit:
            return clip
        self.num_cropped += 1
        self.cropped_seconds += (length - limit) / rate
        if self.num_cropped == 1:  # once per collator (and DataLoader worker); the counters keep the total
            logger.warning(
                "RespAudioCollator crops clips longer than max_seconds=%s s to their first %s s; "
                "RespAudioCollator.num_cropped and .cropped_seconds count what was cut.",
                self.max_seconds, self.max_seconds,
            )
        return clip[..., :limit] if time_axis == -1 else clip[:limit]

    def _featurise(self, clips: list, rates: list[int]) -> BatchFeature:
        if len(set(rates)) == 1:
            return self.feature_extractor(clips, sampling_rate=rates[0], return_tensors="pt")
        # The feature extractor takes one rate per call: featurise each rate's clips, then pad the groups together.
        groups: dict[int, list[int]] = {}
        for index, rate in enumerate(rates):
            groups.setdefault(rate, []).append(index)
        parts = {
            rate: self.feature_extractor([clips[i] for i in indices], sampling_rate=rate, return_tensors="pt")
            for rate, indices in groups.items()
        }
        frames = max(part["input_values"].shape[1] for part in parts.values())
        first = next(iter(parts.values()))
        input_values = torch.full(
            (len(clips), frames, first["input_values"].shape[2]),
            float(self.feature_extractor.padding_value),
            dtype=first["input_values"].dtype,
        )
        attention_mask = torch.zeros(len(clips), frames, dtype=first["attention_mask"].dtype)
        for rate, indices in groups.items():
            part = parts[rate]
            length = part["input_values"].shape[1]
            input_values[indices, :length] = part["input_values"]
            attention_mask[indices, :length] = part["attention_mask"]
        return BatchFeature({"input_values": input_values, "attention_mask": attention_mask})

    # ------------------------------------------------------------------ labels

    def _labels(self, examples: list[Mapping[str, Any]]) -> torch.Tensor | None:
        if self.label_column is None:
            return None
        present = [self.label_column in example for example in examples]
        if not any(present):
            return None
        if not all(present):
            missing = [index for index, has in enumerate(present) if not has]
            raise ValueError(
                f"Examples {missing} have no {self.label_column!r} field but others in the batch do; label every "
                "example, or none for prediction."
            )
        labels = [example[self.label_column] for example in examples]
        labels = [label.detach().cpu() if isinstance(label, torch.Tensor) else label for label in labels]
        labels = torch.from_numpy(np.asarray(labels))
        # Float targets (multi-label, regression) must match the float32 logits in the loss.
        return labels.float() if labels.is_floating_point() else labels.long()


def _time_axis(clip) -> int:
    """Time is the last axis of 1-D clips and the longer axis of [channels, samples] / [samples, channels] ones, the
    same rule the feature extractor uses to downmix."""
    return -1 if clip.ndim == 1 or clip.shape[-1] >= clip.shape[0] else 0


__all__ = ["RespAudioCollator"]
