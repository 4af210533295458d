"""``resp-audio-hf demo``: the whole benchmark path on synthetic audio, offline, in seconds.

A tiny randomly initialised model is built from a preset, a small labelled set of respiratory-like
clips is synthesised in code, and the same code path as ``resp-audio-hf bench`` runs on it: streamed
embedding extraction with the on-disk cache, OPERA's linear probe over five seeds, and the JSON,
markdown and PNG reports.

The synthetic classes mimic what auscultation distinguishes:

* ``normal`` - breathing: band-limited noise (100-1000 Hz) under a raised-cosine breathing envelope;
* ``wheeze`` - the same plus a tonal component (200-800 Hz, slight vibrato) during inspiration;
* ``crackle`` - the same plus short, damped clicks at random times.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO_CLASSES = ("normal", "wheeze", "crackle")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo.

    Attributes:
        preset: ``RespAudioConfig`` preset of the (randomly initialised) encoder.
        subjects_per_class: synthetic "patients" per class.
        clips_per_subject: recordings per patient (kept together in one split).
        duration_s: clip length in seconds.
        sampling_rate: rate the clips are synthesised at (the feature extractor resamples them).
        seed: seeds the synthetic data and the model initialisation.
        batch_size: embedding batch size.
    """

    preset: str = "tiny-passt"
    subjects_per_class: int = 10
    clips_per_subject: int = 3
    duration_s: float = 2.0
    sampling_rate: int = 16000
    seed: int = 0
    batch_size: int = 16


def _band_limited_noise(rng: np.random.Generator, n: int, sampling_rate: int, low: float, high: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, 1.0 / sampling_rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.abs(noise).max() + 1e-12)


def _breathing_envelope(rng: np.random.Generator, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine breathing cycles; also returns the inspiration mask (first half of each cycle)."""
    period = rng.uniform(1.0, 1.8)
    phase = (t / period + rng.uniform(0, 1)) % 1.0
    envelope = (0.5 - 0.5 * np.cos(2 * np.pi * phase)) ** 1.5
    return envelope, phase < 0.5


def synthesize_clip(kind: str, rng: np.random.Generator, duration_s: float, sampling_rate: int) -> np.ndarray:
    """One synthetic clip of class ``kind`` (see module docstring), float32 in [-1, 1]."""
    if kind not in DEMO_CLASSES:
        raise ValueError(f"Unknown demo class {kind!r}; choose from {DEMO_CLASSES}")
    n = int(duration_s * sampling_rate)
    t = np.arange(n) / sampling_rate
    envelope, inspiration = _breathing_envelope(rng, t)
    clip = rng.uniform(0.1, 0.3) * envelope * _band_limited_noise(rng, n, sampling_rate, 100.0, 1000.0)
    if kind == "wheeze":
        pitch = rng.uniform(200.0, 800.0) * (1 + 0.03 * np.sin(2 * np.pi * 5.0 * t))
        tone = np.sin(2 * np.pi * np.cumsum(pitch) / sampling_rate)
        clip += rng.uniform(0.1, 0.2) * tone * envelope * inspiration
    elif kind == "crackle":
        for _ in range(rng.integers(8, 20)):
            start = rng.integers(0, n - sampling_rate // 100)
            length = int(rng.uniform(0.002, 0.005) * sampling_rate)
            k = np.arange(length) / sampling_rate
            click = np.sin(2 * np.pi * rng.uniform(300, 1500) * k) * np.exp(-k / (length / sampling_rate / 4))
            clip[start : start + length] += rng.uniform(0.3, 0.6) * click
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def synthesize_dataset(config: DemoConfig):
    """Clips and a task table (``label``, ``subject_id``, patient-grouped ``split``)."""
    import pandas as pd

    from ..data.tasks import patient_grouped_split

    rng = np.random.default_rng(config.seed)
    clips, rows = [], []
    for label, kind in enumerate(DEMO_CLASSES):
        for subject in range(config.subjects_per_class):
            for number in range(config.clips_per_subject):
                clips.append(synthesize_clip(kind, rng, config.duration_s, config.sampling_rate))
                rows.append(
                    {"file": f"{kind}-{subject:02d}-{number}", "label": label, "subject_id": f"{kind}-{subject:02d}"}
                )
    table = patient_grouped_split(pd.DataFrame(rows), seed=config.seed + 1337, test=True)
    return clips, table


def demo_task_spec():
    """The demo task. Its probe follows OPERA's protocol (64 epochs, Adam, L2 1e-5, x0.97 per epoch, clip
    1.0, best validation checkpoint, 5 seeds) except for the learning rate: an *untrained* encoder's
    embeddings vary little around a common offset, and OPERA's 1e-4 (whose decaying schedule sums to
    ~33 x 1e-4 over any number of epochs) barely moves the probe; 1e-2 lets it converge."""
    from ..data.tasks import ProbeProtocol, TaskSpec

    return TaskSpec(
        "DEMO",
        "synthetic breathing: normal / wheeze / crackle",
        "synthetic",
        "synthetic lung sound",
        "classification",
        "holdout",
        ProbeProtocol(batch_size=32, learning_rate=1e-2),
        "patient-grouped stratified 60/20/20",
        DEMO_CLASSES,
        opera=False,
    )


def run_demo(output_dir: str | os.PathLike, config: DemoConfig | None = None, progress: bool = False) -> dict:
    """Run the demo and write ``results.json``/``results.md``/``results.png`` into ``output_dir``.

    Returns:
        The results dictionary (also written to ``results.json``).
    """
    from .embeddings import ArrayClipDataset, AudioEncoder, extract_embeddings
    from .report import write_reports
    from .runner import BenchmarkResult, encoder_settings, score_task

    config = config or DemoConfig()
    output_dir = Path(output_dir)
    encoder = AudioEncoder.from_preset(config.preset, seed=config.seed)
    clips, table = synthesize_dataset(config)
    dataset = ArrayClipDataset(clips, config.sampling_rate, encoder.sampling_rate, names=table["file"].tolist())
    features = extract_embeddings(
        encoder,
        dataset,
        cache_dir=output_dir / "cache",
        cache_extra={"task": "DEMO"},
        batch_size=config.batch_size,
        progress=progress,
        desc="DEMO embeddings",
    )
    spec = demo_task_spec()
    result = BenchmarkResult(
        model=encoder.model_id,
        model_fingerprint=encoder.fingerprint(),
        settings={"demo": {k: v for k, v in config.__dict__.items()}, **encoder_settings(encoder)},
    )
    result.tasks[spec.task_id] = score_task(spec, table, features, data_report=f"{len(table)} synthetic clips")
    results = result.to_dict()
    write_reports(results, output_dir, baselines=False)
    return results


__all__ = ["DEMO_CLASSES", "DemoConfig", "run_demo", "synthesize_clip", "synthesize_dataset"]
