"""The SPRSound challenge's score: hand-computed cases, a participating team's own metric code, and the `evaluate`
module against the benchmark's function."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from resp_audio_hf.benchmark.metrics import sprsound_scores

evaluate = pytest.importorskip("evaluate")

from resp_audio_hf.metrics import metric_path  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    return evaluate.load(metric_path("sprsound_score"), cache_dir=str(tmp_path_factory.mktemp("evaluate")))


# (task, references, predictions, poor_quality, SE, SP), worked out by hand:
HAND_CASES = [
    # 4 Normal, 3 right -> SP 3/4; 4 Adventitious, 2 right -> SE 1/2.
    ("1-1", [0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0], "excluded", 1 / 2, 3 / 4),
    # The exact class counts: Wheeze predicted Fine Crackle and Wheeze+Crackle predicted Wheeze are wrong.
    ("1-2", [0, 0, 2, 5, 6, 6], [0, 5, 5, 5, 2, 6], "excluded", 2 / 4, 1 / 2),
    # Poor Quality (id 1) out of SE: CAS right, DAS wrong, CAS & DAS right -> 2/3; a Normal predicted PQ is wrong.
    ("2-2", [0, 0, 1, 1, 2, 3, 4], [0, 1, 1, 0, 2, 2, 4], "excluded", 2 / 3, 1 / 2),
    # Poor Quality in SE: one PQ right, one wrong, with the three above -> 3/5.
    ("2-2", [0, 0, 1, 1, 2, 3, 4], [0, 1, 1, 0, 2, 2, 4], "abnormal", 3 / 5, 1 / 2),
    # Task 2-1: Adventitious (id 2) predicted Poor Quality is wrong; PQ predicted Adventitious only matters in SE when
    # PQ counts as abnormal.
    ("2-1", [0, 0, 0, 1, 2, 2], [0, 0, 2, 2, 2, 1], "excluded", 1 / 2, 2 / 3),
    ("2-1", [0, 0, 0, 1, 2, 2], [0, 0, 2, 2, 2, 1], "abnormal", 1 / 3, 2 / 3),
]


@pytest.mark.parametrize("task, references, predictions, poor_quality, se, sp", HAND_CASES)
def test_hand_computed_cases(module, task, references, predictions, poor_quality, se, sp):
    average = (se + sp) / 2
    harmonic = 2 * se * sp / (se + sp)
    expected = {
        "sensitivity": se,
        "specificity": sp,
        "average_score": average,
        "harmonic_score": harmonic,
        "score": (average + harmonic) / 2,
    }
    result = module.compute(predictions=predictions, references=references, task=task, poor_quality=poor_quality)
    assert result == pytest.approx(expected, abs=1e-12)
    # Written out for the 2-2 "excluded" case: AS 7/12, HS 4/7, score 97/168.
    if task == "2-2" and poor_quality == "excluded":
        assert result["score"] == pytest.approx(97 / 168, abs=1e-12)


def test_harmonic_score_is_zero_when_both_rates_are_zero_and_one_when_perfect(module):
    assert module.compute(predictions=[1, 0], references=[0, 1], task="1-1") == {
        "sensitivity": 0.0,
        "specificity": 0.0,
        "average_score": 0.0,
        "harmonic_score": 0.0,
        "score": 0.0,
    }
    assert module.compute(predictions=[0, 1, 2, 3, 4], references=[0, 1, 2, 3, 4], task="2-2")["score"] == 1.0


def test_refuses_what_it_cannot_score(module):
    with pytest.raises(ValueError, match="Normal and abnormal"):
        sprsound_scores([0, 0], [0, 1])
    with pytest.raises(ValueError, match="Normal and abnormal"):  # only Poor Quality beside Normal, PQ left out
        sprsound_scores([0, 1], [0, 1], poor_quality_class=1)
    with pytest.raises(ValueError, match="poor_quality"):
        sprsound_scores([0, 1], [0, 1], poor_quality="ignored")
    with pytest.raises(ValueError, match="class ids 0-1"):
        module.compute(predictions=[0, 2], references=[0, 1], task="1-1")
    with pytest.raises(KeyError, match="Unknown SPRSound challenge task"):
        module.compute(predictions=[0, 1], references=[0, 1], task="3-1")


# Expected values from a participating team's own metric code, run outside this repository: HUJH511/BioCAS-2023-
# Grand_Challenge at commit 6d8851c7586d2331e7ad04d97ed030a580503e0c, `src/utils/metric.py`,
# `calc_score(truth, preds, verbose=False, task=T)` with T = 1 for Tasks 1-1/1-2 and T = 2 for Tasks 2-1/2-2 (its SE
# is over the classes from id T on, so Poor Quality, id 1, is left out of Task 2's SE). The inputs are the lists
# in fixtures/sprsound_team_metric_cases.json: every class occurs among the references, as that code's confusion matrix (no `labels=`) needs, and about
# 40 % of the predictions are a random class, Poor Quality included. Values are (SE, SP, AS, HS, score).
TEAM_CASES = {
    name: (case["references"], case["predictions"], tuple(case["expected_se_sp_as_hs_score"]))
    for name, case in json.loads((FIXTURES / "sprsound_team_metric_cases.json").read_text(encoding="utf-8")).items()
}


@pytest.mark.parametrize("case", sorted(TEAM_CASES))
def test_agrees_with_a_participating_teams_metric_code(module, case):
    references, predictions, expected = TEAM_CASES[case]
    result = module.compute(predictions=predictions, references=references, task=case.split("#")[0])
    names = ("sensitivity", "specificity", "average_score", "harmonic_score", "score")
    assert [result[name] for name in names] == pytest.approx(list(expected), abs=1e-12)


@pytest.mark.parametrize("case", sorted(TEAM_CASES))
def test_the_poor_quality_conventions_differ_only_where_poor_quality_is_misclassified(case):
    references, predictions, _ = TEAM_CASES[case]
    task = case.split("#")[0]
    poor_quality = 1 if task.startswith("2") else None
    excluded = sprsound_scores(references, predictions, poor_quality_class=poor_quality, poor_quality="excluded")
    abnormal = sprsound_scores(references, predictions, poor_quality_class=poor_quality, poor_quality="abnormal")
    assert excluded["specificity"] == abnormal["specificity"]
    references, predictions = np.asarray(references), np.asarray(predictions)
    if poor_quality is None:
        assert excluded == abnormal
        return
    # SE with PQ = (right adventitious + right PQ) / (adventitious + PQ), recomputed from counts.
    adventitious, pq = references >= 2, references == 1
    right = references == predictions
    se = (right[adventitious].sum() + right[pq].sum()) / (adventitious.sum() + pq.sum())
    assert math.isclose(abnormal["sensitivity"], se)
    assert math.isclose(excluded["sensitivity"], right[adventitious].mean())
