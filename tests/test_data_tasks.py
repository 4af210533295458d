"""OPERA task tables from OPERA's real split files (../shared/data/opera): counts, labels, splits.

The expected numbers are recomputed here from the raw files with plain Python/numpy (independently of
the package), and checked against OPERA's published sample counts (T7 828, T10 234, T11 504).
"""

import collections
import math

import numpy as np
import pytest
from _data_helpers import REPO_ROOT, shared_path

from resp_audio_hf.data import (
    CorpusNotFoundError,
    OperaFiles,
    load_task,
    resolve_task_ids,
)
from resp_audio_hf.data.probe_protocols import PROBE_PROTOCOLS, protocol_table
from resp_audio_hf.data.tasks import OPERA_TASK_IDS, TASKS, get_task_spec


@pytest.fixture(scope="module")
def opera():
    return OperaFiles(local_dirs=(shared_path("opera"),), offline=True)


@pytest.fixture(scope="module")
def data_root():
    return shared_path()


def _raw_icbhi():
    base = shared_path("opera", "datasets", "icbhi")
    diagnosis = dict(
        line.split() for line in (base / "ICBHI_Challenge_diagnosis.txt").read_text().splitlines() if line.strip()
    )
    listed = [
        line.split() for line in (base / "ICBHI_challenge_train_test.txt").read_text().splitlines() if line.strip()
    ]
    return diagnosis, listed


def test_t7_icbhi_copd_vs_healthy_has_opera_counts(opera, data_root):
    task = load_task("T7", data_root, opera=opera, require_audio=False)
    diagnosis, listed = _raw_icbhi()
    expected = {rec: split for rec, split in listed if diagnosis[rec.split("_")[0]] in ("COPD", "Healthy")}
    table = task.table
    assert len(table) == 828 == len(expected)
    assert sorted(table["file"].str.removesuffix(".wav")) == sorted(expected)
    labels = {r.file.removesuffix(".wav"): r.label for r in table.itertuples()}
    assert all(labels[rec] == (diagnosis[rec.split("_")[0]] == "COPD") for rec in expected)
    assert collections.Counter(table["label"]) == {1: 793, 0: 35}
    # Official test list kept; 20 % of the official training rows, stratified, become validation.
    test = {r.file.removesuffix(".wav") for r in table.itertuples() if r.split == "test"}
    assert test == {rec for rec, split in expected.items() if split == "test"}
    n_train_official = sum(split == "train" for split in expected.values())
    counts = collections.Counter(table["split"])
    assert counts["validation"] == math.ceil(0.2 * n_train_official)
    assert counts["train"] + counts["validation"] == n_train_official
    val = table[table["split"] == "validation"]
    train = table[table["split"] == "train"]
    assert abs(val["label"].mean() - train["label"].mean()) < 0.02  # stratified
    excluded = task.report.excluded
    assert len(excluded["diagnosis other than COPD/Healthy (T7 filter)"]) == 92
    assert excluded["listed in ICBHI_challenge_train_test.txt but not part of the released database"] == [
        "226_1b1_Pl_sc_Meditron"
    ]


def test_t10_kauh_obstructive_vs_healthy_has_opera_counts(opera, data_root):
    task = load_task("T10", data_root, opera=opera, require_audio=False)
    raw_labels = np.load(shared_path("opera", "feature", "kauh_eval", "labels_both.npy"))
    raw_split = np.load(shared_path("opera", "feature", "kauh_eval", "train_test_split.npy"))
    table = task.table
    assert len(table) == 234 == len(raw_labels)
    assert list(table["label"]) == [0 if y == "healthy" else 1 for y in raw_labels]
    # OPERA's train_test_split_from_list: everything that is not "train" is tested (its log: 42 obstructive + 30 healthy).
    test = table[table["split"] == "test"]
    assert collections.Counter(test["label"]) == {1: 42, 0: 30}
    assert list(table["split"] == "test") == list(raw_split != "train")
    assert (table["split"] == "validation").sum() == math.ceil(0.1 * (raw_split == "train").sum())
    # That file (OPERA's published T10) splits the filter variants of one patient across train and test;
    # T10-subject uses OPERA's subject-disjoint file instead.
    assert set(test["subject_id"]) & set(table.loc[table["split"] != "test", "subject_id"])
    disjoint = load_task("T10-subject", data_root, opera=opera, require_audio=False).table
    raw_disjoint = np.load(shared_path("opera", "feature", "kauh_eval", "train_test.npy"))
    assert list(disjoint["split"] == "test") == list(raw_disjoint == "test") and (raw_disjoint == "test").sum() == 78
    assert not set(disjoint.loc[disjoint["split"] == "test", "subject_id"]) & set(
        disjoint.loc[disjoint["split"] != "test", "subject_id"]
    )


def test_t11_respiratory_tr_has_opera_counts_and_patient_level_split(opera, data_root):
    task = load_task("T11", data_root, opera=opera, require_audio=False)
    raw_labels = np.load(shared_path("opera", "feature", "copd_eval", "labels.npy"))
    table = task.table
    assert len(table) == 504
    assert list(table["label"]) == raw_labels.tolist()
    assert collections.Counter(table["split"]) == {"train": 312, "validation": 84, "test": 108}
    per_patient = table.groupby("subject_id")["split"].nunique()
    assert (per_patient == 1).all()
    # Labels agree with the Respiratory@TR label sheet (COPD0..COPD4 per patient).
    sheet = {}
    for line in (
        shared_path("opera", "datasets", "copd", "Labels.csv").read_text(encoding="utf-8-sig").splitlines()[1:]
    ):
        patient, diagnosis = line.split(",")[:2]
        sheet[patient] = int(diagnosis[-1])
    assert all(sheet[r.subject_id] == r.label for r in table.itertuples())


def test_missing_audio_is_reported_by_name_not_dropped(opera, data_root):
    task = load_task("T11", data_root, opera=opera, require_audio=False)
    assert task.available.empty
    assert len(task.report.missing) == 504 and "H045_L5.wav" in task.report.missing
    assert "504 missing" in task.report.summary()


def test_absent_corpus_folder_is_a_clear_error(opera, data_root):
    with pytest.raises(CorpusNotFoundError) as info:
        load_task("T10", data_root, opera=opera)
    message = str(info.value)
    assert "KAUH" in message and "data.mendeley.com" in message and str(data_root) in message


# What OPERA's src/benchmark/linear_eval.py (pinned commit 3622310) runs, read off its code: per call of
# linear_evaluation_<name>, the epochs / batch size / L2 / ModelCheckpoint(every_n_epochs) / EarlyStopping it uses,
# the __main__ block's arguments (--l2_strength 1e-5 by default; MMlung and NoseMic pass 1e-1) and the seeds (range(5)
# for hold-out tasks; one np/torch seed 0 for the leave-one-out regressions). The learning rate is LinearHead's and
# LinearHeadR's default, lr=1e-4 (src/model/models_eval.py): no call passes lr to the head, so the lr=1e-1 of the
# spirometry (MMlung) call is never used.
_OPERA_HEAD_DEFAULT_LR = 1e-4
_OPERA_CALLS = {
    # task: (function, epochs, batch size, l2, checkpoint every n epochs, early stopping (patience, min delta), seeds)
    "T1": ("coviduk", 64, 64, 1e-5, 1, None, 5),
    "T2": ("coviduk", 64, 64, 1e-5, 1, None, 5),
    "T3": ("covid19sounds", 64, 64, 1e-5, 1, None, 5),  # epochs and batch size: the function's defaults
    "T4": ("covid19sounds", 64, 64, 1e-5, 1, None, 5),
    "T5": ("coughvid", 64, 64, 1e-5, 1, None, 5),
    "T6": ("coughvid", 64, 64, 1e-5, 1, None, 5),
    "T7": ("icbhidisease", 64, 32, 1e-5, 1, None, 5),
    "T8": ("coswara", 64, 32, 1e-5, 1, None, 5),
    "T9": ("coswara", 64, 32, 1e-5, 1, None, 5),
    "T10": ("kauh", 50, 32, 1e-5, 5, None, 5),
    "T11": ("copd", 64, 32, 1e-5, 1, None, 5),  # batch size: the function's default
    "T12": ("ssbpr", 32, 64, 1e-5, 3, None, 5),  # batch size: the function's default
    **{f"T{n}": ("mmlung", 64, 64, 1e-1, 3, (5, 0.001), 1) for n in range(13, 19)},
    "T19": ("nosemic", 64, 64, 1e-1, 1, None, 1),
}


def test_every_task_takes_its_protocol_from_the_one_table():
    assert set(PROBE_PROTOCOLS) == set(TASKS)
    assert all(TASKS[t].protocol is PROBE_PROTOCOLS[t] for t in TASKS)


def test_protocol_table_matches_operas_code():
    for task_id, (name, epochs, batch, l2, every, stopping, n_seeds) in _OPERA_CALLS.items():
        protocol = PROBE_PROTOCOLS[task_id]
        assert protocol.learning_rate == _OPERA_HEAD_DEFAULT_LR, task_id
        assert (protocol.epochs, protocol.batch_size, protocol.l2_strength) == (epochs, batch, l2), (task_id, name)
        assert protocol.checkpoint_every == every, task_id
        patience = (protocol.early_stopping_patience, protocol.early_stopping_min_delta)
        assert patience == (stopping or (None, 0.0)), task_id
        assert protocol.seeds == tuple(range(n_seeds)), task_id
        assert (protocol.lr_decay, protocol.grad_clip) == (0.97, 1.0)  # DecayLearningRate, gradient_clip_val
    # The variants keep their OPERA task's protocol.
    for variant, original in (("T8-random", "T8"), ("T9-random", "T9"), ("T10-subject", "T10")):
        assert PROBE_PROTOCOLS[variant] == PROBE_PROTOCOLS[original]
    # Leave-one-out inner validation: train_test_split(test_size=0.11 / 0.2, random_state=42), not stratified.
    assert all(PROBE_PROTOCOLS[f"T{n}"].inner_validation_fraction == 0.11 for n in range(13, 19))
    assert PROBE_PROTOCOLS["T19"].inner_validation_fraction == 0.2
    assert all(PROBE_PROTOCOLS[t].inner_validation_seed == 42 for t in ("T13", "T19"))


def test_readme_states_the_protocol_table():
    assert protocol_table() in (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_registry_covers_opera_tasks_with_protocol_constants():
    assert resolve_task_ids("all")[:19] == list(OPERA_TASK_IDS) and {"S1", "S2"} <= set(resolve_task_ids("all"))
    assert resolve_task_ids("t7, T10,sprsound-record") == ["T7", "T10", "S1"]
    with pytest.raises(KeyError, match="Unknown task"):
        get_task_spec("T42")
    assert TASKS["T10"].protocol.epochs == 50 and TASKS["T10"].protocol.checkpoint_every == 5
    assert all(TASKS[t].protocol.epochs == 64 for t in ("T1", "T5", "T7", "T11"))
    assert all(TASKS[t].protocol.seeds == (0, 1, 2, 3, 4) and TASKS[t].metric == "auroc" for t in OPERA_TASK_IDS[:12])
    assert all(TASKS[f"T{i}"].evaluation == "loocv" and TASKS[f"T{i}"].metric == "mae" for i in range(13, 19))
    assert TASKS["T19"].evaluation == "loso"
    assert TASKS["T7"].protocol.learning_rate == 1e-4 and TASKS["T7"].protocol.l2_strength == 1e-5


def test_covid_cough_split_is_stratified_by_label_and_source_and_deterministic(shared_data):
    import json

    from resp_audio_hf.data.corpora.covid19_cough import covid_cough_split
    from resp_audio_hf.data.tasks import load_task

    task = load_task("COVID-cough", shared_data, verify_audio=False)
    table = task.table
    listing = json.loads((shared_data / "covid19-cough" / "metadata.json").read_text())
    assert len(table) == len(listing) == 1324  # every listed recording, decodable or not
    assert table.set_index("file")["label"].to_dict() == {e["filename"]: int(e["covid19"]) for e in listing}
    # Each (label, source) stratum is split 60/20/20 to within one recording per split.
    for (label, source), stratum in table.groupby(["label", "source"]):
        counts = stratum["split"].value_counts()
        n = len(stratum)
        assert abs(counts.get("test", 0) - 0.2 * n) <= 1 and abs(counts.get("validation", 0) - 0.2 * n) <= 1, (
            label, source, counts.to_dict())
    # Deterministic, independent of the decode check and of the order of the listing.
    again = load_task("COVID-cough", shared_data, verify_audio=True).table
    assert again.set_index("file")["split"].to_dict() == table.set_index("file")["split"].to_dict()
    names = [e["filename"] for e in listing]
    labels = [int(e["covid19"]) for e in listing]
    sources = [e["source"] for e in listing]
    shuffled = covid_cough_split(names[::-1], labels[::-1], sources[::-1])
    assert shuffled == table.set_index("file")["split"].to_dict()
    assert covid_cough_split(names, labels, sources, seed=1) != shuffled
    assert task.split_mode == "default" and task.test_splits == ("test",)
