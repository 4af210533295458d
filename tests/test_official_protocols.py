"""The field's official protocols: SPRSound's train part / intra- and inter-patient test parts, the ICBHI 2017
challenge's 4-class cycle task with its sensitivity/specificity score, and the runner's split checks before any
embedding is extracted. Layouts are synthetic miniatures in the corpora's official formats (the real SPRSound test
part comes from ../shared); an optional check runs over all 920 real ICBHI annotation files when
``RESP_AUDIO_HF_ICBHI_ANNOTATIONS`` points at them."""

import collections
import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import shared_path, tone, write_wav
from sklearn.metrics import roc_auc_score

from resp_audio_hf.benchmark.arguments import BenchmarkArguments
from resp_audio_hf.benchmark.probe import train_linear_probes
from resp_audio_hf.benchmark.report import markdown_table, write_reports
from resp_audio_hf.benchmark.results import BenchmarkResult
from resp_audio_hf.benchmark.runner import (
    check_task_splits,
    evaluate_task,
    make_runs,
    run_benchmark,
    score_task,
)
from resp_audio_hf.data import OperaFiles, load_task, scan_corpus
from resp_audio_hf.data.task_spec import TaskData
from resp_audio_hf.data.tasks import TASKS, with_protocol

SR = 8000


@pytest.fixture(scope="module")
def opera():
    return OperaFiles(local_dirs=(shared_path("opera"),), offline=True)


# --------------------------------------------------------------------------------------------------
# SPRSound
# --------------------------------------------------------------------------------------------------

# Record label cycle per patient: each train patient gets Normal, CAS, DAS, Normal, Poor Quality recordings.
_TRAIN_LABELS = ("Normal", "CAS", "DAS", "Normal", "Poor Quality")
_INTRA_LABELS = ("Normal", "CAS", "Poor Quality")  # new recordings of training patients
_INTER_LABELS = ("Normal", "DAS", "CAS & DAS")  # new patients


def _sprsound_recording(folder_wav, folder_json, patient, number, label, events=2):
    name = f"{patient}_5.0_{number % 2}_p{1 + number % 4}_{number}"
    write_wav(folder_wav / f"{name}.wav", tone(0.4, SR, 200 + 10 * number, seed=number), SR)
    folder_json.mkdir(parents=True, exist_ok=True)
    annotation = {
        "record_annotation": label,
        "event_annotation": [
            {"start": 50 * i, "end": 50 * i + 40, "type": "Normal" if label == "Normal" else "Wheeze"}
            for i in range(events)
        ],
    }
    (folder_json / f"{name}.json").write_text(json.dumps(annotation))
    return name


def _sprsound_layout(root: Path, parts=("train", "intra", "inter")) -> dict[str, dict[str, str]]:
    """Official layout: 12 train patients (5 recordings each), intra test = new recordings of train patients 0-5,
    inter test = 4 new patients. Returns ``{part: {recording name: record label}}``."""
    names = collections.defaultdict(dict)
    number = 1000

    def patients(prefix: str, count: int) -> list[str]:
        return [f"{prefix}{p:04d}" for p in range(count)]

    # part, split name, audio folder, annotation folder, patients, record labels
    groups = (
        ("train", "train", "train_wav", "train_json", patients("6500", 12), _TRAIN_LABELS),
        ("intra", "test_intra", "test_wav", "test_json/intra_test_json", patients("6500", 6), _INTRA_LABELS),
        ("inter", "test_inter", "test_wav", "test_json/inter_test_json", patients("7700", 4), _INTER_LABELS),
    )
    for part, split, audio_folder, annotation_folder, patient_ids, labels in groups:
        for patient in patient_ids:
            for label in labels:
                number += 1
                if part in parts:
                    name = _sprsound_recording(root / audio_folder, root / annotation_folder, patient, number, label)
                    names[split][name] = label
    return names


def test_sprsound_official_layout_trains_on_the_train_part_and_tests_intra_and_inter_apart(tmp_path):
    root = tmp_path / "sprsound"
    names = _sprsound_layout(root)
    # The release also ships example/ (copies of training recordings with their annotations) and test_clip/
    # (unannotated event clips); neither may duplicate, drop or pollute the official parts.
    (root / "example").mkdir()
    for name in list(names["train"])[:2]:
        shutil.copy(root / "train_wav" / f"{name}.wav", root / "example")
        shutil.copy(root / "train_json" / f"{name}.json", root / "example")
    write_wav(root / "test_clip" / f"{next(iter(names['test_inter']))}_0.wav", tone(0.1, SR), SR)

    table = scan_corpus("sprsound", root)
    assert collections.Counter(table.records["official_split"]) == {"train": 60, "test_intra": 18, "test_inter": 12}
    assert not table.report.unlabelled and table.report.complete
    assert table.report.notes == ["ignored folders outside the official layout: example, test_clip"]

    task = load_task("S1", tmp_path)
    assert task.split_mode == "official" and task.test_splits == ("test_inter", "test_intra")
    frame = task.table.assign(name=task.table["file"].str[:-4])
    by_split = {s: set(frame.loc[frame["split"] == s, "name"]) for s in ("train", "validation", *task.test_splits)}
    usable = {part: {n for n, label in labels.items() if label != "Poor Quality"} for part, labels in names.items()}
    assert by_split["test_intra"] == usable["test_intra"] and by_split["test_inter"] == usable["test_inter"]
    assert by_split["train"] | by_split["validation"] == usable["train"]
    assert all(r.label == int(names[r.split if r.split.startswith("test") else "train"][r.name] != "Normal")
               for r in frame.itertuples())
    assert by_split["validation"] and by_split["train"]
    patients = frame.groupby("subject_id")["split"].agg(set)
    # Validation is drawn by patient from the train part; intra-test patients are train patients by design.
    assert not any({"train", "validation"} <= s for s in patients)
    assert all(s <= {"train", "validation", "test_intra"} for p, s in patients.items() if p.startswith("6500"))
    assert all(s == {"test_inter"} for p, s in patients.items() if p.startswith("7700"))
    assert len(check_task_splits(task)) == len(task.spec.protocol.seeds)

    events = load_task("S2", tmp_path)
    assert events.split_mode == "official"
    assert collections.Counter(events.table["split"])["test_inter"] == 2 * 12  # two events per recording
    event_patients = events.table.groupby("subject_id")["split"].agg(set)
    assert not any({"train", "validation"} <= s for s in event_patients)
    assert all(s == {"test_inter"} for p, s in event_patients.items() if p.startswith("7700"))


def test_sprsound_with_one_part_falls_back_to_a_labelled_patient_grouped_split(tmp_path):
    task = load_task("S1", shared_path(), verify_audio=False)  # ../shared has only the test part
    assert task.split_mode == "patient-grouped-fallback" and task.test_splits == ("test",)
    assert any("only the SPRSound test part is present" in n for n in task.report.notes)
    assert set(task.table["split"]) == {"train", "validation", "test"}
    assert (task.table.groupby("subject_id")["split"].nunique() == 1).all()

    _sprsound_layout(tmp_path / "sprsound", parts=("train",))
    train_only = load_task("S1", tmp_path)
    assert train_only.split_mode == "patient-grouped-fallback"
    assert any("only the SPRSound train part is present" in n for n in train_only.report.notes)
    assert set(train_only.table["split"]) == {"train", "validation", "test"}


def test_an_absent_test_part_is_refused_before_any_embedding_is_extracted(tmp_path):
    from resp_audio_hf.extraction import AudioEncoder

    _sprsound_layout(tmp_path / "sprsound", parts=("train", "intra"))
    task = load_task("S1", tmp_path)
    assert task.split_mode == "official"
    message = r"S1: no available recording in the test_inter split.*Split mode 'official'; nothing was extracted"
    with pytest.raises(ValueError, match=message):
        check_task_splits(task)
    with pytest.raises(ValueError, match=message):
        evaluate_task(None, task)  # raised before the encoder is touched

    encoder = AudioEncoder.from_preset("tiny-m2d")
    cache = tmp_path / "cache"
    arguments = BenchmarkArguments(preset="tiny-m2d", tasks="S1,S2", data_root=tmp_path, cache_dir=cache, quiet=True)
    result = run_benchmark(encoder, arguments)
    assert set(result.failed) == {"S1", "S2"} and not result.tasks
    assert "test_inter split" in result.failed["S1"].error and "test_inter split" in result.failed["S2"].error
    assert not cache.exists() or not any(cache.rglob("*.npy"))


def test_a_test_part_with_a_single_class_is_refused_before_any_embedding_is_extracted(tmp_path):
    from resp_audio_hf.extraction import AudioEncoder

    names = _sprsound_layout(tmp_path / "sprsound")
    for name, label in names["test_inter"].items():  # the inter-patient part keeps its Normal recordings only
        if label != "Normal":
            (tmp_path / "sprsound" / "test_wav" / f"{name}.wav").unlink()
            (tmp_path / "sprsound" / "test_json" / "inter_test_json" / f"{name}.json").unlink()
    task = load_task("S1", tmp_path)
    assert task.split_mode == "official"
    message = (
        r"S1: the test_inter split has classes \{Normal: 4, Adventitious: 0\}; AUROC is undefined for a single "
        r"class; cannot evaluate\. Split mode 'official'; nothing was extracted"
    )
    with pytest.raises(ValueError, match=message):
        check_task_splits(task)
    with pytest.raises(ValueError, match=message):
        evaluate_task(None, task)  # raised before the encoder is touched

    cache = tmp_path / "cache"
    arguments = BenchmarkArguments(preset="tiny-m2d", tasks="S1,S2", data_root=tmp_path, cache_dir=cache, quiet=True)
    result = run_benchmark(AudioEncoder.from_preset("tiny-m2d"), arguments)
    assert set(result.failed) == {"S1", "S2"} and not result.tasks
    assert "the test_inter split has classes {Normal: 4, Adventitious: 0}" in result.failed["S1"].error
    assert "the test_inter split has classes {Normal: 8, Adventitious: 0}" in result.failed["S2"].error  # 2 events
    assert not cache.exists() or not any(cache.rglob("*.npy"))


def _task_of(spec, labels: dict[str, list]):
    """A task whose table has the given labels per split (``fold`` = one subject per row for cross-validation)."""
    import pandas as pd

    from resp_audio_hf.data.build_report import BuildReport

    rows = [(split, label) for split, values in labels.items() for label in values]
    table = pd.DataFrame({
        "audio": [f"/data/{i}.wav" for i in range(len(rows))],
        "split": [split for split, _ in rows],
        "label": [label for _, label in rows],
        "fold": [str(i) for i in range(len(rows))],
    })
    return TaskData(spec, table, BuildReport(spec.task_id, "/data", n_usable=len(rows)))


@pytest.mark.parametrize(
    "task_id, labels, message",
    [
        ("S1", {"train": [0] * 6, "validation": [0, 1], "test": [0, 1]},
         r"S1: the train split has classes \{Normal: 6, Adventitious: 0\}; the probe cannot learn from a single class"),
        ("S1", {"train": [0, 1], "validation": [1, 1], "test": [0, 1]},
         (r"S1: the validation split has classes \{Normal: 0, Adventitious: 2\}; the probe cannot choose its "
          r"checkpoint \(by AUROC\) on a single class")),
        ("ICBHI-cycle", {"train": [0, 1, 2, 3], "validation": [0, 1], "test": [1, 2, 3, 3]},
         (r"ICBHI-cycle: the test split has classes \{normal: 0, crackle: 1, wheeze: 1, both: 2\}; the ICBHI score "
          r"needs both 'normal' and abnormal labels")),
        ("ICBHI-cycle", {"train": [0, 1, 2, 3], "validation": [0, 1], "test": [0, 0]},
         r"ICBHI-cycle: the test split has classes \{normal: 2, crackle: 0, wheeze: 0, both: 0\}; AUROC is undefined"),
        ("T13", {"all": [3.1] * 20}, r"T13: every target of the train split of fold \d+ is 3\.1"),
    ],
)
def test_splits_whose_labels_cannot_be_probed_or_scored_are_refused_naming_the_counts(task_id, labels, message):
    task = _task_of(TASKS[task_id], labels)
    with pytest.raises(ValueError, match=message + r".*Split mode 'default'; nothing was extracted"):
        check_task_splits(task)


def test_a_class_absent_from_a_test_split_with_two_others_is_allowed():
    task = _task_of(TASKS["ICBHI-cycle"], {"train": [0, 1, 2, 3], "validation": [0, 2], "test": [0, 1, 1]})
    assert len(check_task_splits(task)) == len(TASKS["ICBHI-cycle"].protocol.seeds)


# --------------------------------------------------------------------------------------------------
# Scoring several test splits, and the reports
# --------------------------------------------------------------------------------------------------


def _split_table(n=300, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (0.8 * np.outer(2 * y - 1, np.ones(8)) + rng.standard_normal((n, 8))).astype(np.float32)
    split = np.array(["train"] * 150 + ["validation"] * 50 + ["test_inter"] * 60 + ["test_intra"] * 40, dtype=object)
    x[split == "test_intra"] *= np.array([1, -1] * 4, dtype=np.float32)  # a shifted domain: a different score
    table = pd.DataFrame({"label": y, "split": split, "subject_id": [str(i) for i in range(n)]})
    return table, x, y


def test_each_test_split_is_scored_on_its_own():
    table, x, y = _split_table()
    spec = with_protocol(TASKS["S1"], epochs=6, seeds=(0, 1))
    result = score_task(
        spec, table, x, split_mode="official", test_splits=("test_inter", "test_intra"), data_report="synthetic"
    )
    # Reference: the same probes tested on both splits together, AUROC of each split by scikit-learn.
    runs = make_runs(spec, table, spec.protocol, ("test_inter", "test_intra"))
    outcomes = train_linear_probes(x, y, runs, spec.protocol, "classification", 2)
    for name in ("test_inter", "test_intra"):
        expected = []
        for run, outcome in zip(runs, outcomes):
            mask = table["split"].to_numpy()[run.test] == name
            expected.append(roc_auc_score(y[run.test][mask], outcome.test_predictions[mask, 1]))
        assert result.test_results[name]["auroc"].scores == pytest.approx(expected, abs=1e-12)
    inter = result.test_results["test_inter"]["auroc"]
    assert result.mean == inter.mean and result.scores == inter.scores and result.split_mode == "official"
    assert [r.test for r in result.runs] == inter.scores
    assert abs(inter.mean - result.test_results["test_intra"]["auroc"].mean) > 0.05

    table_md = markdown_table(BenchmarkResult("m", tasks={"S1": result}))
    intra = result.test_results["test_intra"]["auroc"]
    assert f"| S1 (test_inter) | {spec.name} [split mode: official] | AUROC ↑ | {inter.mean:.3f} ± " in table_md
    assert f"| S1 (test_intra) | {spec.name} [split mode: official] | AUROC ↑ | {intra.mean:.3f} ± " in table_md


def test_icbhi_scores_per_test_split_against_counting_by_hand_and_absent_classes_named_per_split():
    import pandas as pd

    rng = np.random.default_rng(5)
    n = 400
    split = np.array(["train"] * 200 + ["validation"] * 60 + ["test"] * 80 + ["test_b"] * 60, dtype=object)
    y = rng.integers(0, 4, n)
    y[split == "test_b"] = rng.integers(0, 3, 60)  # no "both" cycle in test_b
    x = (1.2 * np.eye(4)[y] @ rng.standard_normal((4, 6)) + rng.standard_normal((n, 6))).astype(np.float32)
    table = pd.DataFrame({"label": y, "split": split, "subject_id": [str(i) for i in range(n)]})
    spec = with_protocol(TASKS["ICBHI-cycle"], epochs=5, seeds=(0, 1))
    result = score_task(spec, table, x, test_splits=("test", "test_b"))
    assert result.absent_classes == {"test_b": ["both"]}
    runs = make_runs(spec, table, spec.protocol, ("test", "test_b"))
    outcomes = train_linear_probes(x, y, runs, spec.protocol, "classification", 4)
    for name in ("test", "test_b"):
        for r, (run, outcome) in enumerate(zip(runs, outcomes)):
            mask = table["split"].to_numpy()[run.test] == name
            truth, predicted = y[run.test][mask], outcome.test_predictions[mask].argmax(axis=1)
            normal_right = sum(1 for t, p in zip(truth, predicted) if t == 0 and p == 0)
            abnormal_right = sum(1 for t, p in zip(truth, predicted) if t != 0 and p == t)
            se, sp = abnormal_right / sum(truth != 0), normal_right / sum(truth == 0)
            metrics = result.test_results[name]
            assert metrics["sensitivity"].scores[r] == pytest.approx(se)
            assert metrics["specificity"].scores[r] == pytest.approx(sp)
            assert metrics["icbhi_score"].scores[r] == pytest.approx((se + sp) / 2)
    assert result.mean == result.test_results["test"]["icbhi_score"].mean


# --------------------------------------------------------------------------------------------------
# ICBHI 2017 challenge: 4-class respiratory cycles
# --------------------------------------------------------------------------------------------------

# (recording, official split, cycles as the database writes them: start end crackle wheeze)
_ICBHI_RECORDINGS = {
    **{
        f"{300 + p}_1b1_Al_sc_Meditron": (
            "train",
            ["0.1\t0.9\t0\t0", "0.9\t1.6\t1\t0", "1.6\t2.3\t0\t1", "2.3\t2.9\t1\t1"],
        )
        for p in range(10)
    },
    **{
        f"{400 + p}_1b1_Ar_sc_Litt3200": ("test", ["0.0\t0.8\t0\t0", "0.8\t1.5\t1\t0", "1.5\t2.0\t0\t1"])
        for p in range(4)
    },
    "300_2b3_Pr_mc_AKGC417L": ("test", ["0.2\t1.0\t1\t1", "1.0\t1.0\t0\t0"]),  # patient 300 on both sides
    "310_1b1_Tc_sc_Meditron": ("train", None),  # listed, but no annotation file
}
_CYCLE_LABEL = {"0 0": 0, "1 0": 1, "0 1": 2, "1 1": 3}  # normal, crackle, wheeze, both


def _cycle_tone(label: int, seconds: float, seed: int):
    frequency = (150.0, 600.0, 1200.0, 2000.0)[label]
    return tone(seconds, SR, frequency, seed=seed)


def _icbhi_layout(root: Path) -> Path:
    db = root / "icbhi" / "ICBHI_final_database"
    db.mkdir(parents=True)
    lines = []
    for seed, (recording, (split, cycles)) in enumerate(_ICBHI_RECORDINGS.items()):
        lines.append(f"{recording}\t{split}")
        if cycles is None:
            write_wav(db / f"{recording}.wav", tone(3.0, SR, seed=seed), SR)
            continue
        audio = np.zeros(int(3.0 * SR))
        for line in cycles:
            start, end, crackle, wheeze = line.split("\t")
            a, b = int(float(start) * SR), int(float(end) * SR)
            audio[a:b] = _cycle_tone(_CYCLE_LABEL[f"{crackle} {wheeze}"], (b - a) / SR, seed)[: b - a]
        write_wav(db / f"{recording}.wav", audio, SR)
        (db / f"{recording}.txt").write_text("\n".join(cycles) + "\n")
    lines.append("226_1b1_Pl_sc_Meditron\ttest")  # in the official list, never released
    (db / "ICBHI_challenge_train_test.txt").write_text("\n".join(lines) + "\n")
    return db


def test_icbhi_cycle_task_cuts_every_annotated_cycle_with_its_class_and_official_split(tmp_path, opera):
    from sklearn.model_selection import train_test_split

    from resp_audio_hf.extraction import FileClipDataset

    _icbhi_layout(tmp_path)
    task = load_task("ICBHI-cycle", tmp_path, opera=opera)
    table = task.table
    assert task.split_mode == "official" and task.test_splits == ("test",)
    expected_rows = []
    for recording, (_split, cycles) in _ICBHI_RECORDINGS.items():
        for number, line in enumerate(cycles or []):
            start, end, crackle, wheeze = line.split("\t")
            if float(end) > float(start):
                expected_rows.append(
                    (f"{recording}.wav#{number}", _CYCLE_LABEL[f"{crackle} {wheeze}"], float(start), float(end))
                )
    assert list(zip(table["file"], table["label"], table["start_s"], table["end_s"])) == expected_rows
    assert len(table) == 10 * 4 + 4 * 3 + 1
    assert collections.Counter(table["label"]) == {0: 14, 1: 14, 2: 14, 3: 11}
    # The challenge's list decides train/test; validation = a fifth of the listed training patients.
    # The listed training patients include 310, whose annotation file is absent: the draw only reads the list.
    train_patients = [str(300 + p) for p in range(11)]
    validation = set(train_test_split(train_patients, test_size=0.2, random_state=1337)[1])
    assert len(validation) == 3
    for row in table.itertuples():
        recording = row.file.split(".wav#")[0]
        official = _ICBHI_RECORDINGS[recording][0]
        expected = "validation" if official == "train" and row.subject_id in validation else official
        assert row.split == expected and row.subject_id == recording.split("_")[0]
    report = task.report
    assert report.missing == ["310_1b1_Tc_sc_Meditron.txt"]
    assert report.excluded["cycle with end <= start"] == ["300_2b3_Pr_mc_AKGC417L.wav#1"]
    assert "226_1b1_Pl_sc_Meditron" in sum(report.excluded.values(), [])
    assert any("patient(s) 300 have recordings on both sides" in note for note in report.notes)
    assert "metadata: " in report.notes[0] and "ICBHI_final_database" in report.notes[0]  # the corpus folder's list

    # Every cycle is decoded as its own segment.
    clips = FileClipDataset(table["audio"], SR, starts=table["start_s"], ends=table["end_s"])
    for i in (0, 5, len(table) - 1):
        assert abs(len(clips[i]["audio"]) - (table["end_s"][i] - table["start_s"][i]) * SR) <= 1


def test_icbhi_cycle_task_end_to_end_reports_the_icbhi_score_sensitivity_and_specificity(tmp_path, opera):
    from resp_audio_hf.extraction import AudioEncoder

    _icbhi_layout(tmp_path)
    task = load_task("ICBHI-cycle", tmp_path, opera=opera)
    task = TaskData(with_protocol(task.spec, epochs=4, seeds=(0, 1)), task.table, task.report, task.split_mode)
    result = evaluate_task(AudioEncoder.from_preset("tiny-m2d"), task, progress=False)
    assert result.metric == "icbhi_score" and result.split_mode == "official"
    metrics = result.test_results["test"]
    assert set(metrics) == {"icbhi_score", "sensitivity", "specificity", "auroc"}
    for run, score in zip(result.runs, metrics["icbhi_score"].scores):
        values = run.test_metrics["test"]
        assert score == pytest.approx((values["sensitivity"] + values["specificity"]) / 2)
        assert run.test == score
    assert result.counts["per_split"]["test"] == 4 * 3 + 1

    paths = write_reports(BenchmarkResult("tiny", tasks={"ICBHI-cycle": result}), tmp_path / "out")
    md = paths["markdown"].read_text()
    assert f"| ICBHI-cycle | {task.spec.name} [split mode: official] | ICBHI SCORE ↑ | {result.mean:.3f} ± " in md
    sensitivity = metrics["sensitivity"]
    assert f"- ICBHI-cycle: Se {sensitivity.mean:.3f} ± {sensitivity.std:.3f}, Sp " in md
    saved = json.loads(paths["json"].read_text())["tasks"]["ICBHI-cycle"]
    assert saved["split_mode"] == "official" and saved["test_results"]["test"]["auroc"] == asdict(metrics["auroc"])
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_icbhi_recording_without_audio_is_skipped_once_naming_its_cycles(tmp_path, opera, caplog):
    """A recording whose annotation is present but whose audio is not: one warning and one skipped_recordings entry
    naming the recording and its number of cycles, not one per cycle."""
    from resp_audio_hf.extraction import AudioEncoder

    db = _icbhi_layout(tmp_path)
    (db / "301_1b1_Al_sc_Meditron.wav").unlink()
    (db / "401_1b1_Ar_sc_Litt3200.wav").unlink()
    with caplog.at_level(logging.WARNING, logger="resp_audio_hf"):
        arguments = BenchmarkArguments(
            preset="tiny-m2d", tasks="ICBHI-cycle", data_root=tmp_path, opera_dir=shared_path("opera"),
            cache_dir=tmp_path / "cache", epochs=2, seeds="0", quiet=True,
        )
        result = run_benchmark(AudioEncoder.from_preset("tiny-m2d"), arguments)
    skipped = result.tasks["ICBHI-cycle"].skipped_recordings
    by_path = {entry["path"]: entry["reason"] for entry in skipped}
    assert by_path == {
        "310_1b1_Tc_sc_Meditron.txt": f"not found under {tmp_path / 'icbhi'}",
        "301_1b1_Al_sc_Meditron.wav": f"not found under {tmp_path / 'icbhi'}; its 4 annotated segment(s) "
        "(301_1b1_Al_sc_Meditron.wav#0 to 301_1b1_Al_sc_Meditron.wav#3) are not used",
        "401_1b1_Ar_sc_Litt3200.wav": f"not found under {tmp_path / 'icbhi'}; its 3 annotated segment(s) "
        "(401_1b1_Ar_sc_Litt3200.wav#0 to 401_1b1_Ar_sc_Litt3200.wav#2) are not used",
    }
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ICBHI-cycle: skipped")]
    assert sorted(logged) == sorted(f"ICBHI-cycle: skipped {path}: {reason}" for path, reason in by_path.items())
    assert result.tasks["ICBHI-cycle"].counts["total"] == 53 - 4 - 3
    assert "ICBHI-cycle: 46 usable; 3 missing (e.g. 310_1b1_Tc_sc_Meditron.txt; 8 rows counting each segment)" in (
        result.tasks["ICBHI-cycle"].data_report
    )


def test_icbhi_cycle_task_names_a_malformed_annotation_line(tmp_path, opera):
    db = _icbhi_layout(tmp_path)
    (db / "301_1b1_Al_sc_Meditron.txt").write_text("0.1\t0.9\t0\t0\n0.9\t1.6\t2\t0\n")
    with pytest.raises(ValueError, match=r"301_1b1_Al_sc_Meditron\.txt, line 2: .*flags must be 0 or 1"):
        load_task("ICBHI-cycle", tmp_path, opera=opera)


@pytest.mark.skipif(
    not os.environ.get("RESP_AUDIO_HF_ICBHI_ANNOTATIONS"),
    reason="set RESP_AUDIO_HF_ICBHI_ANNOTATIONS to a folder with the 920 ICBHI annotation files to run this check",
)
def test_all_920_real_icbhi_annotation_files(tmp_path, opera):
    (tmp_path / "icbhi").symlink_to(Path(os.environ["RESP_AUDIO_HF_ICBHI_ANNOTATIONS"]).resolve())
    task = load_task("ICBHI-cycle", tmp_path, opera=opera, verify_audio=False)
    table = task.table
    # Rocha et al. 2019 (the database paper): 6,898 cycles; 3,642 normal, 1,864 crackles, 886 wheezes, 506 both;
    # the official split puts 4,142 in train and 2,756 in test.
    assert len(table) == 6898 and not [m for m in task.report.missing if m.endswith(".txt")]
    assert task.counts()["per_label"] == {"normal": 3642, "crackle": 1864, "wheeze": 886, "both": 506}
    split = collections.Counter(table["split"])
    assert split["train"] + split["validation"] == 4142 and split["test"] == 2756
