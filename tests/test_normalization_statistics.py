"""Normalisation statistics of the training data (M2D normalises its log-mel by its pre-training data's mean and std):
the measurement, its use by the training stream, and `data.normalization_statistics: training` end to end."""

from __future__ import annotations

import json

import pytest
import torch
from _training_helpers import launch

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor
from resp_audio_hf.training.config import DataConfig, build_dataclass
from resp_audio_hf.training.data import build_batch_stream
from resp_audio_hf.training.normalization_statistics import (
    STD_EPSILON,
    apply_log_mel_statistics,
    measure_log_mel_statistics,
    training_log_mel_statistics,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_measurement_equals_torch_over_all_values_whatever_the_batching():
    generator = torch.Generator().manual_seed(0)
    crops = torch.randn(10, 50, 8, generator=generator, dtype=torch.float64) * 3.0 - 9.0
    crops[3] += 40.0  # one loud crop: a naive running sum of squares would lose digits
    reference_mean, reference_std = crops.mean().item(), crops.std().item()
    for sizes in ([10], [1] * 10, [3, 4, 3], [7, 5]):
        batches, start = [], 0
        for size in sizes:
            batches.append({"input_values": crops[start : start + size].float()})
            start += size
        measured = measure_log_mel_statistics(batches, num_clips=10)
        assert measured.num_clips == 10 and measured.num_values == crops.numel()
        assert measured.mean == pytest.approx(reference_mean, rel=1e-6)
        assert measured.std == pytest.approx(reference_std + STD_EPSILON, rel=1e-6)
    # Only the first num_clips crops count, even from the middle of a batch.
    first = measure_log_mel_statistics([{"input_values": crops[:4].float()}, {"input_values": crops[4:].float()}], 6)
    assert first.mean == pytest.approx(crops[:6].mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="6 crops; 20"):
        measure_log_mel_statistics([{"input_values": crops[:6].float()}], 20)


def test_training_statistics_normalise_the_training_crops_to_zero_mean_unit_std(shared_data):
    """Measured on real SPRSound recordings (8 kHz: the mel bins above 4 kHz are nearly empty), the statistics are far
    from M2D's AudioSet values; applied, they make the same crops of the training stream zero-mean, unit-std."""
    config = build_dataclass(DataConfig, {
        "batch_size": 4, "normalization_clips": 12,
        "corpora": [{"name": "sprsound", "path": str(shared_data / "sprsound" / "test_wav"), "limit": 6}],
    })
    extractor = RespAudioFeatureExtractor.from_model_config(RespAudioConfig.from_preset("tiny-m2d"))
    assert (extractor.mean, extractor.std) == (-7.1, 4.2)
    statistics = training_log_mel_statistics(config, extractor, num_frames=208, seed=0)
    assert statistics.num_clips == 12 and statistics.num_values == 12 * 208 * 80
    assert abs(statistics.mean - (-7.1)) > 1.0, statistics
    apply_log_mel_statistics(extractor, statistics)
    extractor.reject_silent_audio = False
    stream = iter(build_batch_stream(config, extractor, 208, seed=0))
    values = torch.cat([next(stream)["input_values"] for _ in range(3)]).double()
    assert values.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert values.std().item() == pytest.approx(1.0, abs=1e-4)


def test_pretraining_measures_saves_and_reuses_the_statistics(shared_data, tmp_path):
    """`data.normalization_statistics: training`: measured before the first step, written into the saved feature
    extractor and `normalization_statistics.json`, and read back (not remeasured) when the run resumes."""
    output_dir = tmp_path / "run"
    config = {
        "model": {"preset": "tiny-m2d", "config_overrides": {"initialization": "mae"}},
        "objective": {"predictor_hidden_size": 32, "predictor_num_layers": 1, "predictor_num_heads": 2,
                      "target_initialization": "independent"},
        "data": {
            "batch_size": 4, "normalization_statistics": "training", "normalization_clips": 8,
            "corpora": [{"name": "sprsound", "path": str(shared_data / "sprsound" / "test_wav"), "limit": 8}],
        },
        "optimizer": {"blr": 0.05, "warmup_steps": 1},
        "train": {"output_dir": str(output_dir), "max_steps": 2, "save_every_steps": 1, "log_every_steps": 1},
    }
    result = launch(config, tmp_path, "first", processes=1)
    assert result.returncode == 0, result.stderr[-4000:]
    saved = json.loads((output_dir / "normalization_statistics.json").read_text())
    preprocessor = json.loads((output_dir / "model" / "preprocessor_config.json").read_text())
    assert (preprocessor["mean"], preprocessor["std"]) == (saved["statistics"]["mean"], saved["statistics"]["std"])
    assert saved["statistics"]["num_clips"] == 8 and preprocessor["mean"] != -7.1
    assert json.loads((output_dir / "model" / "config.json").read_text())["initialization"] == "mae"

    config["train"]["max_steps"] = 3
    resumed = launch(config, tmp_path, "resumed", "--resume", "auto", processes=1)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Normalisation statistics from" in resumed.stderr and "Measuring" not in resumed.stderr
    preprocessor = json.loads((output_dir / "model" / "preprocessor_config.json").read_text())
    assert preprocessor["mean"] == saved["statistics"]["mean"]
