"""The model folders shipped under pretrained/: weights, configuration and card, and no code.

The package's modules are their code. With the package imported, its registered classes load the folders; for a
process without it, staging (`resp_audio_hf.hub.staging.save_with_remote_code`, as `resp-audio-hf push` does) writes
the package's modules next to the weights, and that folder must load through `trust_remote_code=True` and give the
package's outputs.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from _audio_helpers import require_dir
from _paths import REPO_ROOT
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

import resp_audio_hf  # noqa: F401  (registers the model types)
from resp_audio_hf.hub import load_without_package
from resp_audio_hf.hub.staging import save_with_remote_code

FOLDERS = sorted(path for path in (REPO_ROOT / "pretrained").iterdir() if path.is_dir())


# The SPRSound challenge classifiers (training/export_classifier.py) and their tasks' class names, in id order.
CHALLENGE_CLASSIFIERS = {
    "mn04-sprsound-1-1": ("1-1", ["Normal", "Adventitious"]),
    "mn04-sprsound-2-1": ("2-1", ["Normal", "Poor Quality", "Adventitious"]),
}


def test_there_are_shipped_folders():
    assert {path.name for path in FOLDERS} >= {"efficientat-mn04-as", *CHALLENGE_CLASSIFIERS}


@pytest.mark.parametrize("name", sorted(CHALLENGE_CLASSIFIERS))
def test_challenge_classifiers_answer_with_the_organisers_classes_and_cards_state_their_run(name):
    """id2label is the organisers' id order (`scripts/test.py`); the card's table is the run's own test scores."""
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task

    folder = REPO_ROOT / "pretrained" / name
    task_id, class_names = CHALLENGE_CLASSIFIERS[name]
    config = AutoConfig.from_pretrained(folder)
    assert [config.id2label[i] for i in range(len(config.id2label))] == class_names
    assert list(challenge_task(task_id).class_names) == class_names
    results = json.loads((folder / "finetune_results.json").read_text())
    card = (folder / "README.md").read_text()
    assert "license: gpl-3.0" in card and "GNU General Public License v3.0" in (folder / "LICENSE").read_text()
    for split in ("test_inter", "test_intra"):
        metrics = results["metrics"][split]
        row = " | ".join(f"{metrics[f'{split}_{metric}']:.3f}" for metric in ("score", "sensitivity", "specificity"))
        assert f"| {split} | {row} |" in card


@pytest.mark.parametrize("name", sorted(CHALLENGE_CLASSIFIERS))
def test_challenge_cards_are_what_the_export_writes_against_the_committed_table(name, monkeypatch):
    """The committed card is `export_classifier.py --card-only --compare-with results/sprsound_challenge.json`'s, byte
    for byte, and its verdict agrees with the table: the fine-tuned classifier vs the frozen-encoder probe."""
    from resp_audio_hf.training.export_classifier import card_of_exported_folder, scores_on_test_parts

    folder = REPO_ROOT / "pretrained" / name
    table_path = Path("results") / "sprsound_challenge.json"
    monkeypatch.chdir(REPO_ROOT)  # the card names the table by the path the command was given
    card = card_of_exported_folder(Path("pretrained") / name, table_path)
    assert card == (folder / "README.md").read_text(encoding="utf-8")
    results = json.loads((folder / "finetune_results.json").read_text())
    table = json.loads((REPO_ROOT / table_path).read_text())
    probe = table["tasks"][results["sprsound_task"]]["probe"]["aggregate"]["mean"]["score"]["mean"]
    beats = scores_on_test_parts(results)["mean"] > probe
    assert ("This classifier beats its starting point" in card) is beats
    assert ("This classifier does not beat its starting point" in card) is not beats
    assert f"{probe:.3f}" in card


def test_record_classifier_scores_the_real_inter_test_part_as_its_card_says(shared_data):
    """The shipped Task 2-1 classifier, run one recording at a time through `pipeline("audio-classification")` on the
    355 recordings of SPRSound's inter-patient test part and scored by the `sprsound_score` module, gives the Score its
    run measured through `Trainer`. Trainer scored zero-padded batches of 32, and padding reaches the convolutions
    at each clip's end, so a few records may differ: the Score agrees to 0.01, not bitwise."""
    import evaluate
    import soundfile
    from transformers import pipeline

    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
    from resp_audio_hf.metrics import metric_path

    folder = REPO_ROOT / "pretrained" / "mn04-sprsound-2-1"
    task = challenge_task("2-1")
    classifier = pipeline("audio-classification", model=str(folder))
    annotations = sorted(require_dir(shared_data / "sprsound" / "test_json" / "inter_test_json").glob("*.json"))
    assert len(annotations) == 355
    predictions, references = [], []
    for annotation in annotations:
        audio, rate = soundfile.read(shared_data / "sprsound" / "test_wav" / f"{annotation.stem}.wav", dtype="float32")
        best = classifier({"array": audio, "sampling_rate": rate}, top_k=1)[0]
        predictions.append(classifier.model.config.label2id[best["label"]])
        references.append(task.label_of[json.loads(annotation.read_text())["record_annotation"]])
    scores = evaluate.load(metric_path("sprsound_score")).compute(
        predictions=predictions, references=references, task="2-1"
    )
    measured = json.loads((folder / "finetune_results.json").read_text())["metrics"]["test_inter"]
    assert scores["score"] == pytest.approx(measured["test_inter_score"], abs=0.01)
    assert scores["sensitivity"] == pytest.approx(measured["test_inter_sensitivity"], abs=0.02)
    assert scores["specificity"] == pytest.approx(measured["test_inter_specificity"], abs=0.02)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: path.name)
def test_auto_map_names_classes_of_the_package(folder):
    """Each `auto_map` entry names a package class registered for that Auto class, so `save_pretrained` writes its
    module into a staged folder."""
    entries = {}
    for name in ("config.json", "preprocessor_config.json"):
        entries.update(json.loads((folder / name).read_text()).get("auto_map", {}))
    assert {"AutoConfig", "AutoModel", "AutoFeatureExtractor"} <= set(entries)
    for auto_class, reference in entries.items():
        module, class_name = reference.rsplit(".", 1)
        loaded = getattr(importlib.import_module(f"resp_audio_hf.{module}"), class_name)
        assert loaded._auto_class == auto_class, reference


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: path.name)
def test_staged_folder_loads_without_the_package_as_the_package_loads_the_folder(folder, shared_data, tmp_path):
    import soundfile

    recording = sorted(require_dir(shared_data / "sprsound" / "test_wav").glob("*.wav"))[0]
    audio, rate = soundfile.read(recording, dtype="float32")
    has_head = any(name.endswith("ForAudioClassification") for name in AutoConfig.from_pretrained(folder).architectures)
    model = (AutoModelForAudioClassification if has_head else AutoModel).from_pretrained(folder).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
    assert type(model).__module__.startswith("resp_audio_hf.")  # the package's class, not code from the folder
    staged = tmp_path / "staged"
    save_with_remote_code(model, feature_extractor, staged)

    remote = load_without_package(staged, [audio], rate)
    inputs = feature_extractor([audio], sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        encoded = AutoModel.from_pretrained(folder).eval()(**inputs)
        expected = {"pooler_output": encoded.pooler_output, "last_hidden_state": encoded.last_hidden_state}
        if has_head:
            expected["logits"] = model(**inputs).logits
    assert set(remote) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(remote[name], value, atol=1e-5, rtol=1e-5)
