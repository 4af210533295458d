"""
Long recordings assembled from real cough clips inserted at known times, and the scoring of detected coughs against
them: what `resp-audio-hf demo`'s cough timeline and `results/cough_counting.py` are built on.

A cough clip (a crowd-sourced recording of one to a few induced coughs) is trimmed to its active part: the 10 ms frames
whose energy is within `below_peak_db` dB of the clip's loudest frame, from the first to the last of them, plus a short
margin of the clip's own sound on each side. That active part is one true event (a cough episode), whatever number
of coughs it holds; it is inserted into the background (real non-cough audio, or a quiet noise floor) after a random
gap. Detected segments are matched one to one to true events by their onsets, within a tolerance (an optimal
assignment on the onset distance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Assembly:
    """An assembled recording: `audio` at `sampling_rate`, the true `events` as `(onset_s, offset_s)` and the
    clip each event came from."""

    audio: np.ndarray
    sampling_rate: int
    events: list[tuple[float, float]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.sampling_rate


def frame_levels_db(audio: np.ndarray, rate: int, frame_seconds: float = 0.01) -> np.ndarray:
    """Energy of each whole `frame_seconds` frame, in dB relative to full scale."""
    frame = max(1, round(frame_seconds * rate))
    count = audio.size // frame
    if count == 0:
        return np.full(1, 10 * np.log10(float(np.mean(audio**2)) + 1e-12))
    power = (audio[: count * frame].astype(np.float64).reshape(count, frame) ** 2).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


def active_span(audio: np.ndarray, rate: int, below_peak_db: float = 20.0, frame_seconds: float = 0.01):
    """`(start, end)` samples of the active part of a clip: from the first to the last frame within `below_peak_db`
    of the loudest frame."""
    levels = frame_levels_db(audio, rate, frame_seconds)
    active = np.flatnonzero(levels >= levels.max() - below_peak_db)
    frame = max(1, round(frame_seconds * rate))
    return int(active[0] * frame), int(min(audio.size, (active[-1] + 1) * frame))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def assemble_coughs(
    clips: list[np.ndarray],
    rate: int,
    rng: np.random.Generator,
    *,
    background: np.ndarray | None = None,
    names: list[str] | None = None,
    gap_seconds: tuple[float, float] = (2.0, 10.0),
    snr_db: tuple[float, float] | None = None,
    noise_floor_dbfs: float = -60.0,
    margin_seconds: float = 0.05,
    below_peak_db: float = 20.0,
) -> Assembly:
    """
    Insert every clip of `clips` (mono, at `rate`), trimmed to its active part, after a gap drawn uniformly from
    `gap_seconds` (and one such gap after the last).

    Args:
        background: real non-cough audio at `rate`, at least as long as the assembly (the caller concatenates
            recordings), which the coughs are added to. `None`: a quiet noise floor (white noise at
            `noise_floor_dbfs` RMS, drawn from `rng`), the coughs kept at their recorded level.
        snr_db: with a background, each cough's active part is scaled to this many dB (drawn uniformly) above the
            background's RMS; `None` keeps the coughs at their recorded level.
    """
    names = names or [f"clip {i}" for i in range(len(clips))]
    margin = round(margin_seconds * rate)
    pieces, placements = [], []
    position = 0
    for clip in clips:
        position += round(rng.uniform(*gap_seconds) * rate)
        start, end = active_span(clip, rate, below_peak_db)
        first, last = max(0, start - margin), min(clip.size, end + margin)
        pieces.append(clip[first:last])
        placements.append((position, position + start - first, position + end - first))
        position += last - first
    total = position + round(rng.uniform(*gap_seconds) * rate)
    if background is None:
        audio = (rng.standard_normal(total) * 10 ** (noise_floor_dbfs / 20)).astype(np.float32)
        reference = None
    else:
        if background.size < total:
            raise ValueError(f"The background has {background.size} samples; the assembly needs {total}.")
        audio = np.array(background[:total], dtype=np.float32)
        reference = rms(audio)
    events = []
    for piece, (at, onset, offset) in zip(pieces, placements):
        if reference is not None and snr_db is not None:
            active = piece[onset - at : offset - at]
            piece = piece * (reference * 10 ** (rng.uniform(*snr_db) / 20) / max(rms(active), 1e-9))
        audio[at : at + piece.size] += piece
        events.append((onset / rate, offset / rate))
    peak = float(np.abs(audio).max())
    if peak > 0.99:  # keep the sum within full scale, as a recorder's gain would
        audio *= 0.99 / peak
    return Assembly(audio, rate, events, list(names))


@dataclass
class Matching:
    """Detected onsets matched one to one to true onsets within `tolerance_s`."""

    tolerance_s: float
    pairs: list[tuple[int, int]]
    onset_errors_s: np.ndarray  # detected minus true onset of each matched pair
    n_true: int
    n_detected: int

    @property
    def hits(self) -> int:
        return len(self.pairs)

    @property
    def misses(self) -> int:
        return self.n_true - self.hits

    @property
    def false_alarms(self) -> int:
        return self.n_detected - self.hits


def match_onsets(true_onsets, detected_onsets, tolerance_s: float) -> Matching:
    """The largest one-to-one matching of detected to true onsets at most `tolerance_s` apart, and among those the one
    with the smallest total onset distance (an assignment problem, solved by scipy)."""
    from scipy.optimize import linear_sum_assignment

    true_onsets = np.asarray(true_onsets, dtype=np.float64)
    detected_onsets = np.asarray(detected_onsets, dtype=np.float64)
    if not true_onsets.size or not detected_onsets.size:
        return Matching(tolerance_s, [], np.zeros(0), true_onsets.size, detected_onsets.size)
    distance = np.abs(detected_onsets[None, :] - true_onsets[:, None])
    # A pair beyond the tolerance costs more than any set of pairs within it, so the matching first maximises the
    # number of pairs within the tolerance, then minimises their distance.
    cost = np.where(distance <= tolerance_s, distance, 1e6)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if distance[r, c] <= tolerance_s]
    errors = np.array([detected_onsets[c] - true_onsets[r] for r, c in pairs])
    return Matching(tolerance_s, pairs, errors, true_onsets.size, detected_onsets.size)


__all__ = ["Assembly", "Matching", "active_span", "assemble_coughs", "frame_levels_db", "match_onsets", "rms"]
