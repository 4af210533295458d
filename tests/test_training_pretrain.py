"""training/pretrain.py end to end: 2-process CPU (gloo) M2D runs on real recordings, kill + exact resume, bf16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _training_helpers import cough_corpus, launch, metrics
from safetensors.torch import load_file

from resp_audio_hf.training.checkpointing import latest_checkpoint, list_checkpoints, save_final_folder

MAX_STEPS = 6


def run_config(shared_data: Path, output_dir: Path, **train_overrides) -> dict:
    """A tiny M2D run (dropout on, so the resume test also covers the restored RNG) on SPRSound and cough files."""
    return {
        "model": {"preset": "tiny-m2d", "config_overrides": {"hidden_dropout_prob": 0.1}},
        "objective": {"predictor_hidden_size": 32, "predictor_num_layers": 1, "predictor_num_heads": 2},
        "data": {
            "batch_size": 4,
            "corpora": [
                {"name": "sprsound", "path": str(shared_data / "sprsound" / "test_wav"), "limit": 20},
                cough_corpus(shared_data, ["verified == true"], limit=8, repeat=2),
            ],
        },
        "optimizer": {"lr": 2e-3, "warmup_steps": 1},
        "train": {
            "output_dir": str(output_dir),
            "max_steps": MAX_STEPS,
            "save_every_steps": 2,
            "keep_last": 2,
            "log_every_steps": 1,
            **train_overrides,
        },
    }


@pytest.fixture(scope="module")
def reference_run(shared_data, tmp_path_factory):
    """An uninterrupted 2-process run."""
    tmp_path = tmp_path_factory.mktemp("reference")
    output_dir = tmp_path / "run"
    result = launch(run_config(shared_data, output_dir), tmp_path, "reference")
    assert result.returncode == 0, result.stderr[-4000:]
    return output_dir


def test_two_process_run_trains_and_saves_an_automodel_folder(reference_run):
    records = metrics(reference_run)
    assert [r["step"] for r in records] == list(range(1, MAX_STEPS + 1))
    losses = [r["loss"] for r in records]
    assert all(torch.isfinite(torch.tensor(losses)))
    # Cosine distances of unit vectors: 0 <= loss <= 4. Training must bring it down from the untrained value.
    assert all(0.0 <= loss <= 4.0 for loss in losses)
    assert sum(losses[-2:]) / 2 < losses[0] - 0.2, losses
    assert records[0]["lr"] == pytest.approx(2e-3) and records[-1]["lr"] < records[1]["lr"]
    assert all(r["clips_per_second"] > 0 and r["peak_rss_mb"] > 0 for r in records)

    schedule = json.loads((reference_run / "pretrain_config.json").read_text())["schedule"]
    assert schedule["effective_batch_size"] == 8 and schedule["total_steps"] == MAX_STEPS
    assert [p.name for p in list_checkpoints(reference_run)] == ["checkpoint-4", "checkpoint-6"], "keep_last=2"
    checkpoint = latest_checkpoint(reference_run)
    assert sorted(p.name for p in checkpoint.glob("data_state_*.json")) == ["data_state_0.json", "data_state_1.json"]

    from transformers import AutoFeatureExtractor, AutoModel

    import resp_audio_hf  # noqa: F401  (registers the Auto classes)

    model = AutoModel.from_pretrained(reference_run / "model")
    assert type(model).__name__ == "RespAudioModel" and model.config.window_frames == 208
    feature_extractor = AutoFeatureExtractor.from_pretrained(reference_run / "model")
    assert feature_extractor.frontend == "m2d"
    # The saved encoder is the online encoder of the objective at the last step.
    objective_state = load_file(checkpoint / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, objective_state[f"encoder_model.{name}"]), name
    # ... and the EMA target (decay 0.99, the floor of the scaled default for 6 steps) lags behind the online encoder.
    moved = objective_state["encoder_model.encoder.layers.0.mlp.fc1.weight"]
    target = objective_state["target_encoder.layers.0.mlp.fc1.weight"]
    assert not torch.equal(moved, target)


def test_killed_run_resumes_to_the_same_weights(shared_data, reference_run, tmp_path):
    output_dir = tmp_path / "run"
    config = run_config(shared_data, output_dir)
    killed = launch(config, tmp_path, "killed", "--stop-after-steps", "3")
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    # Killed after step 3: the step-2 checkpoint is the newest complete one and there is no final model.
    assert [p.name for p in list_checkpoints(output_dir)] == ["checkpoint-2"]
    assert not (output_dir / "model").exists()
    assert [r["step"] for r in metrics(output_dir)] == [1, 2, 3]

    resumed = launch(config, tmp_path, "resumed", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Resumed from" in resumed.stderr and "at step 2" in resumed.stderr
    # Step 3 was redone; the log holds each step once, with the same losses as the uninterrupted run.
    assert metrics(output_dir) == [
        {**record, "clips_per_second": r["clips_per_second"], "peak_rss_mb": r["peak_rss_mb"]}
        for record, r in zip(metrics(reference_run), metrics(output_dir))
    ]
    for relative in ("model/model.safetensors", "checkpoint-6/model.safetensors"):
        expected, actual = load_file(reference_run / relative), load_file(output_dir / relative)
        assert expected.keys() == actual.keys()
        for name in expected:
            assert torch.equal(expected[name], actual[name]), f"{relative}: {name} differs after resume"
    optimizer_expected = torch.load(reference_run / "checkpoint-6" / "optimizer.bin", weights_only=False)
    optimizer_actual = torch.load(output_dir / "checkpoint-6" / "optimizer.bin", weights_only=False)
    for key, state in optimizer_expected["state"].items():
        assert torch.equal(state["exp_avg_sq"], optimizer_actual["state"][key]["exp_avg_sq"])


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps process-wide state (mixed precision, device); start and leave it clean for other tests."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_run_is_finite(shared_data, tmp_path, fresh_accelerate_state):
    # In this process rather than a launch: one process, bf16 autocast through Accelerate, two steps.
    from resp_audio_hf.training.config import PretrainConfig, build_dataclass
    from resp_audio_hf.training.pretrain import train

    output_dir = tmp_path / "run"
    config = build_dataclass(PretrainConfig, run_config(shared_data, output_dir, mixed_precision="bf16", max_steps=2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        final = train(config)
    finally:
        torch.set_num_threads(threads)
    losses = [r["loss"] for r in metrics(output_dir)]
    assert len(losses) == 2 and all(0.0 <= loss <= 4.0 for loss in losses)
    weights = load_file(final / "model.safetensors")
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights.values())


def test_incomplete_checkpoints_are_never_resumed_from(tmp_path):
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "training_state.json").write_text("{}")
    (tmp_path / ".tmp-checkpoint-6").mkdir()  # killed while saving
    (tmp_path / ".tmp-checkpoint-6" / "training_state.json").write_text("{}")
    (tmp_path / "checkpoint-8").mkdir()  # a folder without the state written last
    assert latest_checkpoint(tmp_path).name == "checkpoint-4"

    def fail(folder: Path):
        (folder / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        save_final_folder(tmp_path, "model", fail)
    assert not (tmp_path / "model").exists() and not [p.name for p in tmp_path.iterdir() if "model" in p.name]


# ---------------------------------------------------------------------------------------------- unusable files, export


def mixed_quality_run(folder: Path, output_dir: Path, **data) -> dict:
    """A tiny 1-process run over one folder holding usable and unusable files: 3 steps of 3 clips."""
    return {
        "model": {"preset": "tiny-m2d"},
        "objective": {"predictor_hidden_size": 32, "predictor_num_layers": 1, "predictor_num_heads": 2},
        "data": {"batch_size": 3, "corpora": [{"name": "mixed", "path": str(folder)}], **data},
        "optimizer": {"lr": 2e-3, "warmup_steps": 1},
        "train": {"output_dir": str(output_dir), "max_steps": 3, "save_every_steps": 3, "log_every_steps": 1},
    }


def train_in_process(raw: dict, command: str | None = None) -> Path:
    from resp_audio_hf.training.config import PretrainConfig, build_dataclass
    from resp_audio_hf.training.pretrain import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(build_dataclass(PretrainConfig, raw), command=command)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("cache", [False, True], ids=["decoded-per-step", "decoding-cache"])
def test_unusable_training_files_are_named_counted_and_skipped(shared_data, tmp_path, fresh_accelerate_state, cache):
    import hashlib

    from _training_helpers import make_mixed_quality_folder

    folder = tmp_path / "corpus"
    good, bad = make_mixed_quality_folder(shared_data, folder)
    output_dir = tmp_path / "run"
    data = {"cache_dir": str(tmp_path / "cache")} if cache else {}
    train_in_process(mixed_quality_run(folder, output_dir, **data))

    records = metrics(output_dir)
    assert [r["step"] for r in records] == [1, 2, 3] and all(0.0 <= r["loss"] <= 4.0 for r in records)
    counts = [r["unusable_files"] for r in records]
    # Decoded per step, one epoch of 3 batches of 3 meets all 9 files; the cache finds the 4 unusable ones up front.
    assert counts == [4, 4, 4] if cache else (counts == sorted(counts) and counts[-1] == 4)
    named = json.loads((output_dir / "unusable_files.json").read_text())
    assert sorted(Path(path).name for path in named) == sorted(bad)
    reasons = {Path(path).name: reason for path, reason in named.items()}
    assert "non-finite" in reasons.pop("nan.wav") and all(r.startswith("not decodable") for r in reasons.values())
    # The file list the run saw, and its hash, against an independent listing of the folder.
    listed = sorted(str(path) for path in folder.iterdir())
    data_files = json.loads((output_dir / "data_files.json").read_text())
    assert data_files["corpora"]["mixed"]["files"] == listed and data_files["num_files"] == len(good) + len(bad)
    assert data_files["sha256"] == hashlib.sha256("".join(f"{p}\n" for p in listed).encode()).hexdigest()


def test_export_writes_a_loadable_self_describing_folder(shared_data, tmp_path, fresh_accelerate_state):
    from transformers import AutoFeatureExtractor, AutoModel

    import resp_audio_hf  # noqa: F401  (registers the Auto classes)
    from resp_audio_hf.benchmark.results import BenchmarkResult, TaskResult
    from resp_audio_hf.training.export_pretrained import export

    # Corpora under folder names the card recognises: SPRSound (GPL-3.0) train files, CC0 coughs.
    sprsound = tmp_path / "SPRSound" / "train_wav"
    sprsound.mkdir(parents=True)
    for path in sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:4]:
        (sprsound / path.name).symlink_to(path)
    raw = mixed_quality_run(tmp_path / "unused", tmp_path / "run")
    raw["data"]["corpora"] = [
        {"name": "sprsound_train", "path": str(sprsound)},
        {"name": "cough", "path": str(shared_data / "covid19-cough" / "raw"), "limit": 5},
    ]
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="not finished"):
        export(run, "tiny-resp", tmp_path / "pretrained")
    config_path = tmp_path / "tiny_resp.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    train_in_process(raw, command=f"python training/pretrain.py --config {config_path}")

    with pytest.raises(ValueError, match="MB limit"):
        export(run, "tiny-resp", tmp_path / "pretrained", config_path, max_megabytes=0.01)
    assert not (tmp_path / "pretrained" / "tiny-resp").exists()
    # Bench results to show in the card, written as `resp-audio-hf bench` writes them.
    scores = [0.71, 0.69, 0.70]
    task = TaskResult("S1", "SPRSound record level", "auroc", float(np.mean(scores)), float(np.std(scores)), scores)
    for file_name, model in (("results.json", str(run / "model")), ("start.json", "preset:tiny-m2d:seed0")):
        (tmp_path / file_name).write_text(json.dumps(BenchmarkResult(model, tasks={"S1": task}).to_dict()))
    evaluations = {"trained": tmp_path / "results.json", "random-start": tmp_path / "start.json"}
    folder = export(run, "tiny-resp", tmp_path / "pretrained", config_path, evaluations=evaluations)

    # The saved model folder (weights, configuration, feature extractor, remote code) plus the run's records.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in (run / "model").iterdir()]
        + ["README.md", "command.txt", "file_list.json", "loss_curve.png", "metrics.jsonl"]
        + ["evaluation_random-start.json", "evaluation_trained.json", "pretrain_config.json", "tiny_resp.yaml"]
        + ["unusable_files.json"]
    )
    model = AutoModel.from_pretrained(folder)
    trained = load_file(run / "model" / "model.safetensors")
    assert all(torch.equal(tensor, trained[name]) for name, tensor in model.state_dict().items())
    assert AutoFeatureExtractor.from_pretrained(folder).frontend == "m2d"
    assert (folder / "command.txt").read_text() == f"python training/pretrain.py --config {config_path}\n"
    assert (folder / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()
    assert (folder / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((folder / "file_list.json").read_text())
    seen = json.loads((run / "data_files.json").read_text())
    assert summary["sha256"] == seen["sha256"] and summary["num_files"] == 9
    assert "files" not in json.dumps(summary["corpora"]).replace("num_files", "")
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: gpl-3.0\n")
    assert "GPL-3.0" in card and "CC0-1.0" in card and "No SPRSound test recording" in card
    assert "| trained | S1 | auroc | 0.700 ± 0.008 | 0.710, 0.690, 0.700 |" in card
    assert f"resp-audio-hf bench --model {run / 'model'} --tasks S1" in card
    assert "resp-audio-hf bench --preset tiny-m2d --tasks S1" in card

    # A run that listed SPRSound test recordings says so in its card.
    listed = seen["corpora"]["sprsound_train"]["files"]
    seen["corpora"]["sprsound_train"]["files"] = [path.replace("train_wav", "test_wav") for path in listed]
    (run / "data_files.json").write_text(json.dumps(seen))
    # and a run whose saved preprocessor allows silent input (as pre-training's crops do) is published refusing it.
    preprocessor = run / "model" / "preprocessor_config.json"
    preprocessor.write_text(json.dumps({**json.loads(preprocessor.read_text()), "reject_silent_audio": False}))
    exported = export(run, "tiny-resp", tmp_path / "pretrained")
    card = (exported / "README.md").read_text()
    assert "4 SPRSound test recordings were in the training data" in card
    assert AutoFeatureExtractor.from_pretrained(exported).reject_silent_audio is True


def test_bench_preset_rebuilds_the_random_start_of_a_run():
    """`resp-audio-hf bench --preset P` scores exactly the initial weights of a from-scratch run of preset P (seed 0),
    the baseline the exported model card compares against."""
    from accelerate.utils import set_seed

    from resp_audio_hf.extraction import AudioEncoder
    from resp_audio_hf.training.config import PretrainConfig, build_dataclass
    from resp_audio_hf.training.pretrain import build_encoder

    config = build_dataclass(PretrainConfig, {"model": {"preset": "tiny-m2d"}, "data": {"corpora": [{"path": "/x"}]}})
    set_seed(config.train.seed)
    start = build_encoder(config).state_dict()
    baseline = AudioEncoder.from_preset("tiny-m2d").model.state_dict()
    assert start.keys() == baseline.keys() and all(torch.equal(start[k], baseline[k]) for k in start)
