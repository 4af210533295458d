"""Reports: markdown table with OPERA's published baselines and MRR, JSON, PNG chart; the results are a hand-written
results.json of schema 1 (no schema_version, a 'settings' object), read as bench's typed record."""

import json

import pandas as pd
import pytest

from resp_audio_hf.benchmark.baselines import (
    OPERA_BASELINE_METHODS,
    OPERA_PUBLISHED_RESULTS,
)
from resp_audio_hf.benchmark.report import write_reports as write_typed_reports
from resp_audio_hf.benchmark.results import BenchmarkResult


def write_reports(payload: dict, output_dir, baselines: bool = False):
    return write_typed_reports(BenchmarkResult.from_dict(payload), output_dir, baselines)


def _results():
    return {
        "model": "my-model",
        "model_fingerprint": "abc",
        "settings": {},
        "tasks": {
            "T7": {
                "name": "ICBHI: COPD detection",
                "metric": "auroc",
                "higher_is_better": True,
                "mean": 0.9,
                "std": 0.01,
                "scores": [0.9],
            },
            "T10": {
                "name": "KAUH",
                "metric": "auroc",
                "higher_is_better": True,
                "mean": 0.75,
                "std": 0.02,
                "scores": [0.75],
            },
            "T13": {
                "name": "MMlung FVC",
                "metric": "mae",
                "higher_is_better": False,
                "mean": 0.95,
                "std": 0.6,
                "scores": [0.95],
            },
        },
        "unavailable": {"T1": "UK COVID-19 Vocal Audio not found under /data"},
        "failed": {},
    }


def test_reports_show_baselines_and_a_mean_reciprocal_rank_that_matches_a_manual_ranking(tmp_path):
    paths = write_reports(_results(), tmp_path, baselines=True)
    table = paths["markdown"].read_text()
    for method in OPERA_BASELINE_METHODS:
        assert method in table
    assert "| T7 | ICBHI: COPD detection | AUROC ↑ | 0.900 ± 0.010 |" in table
    assert "0.933 ± 0.005" in table  # CLAP on T7 as published by OPERA
    assert "T1 not scored: UK COVID-19 Vocal Audio not found" in table

    # Independent MRR: rank each task with pandas (ties -> lowest rank), average reciprocal ranks.
    tasks = ["T7", "T10", "T13"]
    scores = {"my-model": {"T7": 0.9, "T10": 0.75, "T13": 0.95}}
    scores.update({m: {t: OPERA_PUBLISHED_RESULTS[m][t]["mean"] for t in tasks} for m in OPERA_BASELINE_METHODS})
    frame = pd.DataFrame(scores)
    ranks = pd.concat(
        [
            frame.loc["T7"].rank(ascending=False, method="min"),
            frame.loc["T10"].rank(ascending=False, method="min"),
            frame.loc["T13"].rank(ascending=True, method="min"),
        ],
        axis=1,
    )
    expected = (1 / ranks).mean(axis=1)
    saved = json.loads(paths["json"].read_text())["mrr"]
    assert saved["tasks"] == tasks
    for model, value in expected.items():
        assert saved["values"][model] == pytest.approx(value)
    assert f"{expected['my-model']:.3f}" in table.splitlines()[5]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_reports_without_baselines_only_show_our_model(tmp_path):
    paths = write_reports(_results(), tmp_path, baselines=False)
    table = paths["markdown"].read_text()
    assert "OPERA-CT" not in table and "MRR" not in table and "0.950 ± 0.600" in table
    assert "mrr" not in json.loads(paths["json"].read_text())
    assert not list(tmp_path.glob(".*tmp*"))  # written through temporary files, none left behind


def test_baselines_say_which_tasks_opera_published_none_for(tmp_path):
    results = _results()
    results["tasks"]["S1"] = {**results["tasks"]["T7"], "name": "SPRSound record level"}
    table = write_reports(results, tmp_path, baselines=True)["markdown"].read_text()
    assert "| S1 | SPRSound record level | AUROC ↑ | 0.900 ± 0.010 | – | – | – | – | – | – | – |" in table
    assert "- OPERA published no baseline for S1 (–): its tables cover T1-T19; the mean reciprocal rank is over the " \
        "tasks they cover." in table
    sprsound_only = {**results, "tasks": {"S1": results["tasks"]["S1"]}}
    table = write_reports(sprsound_only, tmp_path / "sprsound", baselines=True)["markdown"].read_text()
    assert "MRR" not in table
    assert "- OPERA published no baseline for S1 (–): its tables cover T1-T19; the mean reciprocal rank is over the " \
        "tasks they cover, none of them here." in table


def test_a_run_without_scores_leaves_no_chart_of_an_earlier_run(tmp_path):
    assert write_reports(_results(), tmp_path)["png"].is_file()
    nothing_scored = {**_results(), "tasks": {}}
    paths = write_reports(nothing_scored, tmp_path)
    assert "png" not in paths and sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]
