"""The logic of the speed-against-the-limit benchmarks (benchmarks/_speed.py), not their timings: the work counted for
mn04, the stage split of a clip's time, and that the steps the breakdown times are the extraction path itself."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import torch
from _paths import MN04_DIR, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from _audio_helpers import SPRSOUND_DIR, require_dir  # noqa: E402
from _speed import (  # noqa: E402
    STAGES,
    NetworkEndMark,
    StageClock,
    last_network_module,
    network_macs,
    staged_embedding,
)

import resp_audio_hf  # noqa: E402, F401  (registers the efficientat model type)
from resp_audio_hf.extraction import (  # noqa: E402
    AudioEncoder,
    FileClipDataset,
    extract_embeddings,
)

# EfficientAT's own figure for mn04 (its README's model table: 0.11 GMACs for a 10 s clip).
MN04_GMACS_PER_10S = 0.11


@pytest.fixture(scope="module")
def mn04():
    return AudioEncoder.from_pretrained(str(MN04_DIR), pooling="freq_preserving")


def test_mn04_work_on_ten_seconds_is_efficientat_published_count(mn04):
    clip = 0.1 * np.random.default_rng(0).standard_normal(10 * mn04.sampling_rate).astype(np.float32)
    macs = network_macs(mn04.model, mn04.featurize([clip]))
    assert macs / 1e9 == pytest.approx(MN04_GMACS_PER_10S, rel=0.10)
    # Convolutional: twice the audio, twice the work (within the edge effects of a few frames).
    double = np.concatenate([clip, clip])
    assert network_macs(mn04.model, mn04.featurize([double])) / macs == pytest.approx(2.0, rel=0.02)


def test_stages_partition_the_extraction_path_time():
    readings = iter([10.0, 10.5, 11.25, 13.0, 17.0, 17.125])  # start, then one reading per step
    clock = StageClock(clock=lambda: next(readings))
    clock.start()
    for step in StageClock.STEPS:
        clock.mark(step)
    stages = clock.stages()
    assert stages == {
        "decode": 0.5,
        "resample": 0.25,  # the decode-and-resample call (0.75) minus the decode at the file's rate
        "front_end": 1.75,
        "network": 4.0,
        "pooling": 0.125,
        "whole": 6.625,
    }
    assert sum(stages[stage] for stage in STAGES) == pytest.approx(stages["whole"])


def test_stage_clock_refuses_missing_or_reordered_marks():
    clock = StageClock(clock=itertools.count().__next__)
    with pytest.raises(RuntimeError, match="start"):
        clock.mark("decode")
    clock.start()
    for step in ("decode", "front_end", "decode_and_resample", "network", "pooling"):
        clock.mark(step)
    with pytest.raises(RuntimeError, match="expected"):
        clock.stages()


def test_last_network_module_is_known_for_both_families(mn04):
    from resp_audio_hf import RespAudioConfig, RespAudioModel

    assert last_network_module(mn04.model) is mn04.model.last_layer
    vit = RespAudioModel(RespAudioConfig.from_preset("tiny-m2d"))
    assert last_network_module(vit) is vit.layernorm
    with pytest.raises(ValueError, match="no network/pooling split"):
        last_network_module(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("family", ["mn04", "small-m2d"])
def test_staged_steps_give_the_extraction_embedding_of_a_real_clip(family, mn04, tmp_path):
    path = min((require_dir(SPRSOUND_DIR) / "test_wav").glob("*.wav"))
    encoder = mn04 if family == "mn04" else AudioEncoder.from_preset("small-m2d", seed=0)
    clock = StageClock()
    network_end = NetworkEndMark(last_network_module(encoder.model))
    embedding, inputs = staged_embedding(encoder, path, clock, network_end)
    network_end.remove()
    expected = extract_embeddings(encoder, FileClipDataset([path], encoder.sampling_rate), batch_size=1, progress=False)
    np.testing.assert_allclose(embedding, expected[0], atol=1e-5, rtol=0)
    if family == "small-m2d":  # a 10 s clip is several ViT windows: extraction streamed it, the breakdown did not
        assert inputs["input_values"].shape[1] > encoder.model.config.window_frames
    # The hook's reading lies between the front end's mark and the pooling's: the marks are in time order.
    readings = [reading for _, reading in clock.marks]
    assert readings == sorted(readings)
    assert set(clock.stages()) == {*STAGES, "whole"}
