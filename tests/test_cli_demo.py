"""``resp-audio-hf demo``: offline, data-free run of the whole benchmark path, and its synthetic sounds."""

import json

import numpy as np
import pytest

from resp_audio_hf.benchmark.demo import (
    DEMO_CLASSES,
    DemoConfig,
    synthesize_clip,
    synthesize_dataset,
)
from resp_audio_hf.cli import main


def test_demo_runs_the_benchmark_path_and_writes_reports(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    task = results["tasks"]["DEMO"]
    assert results["model"] == "preset:tiny-passt:seed0"
    assert task["metric"] == "auroc" and len(task["runs"]) == 5 and task["protocol"]["epochs"] == 64
    assert task["counts"]["total"] == 90 and task["counts"]["per_label"] == {c: 30 for c in DEMO_CLASSES}
    assert task["mean"] == pytest.approx(np.mean([r["test"] for r in task["runs"]]))
    assert f"{task['mean']:.3f} ± {task['std']:.3f}" in printed
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "results.md").exists()
    assert len(list((tmp_path / "cache").glob("*/embeddings.npy"))) == 1


def _band_energy(clip, sr, low, high):
    spectrum = np.abs(np.fft.rfft(clip)) ** 2
    f = np.fft.rfftfreq(clip.size, 1 / sr)
    return spectrum[(f >= low) & (f <= high)]


def test_synthetic_classes_have_the_acoustics_they_claim():
    rng = np.random.default_rng(0)
    sr = 16000
    clips = {kind: [synthesize_clip(kind, rng, 2.0, sr) for _ in range(8)] for kind in DEMO_CLASSES}
    for group in clips.values():
        for clip in group:
            assert clip.dtype == np.float32 and np.isfinite(clip).all() and np.abs(clip).max() <= 1.0

    # Wheezes: a tonal peak in 200-800 Hz stands far above the median band energy.
    def peakiness(clip):
        band = _band_energy(clip, sr, 200, 800)
        return band.max() / np.median(band)

    assert min(peakiness(c) for c in clips["wheeze"]) > 5 * max(peakiness(c) for c in clips["normal"])

    # Crackles: short clicks make the waveform heavy-tailed (high kurtosis).
    def kurtosis(clip):
        centred = clip - clip.mean()
        return (centred**4).mean() / (centred**2).mean() ** 2

    assert min(kurtosis(c) for c in clips["crackle"]) > max(kurtosis(c) for c in clips["normal"])


def test_demo_split_keeps_each_synthetic_patient_in_one_split():
    _, table = synthesize_dataset(DemoConfig())
    assert (table.groupby("subject_id")["split"].nunique() == 1).all()
    assert set(table["split"]) == {"train", "validation", "test"}
    for split in ("validation", "test"):
        assert set(table.loc[table["split"] == split, "label"]) == {0, 1, 2}
