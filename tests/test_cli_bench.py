"""``resp-audio-hf bench`` end to end on real SPRSound recordings with a tiny saved model, and its errors."""

import json

import numpy as np
import pytest
from _data_helpers import shared_path

from resp_audio_hf.cli import SUBCOMMANDS, build_parser, main


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    import torch

    from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel

    folder = tmp_path_factory.mktemp("tiny-m2d")
    config = RespAudioConfig.from_preset("tiny-m2d")
    torch.manual_seed(0)
    RespAudioModel(config).save_pretrained(folder)
    RespAudioFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


def test_bench_sprsound_end_to_end(tiny_model_dir, tmp_path, capsys):
    data_root = shared_path()
    shared_path("sprsound")
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = [
        "bench",
        "--model",
        str(tiny_model_dir),
        "--tasks",
        "S1",
        "--data-root",
        str(data_root),
        "--output-dir",
        str(out),
        "--cache-dir",
        str(cache),
        "--max-duration",
        "2",
        "--num-workers",
        "2",
        "--quiet",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    task = results["tasks"]["S1"]

    from resp_audio_hf.data import load_task

    expected = load_task("S1", data_root, verify_audio=False)
    assert task["counts"] == expected.counts()  # all 724 labelled recordings, patient-grouped splits
    assert task["counts"]["total"] == 724
    assert (
        task["metric"] == "auroc" and task["protocol"]["epochs"] == 64 and task["protocol"]["seeds"] == [0, 1, 2, 3, 4]
    )
    scores = [run["test"] for run in task["runs"]]
    assert len(scores) == 5 and all(0.0 <= s <= 1.0 for s in scores)
    assert task["mean"] == pytest.approx(np.mean(scores)) and task["std"] == pytest.approx(np.std(scores))
    assert task["embedding_dim"] == 160 and results["arguments"]["max_duration"] == 2.0
    row = f"{task['mean']:.3f} ± {task['std']:.3f}"
    assert row in (out / "results.md").read_text() and row in printed
    png = (out / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out / "results.png").shape[0] > 100

    # A second run reuses the cached embeddings and reproduces the scores exactly.
    assert main(argv + ["--no-verify-audio"]) == 0
    again = json.loads((out / "results.json").read_text())["tasks"]["S1"]
    assert [r["test"] for r in again["runs"]] == scores
    assert len(list(cache.glob("*/embeddings.npy"))) == 1
    assert results["encoder"]["pooling"] == "freq_preserving" and results["encoder"]["embedding_dim"] == 160
    assert "pooling freq_preserving, size 160" in (out / "results.md").read_text()

    # The pooling ablation on the same folder and cache: new embeddings of the mean-pooled width, not the cached ones.
    assert main(argv + ["--no-verify-audio", "--pooling", "mean"]) == 0
    ablation = json.loads((out / "results.json").read_text())
    assert ablation["encoder"]["pooling"] == "mean" and ablation["encoder"]["embedding_dim"] == 32
    assert ablation["tasks"]["S1"]["embedding_dim"] == 32
    assert [r["test"] for r in ablation["tasks"]["S1"]["runs"]] != scores
    assert len(list(cache.glob("*/embeddings.npy"))) == 2


def test_bench_reports_tasks_whose_corpus_is_missing(tmp_path, capsys):
    data_root = shared_path()
    code = main(
        [
            "bench",
            "--preset",
            "tiny-m2d",
            "--tasks",
            "T7",
            "--data-root",
            str(data_root),
            "--output-dir",
            str(tmp_path),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
        ]
    )
    assert code != 0
    report = (tmp_path / "results.md").read_text()
    assert "T7 not scored" in report and "ICBHI 2017 not found" in report
    assert json.loads((tmp_path / "results.json").read_text())["tasks"] == {}


def test_bench_rejects_unknown_tasks_and_bad_arguments(tmp_path, capsys):
    assert main(["bench", "--preset", "tiny-m2d", "--tasks", "T42", "--data-root", str(tmp_path)]) == 2
    assert "Unknown task 'T42'" in capsys.readouterr().err
    assert main(["bench", "--preset", "tiny-m2d", "--tasks", "T7", "--data-root", str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert (
        main(["bench", "--model", str(tmp_path / "no-such-model"), "--tasks", "S1", "--data-root", str(tmp_path)]) == 2
    )
    error = capsys.readouterr().err
    assert f"could not load the model: {tmp_path / 'no-such-model'} is not a local folder, and HF_HUB_OFFLINE is " \
        "set, so the Hub was not asked" in error  # transformers' own message names neither
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "weights.bin").write_bytes(b"")
    assert main(["bench", "--model", str(tmp_path / "not-a-model"), "--tasks", "S1", "--data-root", str(tmp_path)]) == 2
    assert f"{tmp_path / 'not-a-model'} is a folder but not a model folder" in capsys.readouterr().err
    bad_pooling = ["bench", "--preset", "tiny-m2d", "--tasks", "S1", "--data-root", str(tmp_path), "--pooling", "max"]
    assert main(bad_pooling) == 2
    assert "pooling must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "tiny-m2d", "--data-root", str(tmp_path), "--seeds", "a,b"])
    with pytest.raises(SystemExit):
        main(["bench", "--data-root", str(tmp_path)])  # neither --model nor --preset


def test_cli_lists_its_subcommands():
    assert {c.name for c in SUBCOMMANDS} >= {"bench", "demo"}
    help_text = build_parser().format_help()
    assert "bench" in help_text and "demo" in help_text
    assert main([]) == 2


def test_bench_scores_the_duration_baseline_on_the_cough_task_with_standardised_features(tmp_path):
    from sklearn.metrics import roc_auc_score

    from resp_audio_hf.data.tasks import load_task

    data_root = shared_path()
    shared_path("covid19-cough")
    out = tmp_path / "out"
    argv = ["bench", "--baseline", "duration", "--tasks", "COVID-cough", "--data-root", str(data_root)]
    argv += ["--output-dir", str(out), "--cache-dir", str(tmp_path / "cache"), "--seeds", "0,1", "--quiet"]
    assert main(argv + ["--standardize-features"]) == 0
    results = json.loads((out / "results.json").read_text())
    task = results["tasks"]["COVID-cough"]
    assert results["model"] == "baseline:duration" and task["embedding_dim"] == 1
    assert task["protocol"]["standardize_features"] is True
    assert "standardised (z-scored" in (out / "results.md").read_text()
    # One feature: the probe can only rank the test coughs by duration, one way or the other.
    table = load_task("COVID-cough", data_root).available
    test = table[table["split"] == "test"]
    from resp_audio_hf.data.audio import load_audio

    durations = [len(load_audio(p, 16000)[0]) / 16000 for p in test["audio"]]
    by_duration = roc_auc_score(test["label"], durations)
    assert task["mean"] == pytest.approx(max(by_duration, 1 - by_duration), abs=0.01)
    assert main(argv + ["--pooling", "mean"]) == 2
