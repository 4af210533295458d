"""training/finetune.py: registry task and local DatasetDict inputs, encoder hand-over, Trainer run, resume markers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _training_helpers import SAMPLING_RATE

from resp_audio_hf import RespAudioConfig, RespAudioModel
from resp_audio_hf.training.config import build_dataclass
from resp_audio_hf.training.finetune import (
    COMPLETE_MARKER,
    FinetuneConfig,
    LabelledSplits,
    TaskConfig,
    build_model,
    latest_complete_checkpoint,
    load_splits,
    run,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    """A saved tiny encoder, as pretrain.py leaves it (weights + feature extractor)."""
    from resp_audio_hf import RespAudioFeatureExtractor

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    encoder = RespAudioModel(RespAudioConfig.from_preset("tiny-m2d"))
    encoder.save_pretrained(folder)
    RespAudioFeatureExtractor.from_model_config(encoder.config).save_pretrained(folder)
    return folder


def test_encoder_weights_carry_over_into_the_classifier(encoder_folder):
    labelled = LabelledSplits({}, "single_label_classification", ["Normal", "Adventitious"])
    model = build_model(
        build_dataclass(FinetuneConfig, {"model": {"name_or_path": str(encoder_folder)}}).model, labelled
    )
    encoder = RespAudioModel.from_pretrained(encoder_folder)
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(model.resp_audio.state_dict()[name], tensor), name
    assert model.config.id2label == {0: "Normal", 1: "Adventitious"}
    assert model.config.problem_type == "single_label_classification"
    regression = build_model(
        build_dataclass(FinetuneConfig, {"model": {"name_or_path": "tiny-m2d"}}).model,
        LabelledSplits({}, "regression", None),
    )
    assert regression.config.num_labels == 1 and regression.config.problem_type == "regression"


def test_local_dataset_dict_with_string_labels(shared_data, tmp_path):
    import datasets

    files = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:6]
    labels = ["wheeze", "normal", "crackle", "normal", "wheeze", "normal"]
    table = datasets.Dataset.from_dict({"audio": [str(f) for f in files], "diagnosis": labels})
    datasets.DatasetDict({"train": table.select(range(4)), "test": table.select(range(4, 6))}).save_to_disk(
        tmp_path / "ds"
    )
    task = TaskConfig(dataset=str(tmp_path / "ds"), label_column="diagnosis", eval_split=None)
    labelled = load_splits(task, SAMPLING_RATE)
    assert labelled.problem_type == "single_label_classification"
    assert labelled.label_names == sorted(set(labels))
    example = labelled.splits["train"][0]
    assert labelled.label_names[example["diagnosis"]] == "wheeze"
    # Stored undecoded: RespAudioCollator decodes the file as `bench` does, at the model's rate.
    assert example["audio"] == {"path": str(files[0]), "bytes": None}
    with pytest.raises(ValueError, match="no column 'label'"):
        load_splits(TaskConfig(dataset=str(tmp_path / "ds")), SAMPLING_RATE)


def test_registry_task_fine_tunes_saves_and_resumes(shared_data, encoder_folder, tmp_path):
    output_dir = tmp_path / "run"
    raw = {
        "model": {"name_or_path": str(encoder_folder)},
        "task": {"id": "S1", "data_root": str(shared_data), "verify_audio": False, "limit": 16, "max_seconds": 3.0},
        "training_args": {
            "output_dir": str(output_dir),
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 8,
            "learning_rate": 1e-3,
            "eval_strategy": "steps",
            "eval_steps": 2,
            "save_strategy": "steps",
            "save_steps": 2,
            "logging_steps": 1,
            "seed": 0,
        },
    }
    results = run(build_dataclass(FinetuneConfig, raw))
    assert set(results) == {"validation", "test"}
    for split, values in results.items():
        assert 0.0 <= values[f"{split}_accuracy"] <= 1.0 and np.isfinite(values[f"{split}_loss"])
        assert 0.0 <= values[f"{split}_auroc"] <= 1.0
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert all((output_dir / name / COMPLETE_MARKER).is_file() for name in ("checkpoint-2", "checkpoint-4"))

    from transformers import AutoModelForAudioClassification, pipeline

    import resp_audio_hf  # noqa: F401

    model = AutoModelForAudioClassification.from_pretrained(output_dir / "model")
    assert model.config.id2label == {0: "Normal", 1: "Adventitious"}
    classifier = pipeline("audio-classification", model=str(output_dir / "model"))
    clip = np.random.default_rng(0).normal(size=SAMPLING_RATE).astype(np.float32)
    scores = classifier({"raw": clip, "sampling_rate": SAMPLING_RATE})
    assert {s["label"] for s in scores} == {"Normal", "Adventitious"}
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)
    saved = json.loads((output_dir / "finetune_results.json").read_text())
    assert saved["metrics"]["test"]["test_accuracy"] == results["test"]["test_accuracy"]

    # Continue to step 6 from the newest complete checkpoint: the Trainer state carries the first run's history.
    raw["training_args"]["max_steps"] = 6
    run(build_dataclass(FinetuneConfig, raw), resume="auto")
    state = json.loads((output_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    logged_steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged_steps == [1, 2, 3, 4, 5, 6]


def test_only_marked_trainer_checkpoints_are_resumed(tmp_path):
    for step in (10, 20, 30):
        (tmp_path / f"checkpoint-{step}").mkdir()
    for step in (10, 20):
        (tmp_path / f"checkpoint-{step}" / COMPLETE_MARKER).write_text("{}")
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-20"
    assert latest_complete_checkpoint(tmp_path / "missing") is None


def test_task_needs_exactly_one_data_source():
    with pytest.raises(ValueError, match="exactly one"):
        TaskConfig()
