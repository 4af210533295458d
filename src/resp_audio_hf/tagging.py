"""
Sound-event tagging of a recording of any length: which AudioSet labels sound when, and how many coughs.

What `resp-audio-hf tag RECORDING` runs. The recording is cut into windows (`resp_audio_hf.windowed`, a file streamed
range by range, so an hour-long recording never sits in memory whole); an audio-classification model with one sigmoid
per label (default: the package's `pretrained/efficientat-mn04-as`, AudioSet's 527 labels) scores every window
alone. Each window speaks for the `hop` seconds at its centre, `[start + (window - hop) / 2, start + (window + hop) / 2)`
(the first from 0 and the last to the end of the recording), so that consecutive windows tile the recording. A label is
present over the spans of the windows whose probability reaches the threshold; touching spans, and spans at most
`merge_gap_seconds` apart, are merged into one segment. Cough has a threshold of its own (`cough_threshold`). The cough count is the number of segments of the AudioSet label
"Cough": a burst of coughs with short pauses between them is one segment (an episode), not one per cough.

The default window, hop, threshold and merging gap were chosen on recordings assembled from the coughs of the
COVID-cough task's train split (`results/cough_counting.py --tune`), not on the coughs the count is measured on
(its test split): see results/README.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COUGH_LABEL = "Cough"


def default_model_dir() -> Path:
    """The EfficientAT mn04 AudioSet tagger shipped inside the package (`resp_audio_hf/pretrained/efficientat-mn04-as`,
    which the repository's `pretrained/efficientat-mn04-as` links to), so `tag` and the demo run from a wheel too."""
    return Path(__file__).resolve().parent / "pretrained" / "efficientat-mn04-as"


@dataclass(frozen=True)
class TagConfig:
    """How a recording is tagged.

    Attributes:
        window_seconds: length of each window the model scores alone.
        hop_seconds: seconds between window starts; each window speaks for the `hop_seconds` at its centre.
        threshold: a label other than Cough is present in a window when its probability (sigmoid) is at least this
            (not tuned: the usual 0.3 of AudioSet taggers' demos).
        cough_threshold: the same for the Cough label, tuned for counting coughs.
        merge_gap_seconds: segments of one label at most this far apart are merged into one.
        batch_size: windows per forward pass.
    """

    window_seconds: float = 1.0
    hop_seconds: float = 0.25
    threshold: float = 0.3
    cough_threshold: float = 0.01
    merge_gap_seconds: float = 1.5
    batch_size: int = 32

    def __post_init__(self):
        if not (self.window_seconds > 0 and 0 < self.hop_seconds <= self.window_seconds):
            raise ValueError(
                f"Need 0 < hop_seconds <= window_seconds, got window {self.window_seconds} and hop {self.hop_seconds}."
            )
        for name in ("threshold", "cough_threshold"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} is a probability in (0, 1), got {getattr(self, name)}.")
        if self.merge_gap_seconds < 0:
            raise ValueError(f"merge_gap_seconds must be >= 0, got {self.merge_gap_seconds}.")


@dataclass(frozen=True)
class Segment:
    """One stretch of a recording where `label` was heard: `[start_s, end_s)`, with the highest window probability."""

    label: str
    start_s: float
    end_s: float
    max_probability: float


@dataclass
class WindowScores:
    """What the model said about each window, kept small for any length of recording.

    Attributes:
        start_s, end_s: `[n]` time span of each window.
        tracked: `{label: [n] probabilities}` for the labels followed throughout (Cough by default).
        hits: `(window, label index, probability)` of every label at or above `keep_threshold` in a window.
        labels: the model's label names, by index.
        duration_s: length of the recording.
        envelope: `[m, 2]` minimum and maximum sample over consecutive `envelope_seconds` stretches (for the figure).
    """

    start_s: np.ndarray
    end_s: np.ndarray
    tracked: dict[str, np.ndarray]
    hits: list[tuple[int, int, float]]
    labels: list[str]
    duration_s: float
    envelope: np.ndarray
    envelope_seconds: float
    keep_threshold: float = 0.0

    def spans(self, hop_seconds: float, window_seconds: float) -> tuple[np.ndarray, np.ndarray]:
        """The `[start, end)` each window speaks for: the `hop_seconds` at its centre, the first from 0 and the last
        to the end of the recording (see the module docstring)."""
        return window_spans(self.start_s, window_seconds, hop_seconds, self.duration_s)


def window_spans(
    start_s: np.ndarray, window_seconds: float, hop_seconds: float, duration_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The `[start, end)` each window (starting at `start_s`, in order) speaks for: the `hop_seconds` at its centre,
    the first from 0 and the last to `duration_s`, so that consecutive windows tile the recording."""
    offset = (window_seconds - hop_seconds) / 2
    starts = np.asarray(start_s, dtype=np.float64) + offset
    ends = starts + hop_seconds
    if starts.size:
        starts[0] = 0.0
        ends[-1] = duration_s
        ends = np.minimum(ends, duration_s)
        starts = np.minimum(starts, ends)
    return starts, ends


class AudioTagger:
    """An audio-classification model with one sigmoid per label (multi-label, as AudioSet taggers are) and its
    feature extractor. Windows of digital silence are scored as they are (AudioSet has a "Silence" label), not refused
    as the feature extractor refuses a silent clip by default (which there usually means a failed decode)."""

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "cpu"):
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        import resp_audio_hf  # noqa: F401  (registers the model types)

        model_dir = Path(model_dir) if model_dir else default_model_dir()
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"No audio-classification model at {model_dir}: the default is the package's "
                "pretrained/efficientat-mn04-as (install the package editable from a clone: pip install -e .), "
                "or pass --model FOLDER."
            )
        self.model_dir = model_dir
        self.model = AutoModelForAudioClassification.from_pretrained(model_dir).eval().to(device)
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(model_dir)
        if hasattr(self.feature_extractor, "reject_silent_audio"):
            self.feature_extractor.reject_silent_audio = False
        self.device = torch.device(device)
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    def probabilities(self, clips: list[np.ndarray]) -> np.ndarray:
        """`[len(clips), num_labels]` float32 label probabilities (sigmoid of the logits) of mono clips at
        `sampling_rate`, each scored as a clip of its own (clips of one length are batched together)."""
        import torch

        out = np.empty((len(clips), len(self.labels)), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for position, clip in enumerate(clips):
            by_length.setdefault(len(clip), []).append(position)
        with torch.inference_mode():
            for positions in by_length.values():  # no padding: a window's scores never depend on its batch
                inputs = self.feature_extractor(
                    [clips[p] for p in positions], sampling_rate=self.sampling_rate, return_tensors="pt"
                )
                logits = self.model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
                out[positions] = torch.sigmoid(logits.float()).cpu().numpy()
        return out


def score_windows(
    tagger: AudioTagger,
    source,
    config: TagConfig = TagConfig(),
    *,
    tracked: tuple[str, ...] = (COUGH_LABEL,),
    keep_threshold: float | None = None,
    envelope_seconds: float = 0.02,
) -> WindowScores:
    """Score every window of `source` (a file, or a mono array at the tagger's rate) with `tagger`.

    Keeps the probabilities of the `tracked` labels for every window and, for all labels, only the window/label
    pairs at or above `keep_threshold` (default: `config.threshold`), so memory grows by a few bytes per window.
    """
    from .windowed import stream_windows

    missing = [label for label in tracked if label not in tagger.labels]
    if missing:
        raise ValueError(f"{tagger.model_dir} has no label {missing}; its labels include {tagger.labels[:5]}...")
    keep_threshold = config.threshold if keep_threshold is None else keep_threshold
    tracked_index = [tagger.labels.index(label) for label in tracked]
    rate = tagger.sampling_rate
    hop = round(config.hop_seconds * rate)
    bin_size = max(1, round(envelope_seconds * rate))
    starts, ends, curves, hits, envelope = [], [], [], [], []
    pending = []
    remainder = np.empty(0, dtype=np.float32)  # samples of the envelope not yet filling a bin

    def flush():
        probabilities = tagger.probabilities([w.audio for w in pending])
        for window, row in zip(pending, probabilities):
            starts.append(window.start_s)
            ends.append(window.end_s)
            curves.append(row[tracked_index])
            for label in np.flatnonzero(row >= keep_threshold):
                hits.append((window.index, int(label), float(row[label])))
        pending.clear()

    def add_to_envelope(samples: np.ndarray):
        nonlocal remainder
        remainder = np.concatenate([remainder, samples])
        whole = remainder.size // bin_size * bin_size
        if whole:
            block = remainder[:whole].reshape(-1, bin_size)
            envelope.append(np.stack([block.min(1), block.max(1)], axis=1))
            remainder = remainder[whole:]

    held = None  # the latest window: it adds its first hop of samples to the envelope, or all of them if it is last
    for window in stream_windows(source, rate, config.window_seconds, config.hop_seconds):
        if held is not None:
            add_to_envelope(held.audio[:hop])
        held = window
        pending.append(window)
        if len(pending) == config.batch_size:
            flush()
    if held is not None:
        add_to_envelope(held.audio)
        if remainder.size:
            envelope.append(np.array([[remainder.min(), remainder.max()]], dtype=np.float32))
    if pending:
        flush()
    if not starts:
        raise ValueError(f"{source!r}: no audio to tag.")
    duration = float(ends[-1])
    return WindowScores(
        start_s=np.asarray(starts, dtype=np.float64),
        end_s=np.asarray(ends, dtype=np.float64),
        tracked={label: np.asarray([c[i] for c in curves], np.float32) for i, label in enumerate(tracked)},
        hits=hits,
        labels=list(tagger.labels),
        duration_s=duration,
        envelope=np.concatenate(envelope) if envelope else np.zeros((0, 2), np.float32),
        envelope_seconds=bin_size / rate,
        keep_threshold=keep_threshold,
    )


def merge_spans(
    starts: np.ndarray, ends: np.ndarray, present: np.ndarray, merge_gap_seconds: float
) -> list[tuple[float, float, np.ndarray]]:
    """`(start, end, window indices)` of the runs of windows where `present` holds, runs at most `merge_gap_seconds`
    apart merged into one (a run's span is the union of its windows' spans, from [`WindowScores.spans`])."""
    runs: list[tuple[float, float, list[int]]] = []
    for index in np.flatnonzero(present):
        start, end = float(starts[index]), float(ends[index])
        if runs and start - runs[-1][1] <= merge_gap_seconds + 1e-9:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end), runs[-1][2] + [int(index)])
        else:
            runs.append((start, end, [int(index)]))
    return [(start, end, np.asarray(indices)) for start, end, indices in runs]


def label_segments(scores: WindowScores, config: TagConfig, labels: list[str] | None = None) -> list[Segment]:
    """The segments of every label (or of `labels`) heard at `config.threshold` (Cough: `config.cough_threshold`) or
    more, by start time then label.
    Labels followed throughout (`scores.tracked`) are segmented from their probabilities; the others from the kept
    hits, which hold every probability at or above the keep threshold (so `config.threshold` may not be lower)."""
    untracked = labels is None or any(label not in scores.tracked for label in labels)
    if untracked and config.threshold < scores.keep_threshold - 1e-12:
        raise ValueError(
            f"Windows were scored keeping probabilities >= {scores.keep_threshold}; cannot segment at "
            f"{config.threshold}."
        )
    starts, ends = scores.spans(config.hop_seconds, config.window_seconds)
    n = starts.size
    probabilities: dict[str, np.ndarray] = {}
    for window, label_index, probability in scores.hits:
        label = scores.labels[label_index]
        if label not in scores.tracked and (labels is None or label in labels):
            probabilities.setdefault(label, np.zeros(n, np.float32))[window] = probability
    for label, curve in scores.tracked.items():
        if labels is None or label in labels:
            probabilities[label] = curve
    segments = []
    for label, curve in probabilities.items():
        threshold = config.cough_threshold if label == COUGH_LABEL else config.threshold
        for start, end, indices in merge_spans(starts, ends, curve >= threshold, config.merge_gap_seconds):
            segments.append(Segment(label, round(start, 4), round(end, 4), float(curve[indices].max())))
    return sorted(segments, key=lambda s: (s.start_s, s.label))


@dataclass
class TagResult:
    """What [`tag_recording`] found: the segments, the cough count, and the window scores behind them."""

    source: str
    config: TagConfig
    segments: list[Segment]
    scores: WindowScores = field(repr=False)

    @property
    def coughs(self) -> list[Segment]:
        return [s for s in self.segments if s.label == COUGH_LABEL]

    @property
    def cough_count(self) -> int:
        return len(self.coughs)


def tag_recording(
    tagger: AudioTagger, source, config: TagConfig = TagConfig(), *, labels: list[str] | None = None
) -> TagResult:
    """Tag `source` (a file, or a mono array at the tagger's rate): window scores, segments, cough count."""
    if labels is not None:
        unknown = [label for label in labels if label not in tagger.labels]
        if unknown:
            raise ValueError(f"Unknown labels {unknown}: {tagger.model_dir} knows e.g. {tagger.labels[:8]}.")
    tracked = (COUGH_LABEL,) if COUGH_LABEL in tagger.labels else ()
    scores = score_windows(tagger, source, config, tracked=tracked)
    name = source if isinstance(source, (str, os.PathLike)) else "<array>"
    return TagResult(str(name), config, label_segments(scores, config, labels), scores)


def format_time(seconds: float) -> str:
    """`H:MM:SS.ss`."""
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{seconds:05.2f}"


def timeline_text(result: TagResult) -> str:
    """The printed timeline: one line per segment, then the cough count."""
    config = result.config
    lines = [
        f"{result.source}: {format_time(result.scores.duration_s)} in {result.scores.start_s.size} windows of "
        f"{config.window_seconds:g} s every {config.hop_seconds:g} s; labels at probability >= {config.threshold:g} "
        f"(Cough >= {config.cough_threshold:g}), merged across gaps <= {config.merge_gap_seconds:g} s",
        "",
    ]
    for segment in result.segments:
        lines.append(
            f"{format_time(segment.start_s)} - {format_time(segment.end_s)}  {segment.label} "
            f"({segment.max_probability:.2f})"
        )
    if not result.segments:
        lines.append("(no label reached the threshold)")
    lines += ["", f"Coughs: {result.cough_count}"]
    return "\n".join(lines) + "\n"


def write_segments_csv(result: TagResult, path: str | os.PathLike) -> Path:
    """`label,start_s,end_s,max_probability`, one row per segment, written atomically."""
    import csv
    import io

    from .data.file_io import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["label", "start_s", "end_s", "max_probability"])
    for s in result.segments:
        writer.writerow([s.label, f"{s.start_s:.3f}", f"{s.end_s:.3f}", f"{s.max_probability:.4f}"])
    atomic_write_text(Path(path), buffer.getvalue())
    return Path(path)


def draw_timeline(result: TagResult, path: str | os.PathLike, *, truth: list[tuple[float, float]] | None = None,
                  max_labels: int = 8) -> Path:
    """A PNG: the waveform's envelope with the cough segments shaded, the Cough probability per window against the
    threshold, and a row per label (the `max_labels` heard longest) with its segments; `truth` (start, end) pairs are
    drawn as ticks when given."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .data.file_io import atomic_save_figure

    scores, config = result.scores, result.config
    duration = max(scores.duration_s, 1e-3)
    unit, scale = ("min", 60.0) if duration > 600 else ("s", 1.0)
    totals: dict[str, float] = {}
    for s in result.segments:
        totals[s.label] = totals.get(s.label, 0.0) + s.end_s - s.start_s
    shown = sorted(totals, key=lambda label: -totals[label])[:max_labels]
    if COUGH_LABEL in totals and COUGH_LABEL not in shown:
        shown[-1] = COUGH_LABEL
    fig, (wave, curve, rows) = plt.subplots(
        3, 1, figsize=(11, 5.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1.2, max(1, len(shown)) * 0.35]}
    )
    times = np.arange(scores.envelope.shape[0]) * scores.envelope_seconds / scale
    wave.fill_between(times, scores.envelope[:, 0], scores.envelope[:, 1], color="0.35", linewidth=0)
    for s in result.coughs:
        wave.axvspan(s.start_s / scale, s.end_s / scale, color="C3", alpha=0.3, linewidth=0)
    if truth:
        top = float(np.abs(scores.envelope).max()) if scores.envelope.size else 1.0
        for start, end in truth:
            wave.plot([start / scale, end / scale], [top * 1.05] * 2, color="C2", linewidth=3, solid_capstyle="butt")
    wave.set_ylabel("waveform")
    what = f"{result.cough_count} coughs detected" + (f", {len(truth)} inserted (green)" if truth is not None else "")
    wave.set_title(f"{Path(result.source).name}: {what}", fontsize=10)
    if COUGH_LABEL in scores.tracked:
        span_starts, span_ends = scores.spans(config.hop_seconds, config.window_seconds)
        centres = (span_starts + span_ends) / 2 / scale
        curve.plot(centres, scores.tracked[COUGH_LABEL], color="C3", linewidth=0.8)
        curve.axhline(config.cough_threshold, color="grey", linestyle="--", linewidth=0.8)
        curve.set_ylim(0, 1)
        curve.set_ylabel("P(Cough)")
    for row, label in enumerate(shown):
        for s in result.segments:
            if s.label == label:
                rows.broken_barh([(s.start_s / scale, (s.end_s - s.start_s) / scale)], (row - 0.4, 0.8),
                                 color="C3" if label == COUGH_LABEL else "C0")
    rows.set_yticks(range(len(shown)), shown, fontsize=8)
    rows.set_ylim(len(shown) - 0.5 if shown else 0.5, -0.5)
    rows.set_xlim(0, duration / scale)
    rows.set_xlabel(f"time ({unit})")
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=110)


__all__ = [
    "COUGH_LABEL",
    "AudioTagger",
    "Segment",
    "TagConfig",
    "TagResult",
    "WindowScores",
    "default_model_dir",
    "draw_timeline",
    "label_segments",
    "merge_spans",
    "score_windows",
    "tag_recording",
    "timeline_text",
    "window_spans",
    "write_segments_csv",
]
