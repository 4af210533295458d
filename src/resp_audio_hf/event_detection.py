"""
Sound events located in time by a windowed classifier, and scored against annotated events.

A recording is cut into windows of one length (every window a full `window_seconds` clip: the windows of
`resp_audio_hf.windowed.window_starts` that end inside the recording; a recording shorter than one window is one
shorter window). A classifier scores each window alone. Each window speaks for the `hop` seconds at its centre, as in
`resp-audio-hf tag` (`tagging.window_spans`); the windows scoring at least a threshold are merged into events
(`tagging.merge_spans`: touching spans, and spans at most `merge_gap_seconds` apart), and events shorter than
`min_duration_seconds` are dropped.

For training and tuning, a window is labelled positive when it overlaps an annotated event by at least half of the
shorter of the window and the event ([`window_labels`]): half the window for events at least as long as the window
(the usual rule), and half the event for shorter ones, so that a 0.3 s wheeze still makes a 1 s window positive.

Scores are `sed_eval`'s (the `events` extra): event-based precision/recall/F1 with an onset collar (optionally also
the offset), and segment-based F1 on fixed segments ([`sed_eval_scores`]).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

Event = tuple[float, float]


def full_window_starts(num_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the full-length windows of a recording of `num_samples` (every `hop` samples); a recording
    shorter than one window has one window, from 0."""
    from .windowed import window_starts

    starts = [start for start in window_starts(num_samples, window, hop) if start + window <= num_samples]
    return starts or [0]


class WindowClipDataset:
    """The windows of several recordings as clips, for `extraction.extract_embeddings` (and its cache).

    Item `i` is window `start_s[i]` of recording `recording[i]`, decoded at `sampling_rate` with the package's
    decoder (`data.audio.load_audio`, a whole file at a time: the windows equal those `resp_audio_hf.windowed` cuts).
    Items are in recording order, so read in order each recording is decoded once.

    Args:
        paths: the recordings.
        num_samples: each recording's length in samples at `sampling_rate` (it fixes the windows before decoding).
        sampling_rate: the model's rate.
        window_seconds, hop_seconds: window length and the step between window starts.
    """

    def __init__(self, paths: Sequence[str], num_samples: Sequence[int], sampling_rate: int, window_seconds: float,
                 hop_seconds: float):
        if not (window_seconds > 0 and 0 < hop_seconds <= window_seconds):
            raise ValueError(f"Need 0 < hop_seconds <= window_seconds, got {window_seconds} and {hop_seconds}.")
        self.paths = [str(p) for p in paths]
        self.sampling_rate = int(sampling_rate)
        self.window_seconds, self.hop_seconds = float(window_seconds), float(hop_seconds)
        self.window = round(window_seconds * sampling_rate)
        hop = round(hop_seconds * sampling_rate)
        recording, starts = [], []
        for index, n in enumerate(num_samples):
            for start in full_window_starts(int(n), self.window, hop):
                recording.append(index)
                starts.append(start)
        self.recording = np.asarray(recording, dtype=np.int64)
        self.start_sample = np.asarray(starts, dtype=np.int64)
        self.start_s = self.start_sample / self.sampling_rate
        self._decoded: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.start_sample)

    def describe(self, index: int) -> str:
        return f"{self.paths[self.recording[index]]} [window at {self.start_s[index]:.3f} s]"

    def signature(self) -> dict:
        """What the windows' embeddings depend on (the embedding cache's key)."""
        from .extraction.clips import FileClipDataset

        files = FileClipDataset(self.paths, self.sampling_rate).signature()
        return {
            "files": files,
            "windows": len(self),
            "window_seconds": self.window_seconds,
            "hop_seconds": self.hop_seconds,
            "full_windows_only": True,
        }

    def __getitem__(self, index: int) -> dict:
        from .data.audio import AudioDecodeError, load_audio

        recording = int(self.recording[index])
        if self._decoded is None or self._decoded[0] != recording:
            try:
                audio, _ = load_audio(self.paths[recording], self.sampling_rate)
            except AudioDecodeError as error:
                return {"index": index, "error": error.reason}
            self._decoded = (recording, audio)
        audio = self._decoded[1]
        start = int(self.start_sample[index])
        piece = audio[start : start + self.window]
        if piece.size < self.window and not (start == 0 and piece.size == audio.size):  # only a short recording
            return {"index": index, "error": f"decoded to {audio.size} samples, too short for a window at {start}"}
        return {"index": index, "audio": np.ascontiguousarray(piece), "sampling_rate": self.sampling_rate}


def window_labels(window_start_s: np.ndarray, window_seconds: float, events: Sequence[Event]) -> np.ndarray:
    """Whether each window `[start, start + window_seconds)` overlaps one of `events` (`(onset, offset)` seconds) by
    at least half of the shorter of the window and the event (see the module docstring)."""
    starts = np.asarray(window_start_s, dtype=np.float64)
    ends = starts + window_seconds
    positive = np.zeros(starts.size, dtype=bool)
    for onset, offset in events:
        overlap = np.minimum(ends, offset) - np.maximum(starts, onset)
        positive |= overlap >= 0.5 * min(window_seconds, offset - onset) - 1e-9
    return positive


def detect_events(
    window_start_s: np.ndarray,
    scores: np.ndarray,
    duration_s: float,
    window_seconds: float,
    hop_seconds: float,
    threshold: float,
    merge_gap_seconds: float = 0.0,
    min_duration_seconds: float = 0.0,
) -> list[Event]:
    """The `(onset, offset)` events of one recording: the spans of its windows (in order) scoring at least `threshold`,
    merged across gaps of at most `merge_gap_seconds`, without those shorter than `min_duration_seconds`."""
    from .tagging import merge_spans, window_spans

    starts, ends = window_spans(window_start_s, window_seconds, hop_seconds, duration_s)
    merged = merge_spans(starts, ends, np.asarray(scores) >= threshold, merge_gap_seconds)
    return [(round(s, 4), round(e, 4)) for s, e, _ in merged if e - s >= min_duration_seconds - 1e-9]


def sed_eval_scores(
    reference: dict[str, Sequence[Event]],
    estimated: dict[str, Sequence[Event]],
    durations: dict[str, float],
    *,
    label: str = "event",
    collar_seconds: float = 0.2,
    evaluate_offset: bool = False,
    offset_fraction: float = 0.5,
    segment_seconds: float | None = 1.0,
) -> dict:
    """sed_eval's event-based and segment-based metrics of one class over the recordings of `durations`.

    `reference` and `estimated` map a recording to its `(onset, offset)` events (a recording missing from either has
    none). Event-based: a detection matches a reference event whose onset is within `collar_seconds` of its own (and,
    with `evaluate_offset`, whose offset is within the larger of the collar and `offset_fraction` of the reference's
    length), one to one. Segment-based: activity in `segment_seconds` segments over each recording's whole length.

    Returns `{"event": {...}, "segment": {...}}` (no `"segment"` when `segment_seconds` is `None`), each with `f1`, `precision`, `recall`, `error_rate`, and the
    counts `reference` / `estimated` (events, or active segments).
    """
    import sed_eval

    event_metrics = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=[label], t_collar=collar_seconds, evaluate_onset=True, evaluate_offset=evaluate_offset,
        percentage_of_length=offset_fraction,
    )
    segment_metrics = None
    if segment_seconds is not None:
        segment_metrics = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=[label],
                                                                   time_resolution=segment_seconds)
    def as_list(name, events):
        return [{"filename": name, "event_label": label, "onset": float(a), "offset": float(b)} for a, b in events]

    for name, duration in durations.items():
        truth, found = as_list(name, reference.get(name, ())), as_list(name, estimated.get(name, ()))
        event_metrics.evaluate(reference_event_list=truth, estimated_event_list=found)
        if segment_metrics is not None:
            segment_metrics.evaluate(reference_event_list=truth, estimated_event_list=found,
                                     evaluated_length_seconds=float(duration))
    out = {}
    for kind, metrics in (("event", event_metrics), ("segment", segment_metrics)):
        if metrics is None:
            continue
        overall = metrics.results_overall_metrics()
        counts = metrics.results_class_wise_metrics()[label]["count"]
        out[kind] = {
            "f1": float(overall["f_measure"]["f_measure"]),
            "precision": float(overall["f_measure"]["precision"]),
            "recall": float(overall["f_measure"]["recall"]),
            "error_rate": float(overall["error_rate"]["error_rate"]),
            "reference": int(counts["Nref"]),
            "estimated": int(counts["Nsys"]),
        }
    return out


def overlap_recall(reference: dict[str, Sequence[tuple]], estimated: dict[str, Sequence[Event]]) -> dict:
    """Per event type, the share of reference events `(onset, offset, type)` that at least one detected event
    overlaps (by any positive length): `{type: {"events", "overlapped", "recall"}}`."""
    counts: dict[str, list[int]] = {}
    for name, events in reference.items():
        found = estimated.get(name, ())
        for onset, offset, kind in events:
            hit = any(min(offset, b) > max(onset, a) for a, b in found)
            entry = counts.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += int(hit)
    return {kind: {"events": n, "overlapped": k, "recall": k / n} for kind, (n, k) in sorted(counts.items())}


def recording_num_samples(path: str | os.PathLike, sampling_rate: int) -> int:
    """A recording's length in samples at `sampling_rate`, from its header (`data.audio.probe_audio`)."""
    from .data.audio import probe_audio

    probe = probe_audio(path)
    if not probe.ok:
        raise ValueError(f"{path}: {probe.reason}")
    return round(probe.duration_s * sampling_rate)


__all__ = [
    "WindowClipDataset",
    "detect_events",
    "full_window_starts",
    "overlap_recall",
    "recording_num_samples",
    "sed_eval_scores",
    "window_labels",
]
