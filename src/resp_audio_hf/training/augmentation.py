"""Waveform augmentation of training clips suited to lung sounds, applied by `RespAudioCollator` (its
`waveform_transform`) to the decoded clips of each training batch, before they are featurised.

Each is off by default and is a field of [`AugmentationConfig`] (`FinetuneConfig.augmentation`):

* random crop (`crop_seconds`): a clip longer than this gives a random window of that length, not always its start;
* time shift (`time_shift_seconds`): the clip is rolled circularly by a random shift, so the breathing cycle starts
  anywhere (auscultation recordings start at an arbitrary phase of the cycle);
* gain (`gain_db`): a random gain, as stethoscope pressure and chest wall change the level from one recording to the
  next;
* mixing within a class (`mix_probability`): the clip is mixed with another training clip of the same class,
  `lam * clip + (1 - lam) * other` over their common length, `lam` drawn from `Beta(mix_alpha, mix_alpha)` and
  folded above one half so the clip stays the louder one. The label is unchanged: both clips carry it. This is mixup
  without label mixing, which keeps the labels the challenge scores (a Wheeze event mixed with a Normal one would be a
  Wheeze event, not 0.7 of one).

The random stream is seeded by `seed` (and the DataLoader worker's id), so an uninterrupted run draws the same
augmentations every time; a run resumed from a checkpoint starts the stream afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class AugmentationConfig:
    """
    Args:
        crop_seconds: training clips longer than this give a random window of this length (None: off).
        time_shift_seconds: roll each training clip circularly by a uniform shift in [-s, s] seconds (0: off).
        gain_db: scale each training clip by a uniform gain in [-g, g] dB (0: off).
        mix_probability: chance that a training clip is mixed with another training clip of its class (0: off).
        mix_alpha: the mixing weight is drawn from Beta(mix_alpha, mix_alpha) and folded to at least one half.
        seed: seed of the augmentation stream; None takes the run's `training_args.seed`.
    """

    crop_seconds: float | None = None
    time_shift_seconds: float = 0.0
    gain_db: float = 0.0
    mix_probability: float = 0.0
    mix_alpha: float = 0.4
    seed: int | None = None

    def __post_init__(self):
        if self.crop_seconds is not None and not self.crop_seconds > 0:
            raise ValueError(f"augmentation.crop_seconds must be positive or None, got {self.crop_seconds!r}.")
        if self.time_shift_seconds < 0 or self.gain_db < 0:
            raise ValueError("augmentation.time_shift_seconds and gain_db must not be negative.")
        if not 0.0 <= self.mix_probability <= 1.0:
            raise ValueError(f"augmentation.mix_probability must be in [0, 1], got {self.mix_probability!r}.")
        if not self.mix_alpha > 0:
            raise ValueError(f"augmentation.mix_alpha must be positive, got {self.mix_alpha!r}.")

    @property
    def enabled(self) -> bool:
        return bool(self.crop_seconds or self.time_shift_seconds or self.gain_db or self.mix_probability)


class LungSoundAugmentation:
    """The `waveform_transform` of a training `RespAudioCollator`: `(clips, rates, examples, decode) -> clips`.

    Args:
        config: what to apply.
        seed: the stream's seed (`config.seed` wins when set).
        dataset: the training examples (a `datasets.Dataset` or a list of dicts), where mixing draws the other clip.
        labels: the class id of each example of `dataset` (needed for mixing).
        label_column: key of the class id in each example.
    """

    def __init__(
        self,
        config: AugmentationConfig,
        seed: int = 0,
        dataset: Sequence[Mapping[str, Any]] | None = None,
        labels: Sequence[int] | None = None,
        label_column: str = "label",
    ):
        self.config = config
        self.seed = int(config.seed if config.seed is not None else seed)
        self.dataset = dataset
        self.label_column = label_column
        self._by_class: dict[int, np.ndarray] = {}
        if config.mix_probability > 0:
            if dataset is None or labels is None:
                raise ValueError("Mixing within a class needs the training dataset and its labels.")
            labels = np.asarray(labels, dtype=np.int64)
            self._by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        self._streams: dict[int, np.random.Generator] = {}

    def _rng(self) -> np.random.Generator:
        """One stream per DataLoader worker (worker copies would otherwise repeat each other's draws)."""
        import torch

        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id + 1
        if worker not in self._streams:
            self._streams[worker] = np.random.default_rng([self.seed, worker])
        return self._streams[worker]

    def __call__(
        self,
        clips: Sequence[np.ndarray],
        rates: Sequence[int],
        examples: Sequence[Mapping[str, Any]],
        decode: Callable[[Mapping[str, Any]], tuple[np.ndarray, int]] | None = None,
    ) -> list[np.ndarray]:
        rng = self._rng()
        out = []
        for index, (clip, rate, example) in enumerate(zip(clips, rates, examples)):
            clip = np.asarray(clip, dtype=np.float32)
            if clip.ndim != 1:
                raise ValueError(f"Example {index}: augmentation needs mono 1-D clips, got shape {clip.shape}.")
            clip = self.augment(clip, int(rate), example, rng, decode)
            out.append(clip)
        return out

    def augment(self, clip: np.ndarray, rate: int, example: Mapping[str, Any], rng: np.random.Generator, decode=None):
        """One clip's augmentations, in order: mix, crop, shift, gain."""
        config = self.config
        if config.mix_probability > 0 and rng.random() < config.mix_probability:
            clip = self._mix(clip, rate, example, rng, decode)
        if config.crop_seconds is not None:
            clip = random_crop(clip, int(round(config.crop_seconds * rate)), rng)
        if config.time_shift_seconds > 0:
            limit = int(round(config.time_shift_seconds * rate))
            clip = np.roll(clip, int(rng.integers(-limit, limit + 1)))
        if config.gain_db > 0:
            clip = clip * np.float32(10.0 ** (rng.uniform(-config.gain_db, config.gain_db) / 20.0))
        return clip.astype(np.float32, copy=False)

    def _mix(self, clip, rate, example, rng, decode):
        if decode is None:
            raise ValueError("Mixing within a class needs the collator's decode function.")
        label = int(example[self.label_column])
        candidates = self._by_class.get(label)
        if candidates is None or len(candidates) == 0:
            raise ValueError(f"No training example of class {label} to mix with.")
        other, other_rate = decode(self.dataset[int(rng.choice(candidates))])
        other = np.asarray(other, dtype=np.float32)
        if int(other_rate) != rate or other.ndim != 1:
            raise ValueError(f"Cannot mix a {rate} Hz clip with a {other_rate} Hz clip of shape {other.shape}.")
        lam = rng.beta(self.config.mix_alpha, self.config.mix_alpha)
        return mix_clips(clip, other, max(lam, 1.0 - lam), rng)


def random_crop(clip: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of `length` samples of a longer clip (shorter clips are returned whole)."""
    if clip.shape[-1] <= length:
        return clip
    start = int(rng.integers(0, clip.shape[-1] - length + 1))
    return clip[start : start + length]


def mix_clips(clip: np.ndarray, other: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
    """`weight * clip + (1 - weight) * other` over their common length: the shorter one is laid at a random offset
    of the longer one; the rest of `clip` is kept (scaled by `weight`), so the result has `clip`'s length."""
    length = min(clip.shape[-1], other.shape[-1])
    other_start = int(rng.integers(0, other.shape[-1] - length + 1))
    clip_start = int(rng.integers(0, clip.shape[-1] - length + 1))
    mixed = clip.astype(np.float32) * np.float32(weight)
    mixed[clip_start : clip_start + length] += np.float32(1.0 - weight) * other[other_start : other_start + length]
    return mixed


__all__ = ["AugmentationConfig", "LungSoundAugmentation", "mix_clips", "random_crop"]
