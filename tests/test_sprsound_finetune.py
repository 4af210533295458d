"""Fine-tuning on the SPRSound challenge tasks: class-imbalance math, augmentation, the challenge's compute_metrics, a
tiny Trainer run of mn04 on real SPRSound clips, the export of the classifier and the results table's statistics."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _paths import MN04_DIR, REPO_ROOT

from resp_audio_hf.benchmark.metrics import sprsound_scores
from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
from resp_audio_hf.training.augmentation import AugmentationConfig, LungSoundAugmentation, mix_clips
from resp_audio_hf.training.class_balance import (
    BalancedClassSampler,
    balanced_class_weights,
    balanced_example_weights,
    weighted_cross_entropy,
)
from resp_audio_hf.training.finetune import make_compute_metrics

pytestmark = pytest.mark.usefixtures("single_torch_thread")


# ---------------------------------------------------------------------------------------------- class imbalance


def test_class_weights_match_scikit_learn_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    weights = balanced_class_weights(labels, 3)
    np.testing.assert_allclose(weights, compute_class_weight("balanced", classes=np.arange(3), y=labels))
    np.testing.assert_allclose(weights, [9 / (3 * 6), 9 / (3 * 2), 9 / (3 * 1)])
    # Every class carries the same total weight.
    np.testing.assert_allclose(np.bincount(labels, weights=weights[labels]), [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match=r"classes \[3\] have no training example"):
        balanced_class_weights(labels, 4)


def test_weighted_cross_entropy_is_the_weighted_mean_of_the_per_example_losses():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 3.0]])
    labels = torch.tensor([0, 2, 1, 0])
    weights = np.array([0.5, 2.0, 4.0])
    loss = weighted_cross_entropy(weights)({"logits": logits}, labels)
    log_softmax = logits.numpy() - np.log(np.exp(logits.numpy()).sum(axis=1, keepdims=True))
    per_example = -log_softmax[np.arange(4), labels.numpy()]
    expected = (weights[labels.numpy()] * per_example).sum() / weights[labels.numpy()].sum()
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_balanced_sampler_draws_classes_equally_and_repeats_each_epoch():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    probabilities = balanced_example_weights(labels, 3)
    np.testing.assert_allclose(np.bincount(labels, weights=probabilities), [1 / 3, 1 / 3, 1 / 3])
    sampler = BalancedClassSampler(labels, 3, seed=7)
    assert len(sampler) == 100
    draws = np.concatenate([sampler.indices(epoch) for epoch in range(300)])
    frequencies = np.bincount(labels[draws], minlength=3) / len(draws)
    np.testing.assert_allclose(frequencies, [1 / 3, 1 / 3, 1 / 3], atol=0.01)  # 30,000 draws: sd ~0.003
    sampler.set_epoch(4)
    epoch4 = list(sampler)
    assert epoch4 == BalancedClassSampler(labels, 3, seed=7).indices(4).tolist()  # a resumed run draws the same
    sampler.set_epoch(5)
    assert list(sampler) != epoch4


# ---------------------------------------------------------------------------------------------- augmentation


def _clips(rng, lengths):
    return [rng.normal(size=n).astype(np.float32) for n in lengths]


def test_augmentation_is_seeded_and_does_what_it_says():
    rate = 100
    clips = _clips(np.random.default_rng(0), [300, 250, 420])
    examples = [{"label": 0}] * 3
    gain_only = LungSoundAugmentation(AugmentationConfig(gain_db=6.0), seed=3)
    out = gain_only(clips, [rate] * 3, examples)
    for before, after in zip(clips, out):
        ratio = after / before
        assert np.allclose(ratio, ratio[0], rtol=1e-5) and 10 ** (-6 / 20) <= ratio[0] <= 10 ** (6 / 20)
    shift_only = LungSoundAugmentation(AugmentationConfig(time_shift_seconds=0.5), seed=3)
    for before, after in zip(clips, shift_only(clips, [rate] * 3, examples)):
        shift = int(np.flatnonzero(np.isclose(after, before[0]))[0])
        assert np.array_equal(after, np.roll(before, shift)) and min(shift, len(before) - shift) <= 50
    crop_only = LungSoundAugmentation(AugmentationConfig(crop_seconds=2.0), seed=3)
    for before, after in zip(clips, crop_only(clips, [rate] * 3, examples)):
        assert len(after) == min(200, len(before))
        start = int(np.flatnonzero(before == after[0])[0])
        assert np.array_equal(after, before[start : start + 200])

    config = AugmentationConfig(crop_seconds=2.5, time_shift_seconds=0.3, gain_db=6.0)
    first = LungSoundAugmentation(config, seed=11)(clips, [rate] * 3, examples)
    again = LungSoundAugmentation(config, seed=11)(clips, [rate] * 3, examples)
    other = LungSoundAugmentation(config, seed=12)(clips, [rate] * 3, examples)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other))


def test_mixing_stays_within_the_class():
    rng = np.random.default_rng(1)
    dataset = [{"audio": clip, "label": label} for clip, label in zip(_clips(rng, [200] * 6), [0, 1, 0, 1, 1, 0])]
    decoded = []

    def decode(example):
        decoded.append(example["label"])
        return example["audio"], 100

    augmentation = LungSoundAugmentation(
        AugmentationConfig(mix_probability=1.0), seed=0, dataset=dataset, labels=[e["label"] for e in dataset]
    )
    batch = [dataset[0], dataset[1], dataset[4]]
    out = augmentation([e["audio"] for e in batch], [100] * 3, batch, decode)
    assert decoded == [0, 1, 1]  # each partner has its clip's class
    assert [mixed.shape for mixed in out] == [(200,)] * 3
    # The mix is weight * clip + (1 - weight) * other over the common length, the rest of the clip scaled.
    a, b = np.arange(10, dtype=np.float32), np.full(4, 100.0, np.float32)
    mixed = mix_clips(a, b, 0.75, np.random.default_rng(0))
    changed = np.flatnonzero(~np.isclose(mixed, 0.75 * a))
    assert len(changed) == 4 and np.ptp(changed) == 3
    np.testing.assert_allclose(mixed[changed], 0.75 * a[changed] + 25.0)


# ---------------------------------------------------------------------------------------------- compute_metrics


class _Prediction:
    def __init__(self, predicted, labels, num_classes):
        self.predictions = np.eye(num_classes)[predicted] * 5.0  # logits whose arg-max is `predicted`
        self.label_ids = np.asarray(labels)


def test_compute_metrics_gives_the_hand_computed_challenge_scores():
    # Task 2-1: 0 Normal, 1 Poor Quality, 2 Adventitious.
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 0, 2, 1, 1, 0, 2, 2, 0, 1]
    metrics = make_compute_metrics("single_label_classification", challenge_task("2-1"))(
        _Prediction(predicted, labels, 3)
    )
    # By hand. SP = 2/4 Normal right. SE without Poor Quality = 2/4 Adventitious right: AS = HS = 0.5, Score 0.5.
    assert metrics["specificity"] == pytest.approx(0.5)
    assert metrics["sensitivity"] == pytest.approx(0.5)
    assert metrics["score"] == pytest.approx(0.5)
    # Poor Quality as abnormal: SE = (1 PQ + 2 Adventitious) / 6 = 0.5, so the Score is 0.5 again.
    assert metrics["score_poor_quality_abnormal"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(5 / 10)

    # Task 1-1: SE = 1/3, SP = 3/4; AS = 13/24, HS = 2 * (1/3) * (3/4) / (13/12) = 6/13; Score = (13/24 + 6/13) / 2.
    metrics = make_compute_metrics("single_label_classification", challenge_task("1-1"))(
        _Prediction([0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1, 1], 2)
    )
    assert metrics["sensitivity"] == pytest.approx(1 / 3)
    assert metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["score"] == pytest.approx((13 / 24 + 6 / 13) / 2)
    assert "score_poor_quality_abnormal" not in metrics

    # Task 2-2 with Poor Quality counted as abnormal: SE = (1 PQ + 1 CAS) / (2 PQ + 2 CAS) = 1/2, SP = 1.
    labels, predicted = [0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 2, 3]
    metrics = make_compute_metrics("single_label_classification", challenge_task("2-2"))(
        _Prediction(predicted, labels, 5)
    )
    assert metrics["sensitivity"] == pytest.approx(1 / 2)  # excluded: 1 of 2 CAS
    assert metrics["score_poor_quality_abnormal"] == pytest.approx((0.75 + 2 * 0.5 / 1.5) / 2)


# ---------------------------------------------------------------------------------------------- Trainer, export


def _per_class(table, k: int, offset: int):
    labels = np.asarray(table["label"])
    rows = []
    for label in np.unique(labels):
        rows += np.flatnonzero(labels == label)[offset : offset + k].tolist()
    return table.select(sorted(rows))


def _fine_tune_tiny(shared_data, folder: Path, name_or_path: str):
    """`name_or_path` fine-tuned for 2 steps on Task 1-1 events of the real SPRSound test part, which stands in for
    training data here: a few events of each class per split, cut from their recordings by start/end."""
    import datasets

    from resp_audio_hf.data.corpora.sprsound_challenge import load_challenge_dataset
    from resp_audio_hf.training.config import build_dataclass
    from resp_audio_hf.training.finetune import FinetuneConfig, run

    tables, _ = load_challenge_dataset("1-1", shared_data, verify_audio=False)
    inter, intra = tables["test_inter"], tables["test_intra"]
    small = datasets.DatasetDict(
        {
            "train": _per_class(inter, 4, 0),
            "validation": _per_class(inter, 3, 4),
            "test_inter": _per_class(inter, 3, 7),
            "test_intra": _per_class(intra, 3, 0),
        }
    )
    small.save_to_disk(folder / "data")
    raw = {
        "model": {"name_or_path": name_or_path},
        "task": {"id": None, "dataset": str(folder / "data"), "sprsound_task": "SPRSound-1-1",
                 "test_splits": ["test_inter", "test_intra"]},
        "imbalance": "weighted_loss",
        "freeze_batch_norm_statistics": True,
        "augmentation": {"gain_db": 6.0, "time_shift_seconds": 0.2, "mix_probability": 0.5},
        "training_args": {
            "output_dir": str(folder / "run"), "max_steps": 2, "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 8, "learning_rate": 1e-3, "eval_strategy": "steps", "eval_steps": 1,
            "save_strategy": "steps", "save_steps": 1, "load_best_model_at_end": True, "logging_steps": 1, "seed": 0,
        },
    }
    results = run(build_dataclass(FinetuneConfig, raw), command="python training/finetune.py (test)")
    return folder, small, results


@pytest.fixture(scope="module")
def tiny_run(shared_data, tmp_path_factory):
    """mn04 (AudioSet), the EfficientAT family."""
    return _fine_tune_tiny(shared_data, tmp_path_factory.mktemp("sprsound_finetune"), str(MN04_DIR))


@pytest.fixture(scope="module")
def tiny_vit_run(shared_data, tmp_path_factory):
    """The ViT family: the tiny-passt preset from scratch, through the same command and task."""
    return _fine_tune_tiny(shared_data, tmp_path_factory.mktemp("sprsound_finetune_vit"), "tiny-passt")


@pytest.mark.parametrize("family_run", ["tiny_run", "tiny_vit_run"])
def test_tiny_trainer_run_scores_each_test_part_with_the_best_checkpoint(family_run, request):
    """Either family's classifier: the best step chosen on the validation Score, both test parts scored with it."""
    from transformers import AutoModelForAudioClassification

    from resp_audio_hf import RespAudioFeatureExtractor
    from resp_audio_hf.collation import RespAudioCollator

    folder, small, results = request.getfixturevalue(family_run)
    run_dir = folder / "run"
    assert set(results) == {"validation", "test_inter", "test_intra"}
    saved = json.loads((run_dir / "finetune_results.json").read_text())
    assert saved["metric_for_best_model"] == "score" and saved["sprsound_task"] == "SPRSound-1-1"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluations = [r for r in records if "eval_score" in r]
    assert [r["step"] for r in evaluations] == [1, 2]
    assert saved["best_metric"] == max(r["eval_score"] for r in evaluations)  # chosen on the validation Score
    assert (run_dir / "command.txt").read_text() == "python training/finetune.py (test)\n"

    # The saved (best) model's predictions, scored by the benchmark's function, give the reported test scores.
    model = AutoModelForAudioClassification.from_pretrained(run_dir / "model").eval()
    assert model.config.model_type == {"tiny_run": "efficientat", "tiny_vit_run": "resp_audio"}[family_run]
    assert model.config.id2label == {0: "Normal", 1: "Adventitious"}
    collator = RespAudioCollator(RespAudioFeatureExtractor.from_pretrained(run_dir / "model"))
    for split in ("test_inter", "test_intra"):
        rows = [small[split][i] for i in range(len(small[split]))]
        with torch.no_grad():
            batch = collator(rows)
            labels = batch.pop("labels").numpy()
            predicted = model(**batch).logits.argmax(-1).numpy()
        expected = sprsound_scores(labels, predicted)
        assert results[split][f"{split}_score"] == pytest.approx(expected["score"], abs=1e-6)
        assert results[split][f"{split}_sensitivity"] == pytest.approx(expected["sensitivity"], abs=1e-6)
        assert results[split][f"{split}_specificity"] == pytest.approx(expected["specificity"], abs=1e-6)


def test_held_batch_norm_statistics_stay_audioset_while_the_weights_train(tiny_run):
    from safetensors.torch import load_file

    folder = tiny_run[0]
    start = load_file(str(MN04_DIR / "model.safetensors"))
    tuned = load_file(str(folder / "run" / "model" / "model.safetensors"))
    statistics = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert len(statistics) > 50
    for key in statistics:
        torch.testing.assert_close(tuned[key], start[key], rtol=0, atol=0, msg=key)
    trained = [k for k in start if k.endswith("weight") and k in tuned and start[k].shape == tuned[k].shape]
    moved = [k for k in trained if not torch.equal(tuned[k], start[k])]
    assert len(moved) > len(trained) // 2  # the convolutions and BatchNorm's affine parameters did train


def test_exported_classifier_answers_with_the_challenge_class_names(tiny_run, shared_data, tmp_path):
    from _remote_code_helpers import run_without_package
    from transformers import AutoModelForAudioClassification, pipeline

    from resp_audio_hf.data.audio import load_audio
    from resp_audio_hf.training.export_classifier import export

    folder, _, results = tiny_run
    exported = export(folder / "run", "mn04-sprsound-1-1", tmp_path / "pretrained")
    card = (exported / "README.md").read_text()
    assert "license: gpl-3.0" in card and "GPL-3.0" in (exported / "LICENSE").read_text()
    for split in ("test_inter", "test_intra"):
        assert f"| {split} | {results[split][f'{split}_score']:.3f} |" in card
    assert "## Against its starting point" not in card  # no table given, no comparison
    model = AutoModelForAudioClassification.from_pretrained(exported)
    assert type(model).__name__ == "EfficientATForAudioClassification"
    wav = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[0]
    classifier = pipeline("audio-classification", model=str(exported))
    assert {p["label"] for p in classifier(str(wav))} == {"Normal", "Adventitious"}

    # The same array through the remote code, in a process without the package: the same answer.
    audio, rate = load_audio(wav)
    local = classifier({"array": audio, "sampling_rate": rate})
    np.save(tmp_path / "audio.npy", audio)
    script = """
import json, sys
import numpy as np
from transformers import pipeline
folder, audio_file, rate, out = sys.argv[1:5]
classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
json.dump(classifier({"array": np.load(audio_file), "sampling_rate": int(rate)}), open(out, "w"))
assert not any(name.split(".")[0] == "resp_audio_hf" for name in sys.modules)
"""
    completed = run_without_package(script, exported, tmp_path / "audio.npy", rate, tmp_path / "out.json", cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads((tmp_path / "out.json").read_text())
    assert [p["label"] for p in remote] == [p["label"] for p in local]
    np.testing.assert_allclose([p["score"] for p in remote], [p["score"] for p in local], atol=1e-5)


# ---------------------------------------------------------------------------------------------- results table


def _results_module():
    spec = importlib.util.spec_from_file_location("sprsound_challenge_results", REPO_ROOT / "results" / "sprsound_challenge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_table_statistics():
    module = _results_module()
    runs = [
        module.split_scores({
            "test_inter": {"score": 0.5, "sensitivity": 0.2, "specificity": 0.9},
            "test_intra": {"score": 0.7, "sensitivity": 0.4, "specificity": 0.8},
        }),
        module.split_scores({
            "test_inter": {"score": 0.6, "sensitivity": 0.3, "specificity": 0.7},
            "test_intra": {"score": 0.9, "sensitivity": 0.6, "specificity": 0.6},
        }),
    ]
    assert runs[0]["mean"]["score"] == pytest.approx(0.6) and runs[1]["mean"]["score"] == pytest.approx(0.75)
    summary = module.aggregate(runs)
    assert summary["test_inter"]["score"]["mean"] == pytest.approx(0.55)
    assert summary["test_inter"]["score"]["std"] == pytest.approx(np.std([0.5, 0.6], ddof=1))
    assert summary["mean"]["score"]["mean"] == pytest.approx(0.675)
    assert summary["mean"]["sensitivity"]["std"] == pytest.approx(np.std([0.3, 0.45], ddof=1))
    table = module.markdown_table(
        {"tasks": {"SPRSound-2-1": {"baseline": {"label": "b", "aggregate": module.aggregate(runs[:1])}}}}
    )
    assert "| 2-1 | b | 1 | 0.500 / 0.200 / 0.900 | 0.700 / 0.400 / 0.800 | 0.600 / 0.300 / 0.850 |" in table
    assert "arXiv 2303.04104 (split not stated) | — | — | — | Score 0.745" in table


def test_results_refuse_a_finished_run_of_another_command(tmp_path):
    module = _results_module()
    args = module.parse_args(["--output-dir", str(tmp_path), "--epochs", "5", "--tasks", "2-1"])
    folder = tmp_path / "finetune" / "SPRSound-2-1" / "weighted_loss" / "seed0"
    folder.mkdir(parents=True)
    finished = {"command": "python training/finetune.py ... training_args.num_train_epochs=1.0", "best_metric": 0.2}
    (folder / "finetune_results.json").write_text(json.dumps(finished))
    with pytest.raises(SystemExit, match="holds a finished run of another command"):
        module.finetune_run(args, "SPRSound-2-1", "weighted_loss", False, 0)
    # The same command's finished run is reused as it is.
    finished["command"] = module.finetune_command(args, "SPRSound-2-1", "weighted_loss", False, 0)
    (folder / "finetune_results.json").write_text(json.dumps(finished))
    assert module.finetune_run(args, "SPRSound-2-1", "weighted_loss", False, 0) == finished


def test_results_merge_keeps_other_tasks_and_refuses_other_settings(tmp_path):
    module = _results_module()
    entry = {"label": "b", "aggregate": module.aggregate([module.split_scores({
        "test_inter": {"score": 0.5, "sensitivity": 0.2, "specificity": 0.9},
        "test_intra": {"score": 0.7, "sensitivity": 0.4, "specificity": 0.8},
    })])}
    previous = {"limit": None, "encoder": "pretrained/efficientat-mn04-as", "published": [],
                "tasks": {"SPRSound-1-1": {"baseline": entry}}, "runs": [{"command": "c", "tasks": ["SPRSound-1-1"]}]}
    path = tmp_path / "sprsound_challenge.json"
    path.write_text(json.dumps(previous))
    merged = module.merge_base(path, module.parse_args(["--merge"]))
    assert merged["tasks"] == previous["tasks"] and merged["runs"] == previous["runs"]
    assert merged["published"] == list(module.PUBLISHED)
    with pytest.raises(SystemExit, match="--limit 3"):
        module.merge_base(path, module.parse_args(["--merge", "--limit", "3"]))
    with pytest.raises(SystemExit, match="does not exist"):
        module.merge_base(tmp_path / "absent.json", module.parse_args(["--merge"]))


def _challenge_table(task: str, probe_mean: float) -> dict:
    """A challenge table with a probe, a 3-seed fine-tuning and a baseline row for `task`."""

    def row(mean, std=0.0, n=1):
        score = {"score": {"mean": mean, "std": std, "n": n}}
        return {"aggregate": {"test_inter": score, "test_intra": score, "mean": score}}

    return {"tasks": {task: {"finetune": row(0.6, 0.01, 3), "probe": row(probe_mean), "baseline": row(0.25)}}}


def test_exported_card_says_whether_the_classifier_beats_its_frozen_encoder_probe(tiny_run, tmp_path):
    """`--compare-with`: the card sets the run beside the table's probe, fine-tuning and baseline rows and says plainly
    which side of the probe it is on; `--card-only` rewrites only the card; a table without the task's probe is
    refused, naming the file."""
    from resp_audio_hf.training.export_classifier import export, main, scores_on_test_parts

    folder, _, _ = tiny_run
    results = json.loads((folder / "run" / "finetune_results.json").read_text())
    own = scores_on_test_parts(results)["mean"]
    for probe, verdict in ((own + 0.1, "does not beat"), (own - 0.1, "beats")):
        table = tmp_path / f"table_{verdict.replace(' ', '_')}.json"
        table.write_text(json.dumps(_challenge_table(results["sprsound_task"], probe)))
        exported = export(folder / "run", f"classifier_{verdict.replace(' ', '_')}", tmp_path / "out", compare_with=table)
        card = (exported / "README.md").read_text()
        assert f"This classifier {verdict} its starting point" in card
        assert f"| its starting point: the frozen encoder + a linear probe | {probe:.3f} | {probe:.3f} | {probe:.3f} |" in card
        assert "| fine-tuned as this one, 3 seeds (mean ± std) | 0.600 ± 0.010 |" in card
        assert f"| this classifier (seed {results['config']['training_args']['seed']}) |" in card

    # --card-only on the last export, against the other table: the card changes, the weights do not.
    weights = (exported / "model.safetensors").read_bytes()
    other = tmp_path / "table_does_not_beat.json"
    main(["--card-only", "--name", exported.name, "--output-root", str(exported.parent), "--compare-with", str(other)])
    assert "This classifier does not beat its starting point" in (exported / "README.md").read_text()
    assert (exported / "model.safetensors").read_bytes() == weights
    assert [path.name for path in exported.iterdir() if path.name.startswith(".")] == []

    no_probe = tmp_path / "no_probe.json"
    no_probe.write_text(json.dumps({"tasks": {}}))
    with pytest.raises(ValueError, match=r"no_probe\.json: no probe row for SPRSound-1-1"):
        export(folder / "run", "refused", tmp_path / "out", compare_with=no_probe)
    assert not (tmp_path / "out" / "refused").exists()
