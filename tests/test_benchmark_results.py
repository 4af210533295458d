"""The typed results.json: bench's arguments parsed into one dataclass, written with the results and read back; files
of schema 1 (tests/fixtures/small_m2d_resp_retired/evaluation_*.json) read as the same record; the card renders the same from
either schema."""

import json
from pathlib import Path

import pytest
from _paths import REPO_ROOT

from resp_audio_hf.benchmark.arguments import BenchmarkArguments
from resp_audio_hf.benchmark.report import write_reports
from resp_audio_hf.benchmark.results import (
    SCHEMA_VERSION,
    BenchmarkResult,
    MetricSummary,
    ResultsFormatError,
    load_results,
)
from resp_audio_hf.cli import build_parser, main
from resp_audio_hf.data.metric_specs import METRICS

# The retired small-m2d-resp folder's evaluations, kept as schema-1 fixtures, and any shipped ones.
SCHEMA_1_FILES = sorted(
    [*REPO_ROOT.glob("pretrained/*/evaluation_*.json"), *REPO_ROOT.glob("tests/fixtures/small_m2d_resp_retired/evaluation_*.json")]
)


def _bench_arguments(argv: list[str]) -> BenchmarkArguments:
    from resp_audio_hf.cli import _parsed_options

    return _parsed_options(build_parser().parse_args(["bench", *argv]))


def test_schema_1_files_are_committed():
    assert len(SCHEMA_1_FILES) >= 2 and all("schema_version" not in json.loads(p.read_text()) for p in SCHEMA_1_FILES)


@pytest.mark.parametrize("path", SCHEMA_1_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_schema_1_file_reads_field_for_field_and_rewrites_its_tasks_unchanged(path, tmp_path):
    raw = json.loads(path.read_text())
    result = load_results(path)
    assert result.model == raw["model"] and result.model_fingerprint == raw["model_fingerprint"]
    assert result.arguments is None  # schema 1 did not record the command line
    assert (result.encoder.sampling_rate, result.encoder.pooling, result.encoder.embedding_dim) == (
        raw["settings"]["sampling_rate"], raw["settings"]["pooling"], raw["settings"]["embedding_dim"]
    )
    for task_id, row in raw["tasks"].items():
        task = result.tasks[task_id]
        assert (task.mean, task.std, task.scores) == (row["mean"], row["std"], row["scores"])
        assert task.higher_is_better is row["higher_is_better"]
        assert [run.test for run in task.runs] == [run["test"] for run in row["runs"]]
        assert task.test_results["test"][row["metric"]] == MetricSummary(**row["test_results"]["test"][row["metric"]])

    # Written again (schema 2), every task entry is the old one, key for key and in the same order.
    written = json.loads(write_reports(result, tmp_path)["json"].read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert json.dumps(written["tasks"]) == json.dumps(raw["tasks"])
    assert written["encoder"] == {key: raw["settings"][key] for key in ("sampling_rate", "pooling", "embedding_dim")}
    assert load_results(tmp_path / "results.json") == result


def test_the_card_renders_the_same_from_a_schema_1_file_and_its_schema_2_rewrite(tmp_path):
    from resp_audio_hf import RespAudioConfig
    from resp_audio_hf.hub import load_benchmark_results, render_model_card

    old = Path(__file__).parent / "fixtures" / "small_m2d_resp_retired" / "evaluation_trained.json"
    write_reports(load_results(old), tmp_path)
    new = tmp_path / old.name
    (tmp_path / "results.json").rename(new)  # the card names its source file
    config = RespAudioConfig.from_preset("small-m2d")
    cards = [
        str(render_model_card(config, "org/small-m2d", benchmark=load_benchmark_results(path), num_parameters=1))
        for path in (old, new)
    ]
    assert cards[0] == cards[1]
    raw = json.loads(old.read_text())["tasks"]["S1"]
    assert f"| S1 | {raw['name']} | SPRSound 2022 | AUROC ↑ | {raw['mean']:.3f} ± {raw['std']:.3f} | 5 |" in cards[0]


def test_bench_arguments_parse_from_the_command_line_and_round_trip_through_json(tmp_path):
    arguments = _bench_arguments(
        ["--preset", "tiny-m2d", "--data-root", str(tmp_path), "--seeds", "0,2", "--epochs", "3",
         "--standardize-features", "--no-verify-audio", "--max-duration", "2.5", "--batch-size", "4"]
    )
    assert arguments.preset == "tiny-m2d" and arguments.model is None and arguments.data_root == tmp_path
    assert arguments.protocol_overrides == {"epochs": 3, "seeds": (0, 2), "standardize_features": True}
    assert (arguments.no_verify_audio, arguments.max_duration, arguments.batch_size) == (True, 2.5, 4)
    assert arguments.tasks == "all" and arguments.cache_dir is None and not arguments.compare_opera
    again = BenchmarkArguments.from_dict(json.loads(json.dumps(arguments.to_dict())))
    assert again == arguments and isinstance(again.data_root, Path)
    # The underscore spellings HfArgumentParser adds name the same options.
    assert _bench_arguments(["--preset", "tiny-m2d", "--data_root", str(tmp_path), "--batch_size", "4"]).batch_size == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give exactly one of --model, --preset, --baseline"),
        (["--preset", "tiny-m2d", "--model", "m"], "(got --model, --preset)"),
        (["--preset", "tiny-m2d", "--seeds", "a,b"], "--seeds takes comma-separated integers, got 'a,b'"),
        (["--preset", "tiny-m2d", "--batch-size", "0"], "--batch-size takes a positive integer, got 0"),
        (["--preset", "tiny-m2d", "--max-duration", "0"], "--max-duration takes a positive number"),
        (["--baseline", "loudness"], "invalid choice"),
    ],
)
def test_bench_refuses_bad_arguments_as_usage_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--data-root", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: resp-audio-hf bench") and message in error


def test_results_of_a_newer_schema_or_broken_tasks_are_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "tasks": {}}))
    with pytest.raises(ResultsFormatError, match="schema_version 3 is not one this version reads"):
        load_results(path)
    path.write_text(json.dumps({"model": "m", "tasks": {"T7": {"name": "x", "metric": "auroc", "mean": 0.5,
                                                              "std": 0.0, "scores": [0.5], "runs": [{"seed": 0}]}}}))
    with pytest.raises(ResultsFormatError, match="task T7: runs or test_results are not as bench writes them"):
        load_results(path)


def test_metric_directions_rank_as_their_definitions_say():
    """Higher is better for scores of agreement, lower for errors: checked on values, not on the table."""
    import numpy as np
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    labels = np.array([0, 0, 1, 1])
    good, bad = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.9, 0.8, 0.2, 0.1])
    better = {"auroc": roc_auc_score(labels, good) > roc_auc_score(labels, bad),
              "mae": mean_absolute_error(labels, good) > mean_absolute_error(labels, bad)}
    for name, higher_value_is_the_better_predictor in better.items():
        assert METRICS[name].higher_is_better is higher_value_is_the_better_predictor
    assert [METRICS[name].display_name for name in ("auroc", "mae", "icbhi_score")] == ["AUROC", "MAE", "ICBHI score"]


def test_every_task_metric_is_in_the_table():
    from resp_audio_hf.data.tasks import TASKS

    for spec in TASKS.values():
        for name in (spec.metric, *spec.extra_metrics):
            assert name in METRICS, (spec.task_id, name)
        assert spec.higher_is_better is (spec.kind == "classification")  # regression tasks are scored by an error


def test_a_benchmark_result_is_what_bench_writes(tmp_path):
    """write_reports writes BenchmarkResult.to_dict; reading it back gives the same record."""
    result = BenchmarkResult.from_dict(
        {"model": "m", "tasks": {"T7": {"name": "ICBHI: COPD", "metric": "auroc", "mean": 0.8, "std": 0.1,
                                        "scores": [0.7, 0.9]}}, "failed": {"T1": "ValueError: x"}}
    )
    written = write_reports(result, tmp_path)["json"]
    again = load_results(written)
    assert again == result and again.failed["T1"].error == "ValueError: x" and again.not_scored == ("T1",)
    assert json.loads(written.read_text())["tasks"]["T7"]["higher_is_better"] is True
