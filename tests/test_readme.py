"""
Every ```python block of README.md runs as written, in order, in one namespace, in a fresh working folder.

The blocks name a few things a reader brings along; this test provides exactly those, made from real SPRSound
recordings, and nothing else:

- `recording.wav`: a SPRSound recording, copied into the working folder;
- `path/to/fine-tuned-folder`: a saved classifier (tiny-passt preset, random weights, two labels: Task 1-1's Normal
  and Adventitious) with its feature extractor, as `save_pretrained` writes it;
- `recording.json`: the SPRSound annotation file of an annotated recording (`recording.wav` is that recording);
- `train` and `validation`: `datasets.Dataset`s with an `audio` column (`{"array", "sampling_rate"}`) and a `label`
  column, four and two SPRSound recordings cut to 2 s (labels: Normal 0, adventitious 1);
- `pretrained/efficientat-mn04-as`, `pretrained/mn04-sprsound-2-1`, `pretrained/mn04-sprsound-1-1`: the repository's
  own folders (the blocks run from the checkout's root);
- `embeddings.parquet`: what the README's `resp-audio-hf embed` command writes, here for `recording.wav` and the
  fine-tuned folder.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _audio_helpers import load_audio, sprsound_binary_subset

from resp_audio_hf import RespAudioConfig  # imports transformers, whose Hub constants the hub_offline fixture patches

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
# The quick start's comment on the embedding's size, checked against the model it builds and the published preset.
EMBEDDING_COMMENT = re.compile(
    r"embedding = .*# \[1, (\d+)\] = (\d+) frequency rows x (\d+) \(resp-passt: (\d+) x (\d+) = (\d+)\)"
)
FINE_TUNED_FOLDER = "path/to/fine-tuned-folder"
RECORD_CLASSIFIER_FOLDER = "pretrained/mn04-sprsound-2-1"
EVENT_CLASSIFIER_FOLDER = "pretrained/mn04-sprsound-1-1"
TASK_21_CLASSES = {0: "Normal", 1: "Poor Quality", 2: "Adventitious"}
EFFICIENTAT_FOLDER = "pretrained/efficientat-mn04-as"
# The EfficientAT block's comment on its embedding's size.
EFFICIENTAT_COMMENT = re.compile(r"embedding = .*# \[1, (\d+)\] = (\d+) frequency rows x (\d+) channels")
CLIP_SECONDS = 2


pytestmark = pytest.mark.usefixtures("hub_offline")


def readme_python_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


def reader_provided(work: Path) -> dict:
    """The objects and files the README's blocks take as given (see the module docstring)."""
    from datasets import Dataset

    from resp_audio_hf import RespAudioFeatureExtractor, RespAudioForAudioClassification

    recordings = sprsound_binary_subset(per_class=3)
    shutil.copyfile(recordings[0][0], work / "recording.wav")
    (work / "pretrained").mkdir()
    for folder in (EFFICIENTAT_FOLDER, RECORD_CLASSIFIER_FOLDER, EVENT_CLASSIFIER_FOLDER):
        (work / folder).symlink_to(README.parent / folder, target_is_directory=True)

    torch.manual_seed(0)
    config = RespAudioConfig.from_preset("tiny-passt", id2label={0: "Normal", 1: "Adventitious"})
    RespAudioForAudioClassification(config).save_pretrained(work / FINE_TUNED_FOLDER)
    RespAudioFeatureExtractor.from_model_config(config).save_pretrained(work / FINE_TUNED_FOLDER)
    annotation = next((recordings[0][0].parents[1] / "test_json").glob(f"*/{recordings[0][0].stem}.json"))
    shutil.copyfile(annotation, work / "recording.json")

    def dataset(subset):
        rows = {"audio": [], "label": []}
        for path, label in subset:
            audio, rate = load_audio(path)
            rows["audio"].append({"array": audio[: CLIP_SECONDS * rate], "sampling_rate": rate})
            rows["label"].append(label)
        return Dataset.from_dict(rows)

    from resp_audio_hf.cli import main as cli_main

    assert cli_main(["embed", str(work / "recording.wav"), "--model", str(work / FINE_TUNED_FOLDER),
                     "-o", str(work / "embeddings.parquet"), "--quiet", "--no-cache"]) == 0
    return {"train": dataset(recordings[:4]), "validation": dataset(recordings[4:])}


def test_the_readme_test_command_is_the_one_ci_runs():
    """The README's test command (the block after "the test command itself") is the last line of `.ci/run`."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"the test command itself.*?```bash\n(.*?)\n```", text, re.DOTALL)
    ci_lines = (README.parent / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert block and block.group(1).strip() == ci_lines[-1].strip()
    assert ci_lines[-1].startswith("ruff check . && ")


def test_readme_has_the_blocks_this_test_knows():
    blocks = readme_python_blocks()
    assert len(blocks) == 7
    assert "RespAudioConfig.from_preset" in blocks[0]
    assert FINE_TUNED_FOLDER in blocks[1] and "recording.wav" in blocks[1]
    assert "Trainer(" in blocks[2] and "train_dataset=train, eval_dataset=validation" in blocks[2]
    assert 'read_embeddings("embeddings.parquet")' in blocks[3]
    assert EFFICIENTAT_FOLDER in blocks[4]
    assert RECORD_CLASSIFIER_FOLDER in blocks[5] and 'annotation["event_annotation"]' in blocks[5]
    assert 'metric_path("opera_auroc")' in blocks[6]


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__", **reader_provided(tmp_path)}
    (
        quick_start, pipeline_block, trainer_block, embeddings_block, efficientat_block, challenge_block, metrics_block
    ) = readme_python_blocks()

    def run(block: str, number: int):
        started = time.perf_counter()
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        print(f"README python block {number}: {time.perf_counter() - started:.1f} s")

    # Quick start: the embedding has the size the comment states, and the saved folder reloads to the same weights.
    run(quick_start, 1)
    config, model = namespace["config"], namespace["model"]
    stated = EMBEDDING_COMMENT.search(quick_start)
    size, rows, width, published_rows, published_width, published_size = map(int, stated.groups())
    assert tuple(namespace["embedding"].shape) == (1, config.pooled_size) == (1, size) == (1, rows * width)
    assert (config.num_frequency_rows, config.hidden_size) == (rows, width)
    published = RespAudioConfig.from_preset("resp-passt")
    assert (published.num_frequency_rows, published.hidden_size) == (published_rows, published_width)
    assert published.pooled_size == published_size == published_rows * published_width
    assert torch.isfinite(namespace["embedding"]).all()
    reloaded = namespace["same"].state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(reloaded[name], value, rtol=0, atol=0)

    # The pipeline block's classifier answers for the file and for the array, every label once.
    run(pipeline_block, 2)
    classifier = namespace["classifier"]
    assert {result["label"] for result in classifier("recording.wav")} == {"Normal", "Adventitious"}
    assert len(classifier({"array": namespace["audio"], "sampling_rate": 8000}, top_k=2)) == 2

    # Fine-tuning ran its epochs on the training clips, evaluated each one and kept the best checkpoint.
    run(trainer_block, 3)
    trainer = namespace["trainer"]
    epochs = int(trainer.args.num_train_epochs)
    evaluations = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert len(evaluations) == epochs and np.isfinite(evaluations).all()
    assert trainer.state.best_model_checkpoint is not None
    assert Path(trainer.state.best_model_checkpoint, "model.safetensors").is_file()

    # Embeddings written by `resp-audio-hf embed` read back as paths and a float32 matrix of the model's width.
    run(embeddings_block, 4)
    assert namespace["paths"] == [str(tmp_path / "recording.wav")]
    width = RespAudioConfig.from_pretrained(tmp_path / FINE_TUNED_FOLDER).pooled_size
    assert namespace["vectors"].shape == (1, width)
    assert namespace["vectors"].dtype == np.float32 and np.isfinite(namespace["vectors"]).all()

    # EfficientAT: the AudioSet tagger answers with three labels of its 527, the embedding has the stated size.
    run(efficientat_block, 5)
    predictions = namespace["tagger"]({"array": namespace["audio"], "sampling_rate": 8000}, top_k=3)
    assert len(predictions) == 3 and all(p["label"] in namespace["tagger"].model.config.label2id for p in predictions)
    size, rows, channels = map(int, EFFICIENTAT_COMMENT.search(efficientat_block).groups())
    encoder_config = namespace["encoder"].config
    assert (encoder_config.num_frequency_rows, encoder_config.feature_channels) == (rows, channels)
    assert tuple(namespace["embedding"].shape) == (1, size) == (1, rows * channels)

    # The challenge classifiers answer with the challenge's class names, for the recording and each annotated event.
    run(challenge_block, 6)
    assert {p["label"] for p in namespace["records"]("recording.wav")} == set(TASK_21_CLASSES.values())
    assert namespace["annotation"]["event_annotation"], "the README's recording should have annotated events"
    assert namespace["best"]["label"] in {"Normal", "Adventitious"}
    assert namespace["events"].model.config.id2label == {0: "Normal", 1: "Adventitious"}

    # OPERA's metrics as evaluate modules give the values the block's comments state.
    run(metrics_block, 7)
    auroc_call = next(line for line in metrics_block.splitlines() if line.startswith("auroc.compute("))
    stated = eval(auroc_call.split("#", 1)[1].strip())
    assert eval(auroc_call.split("#", 1)[0], namespace) == stated == {"roc_auc": 1.0}
    mrr_call = next(line for line in metrics_block.splitlines() if line.startswith("mrr.compute("))
    assert eval(mrr_call, namespace) == {"mrr": {"a": 0.75, "b": 0.75}}
