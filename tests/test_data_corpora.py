"""Corpus builders on their download layouts (synthetic miniatures, plus the real SPRSound test part),
and the tasks built on them (SSBPR, MMlung LOOCV, NoseMic LOSO, COVID-19 Sounds, SPRSound)."""

import collections
import csv
import json

import numpy as np
import pandas as pd
import pytest
from _data_helpers import shared_path, tone, write_wav

from resp_audio_hf.data import OperaFiles, build_corpus_dataset, load_task, scan_corpus
from resp_audio_hf.data.corpora.kauh import parse_kauh_filename
from resp_audio_hf.data.corpora.sprsound import parse_sprsound_filename

SR = 4000


def _wav(path, seed=0, seconds=0.5):
    return write_wav(path, tone(seconds, SR, 150 + 37 * (seed % 20), seed=seed), SR)


@pytest.fixture(scope="module")
def opera():
    return OperaFiles(local_dirs=(shared_path("opera"),), offline=True)


def test_icbhi_builder_follows_official_list_and_names_problem_files(tmp_path, opera):
    db = tmp_path / "icbhi" / "ICBHI_final_database"
    for n, name in enumerate(["101_1b1_Al_sc_Meditron", "103_2b2_Ar_mc_LittC2SE", "104_1b1_Al_sc_Litt3200"]):
        _wav(db / f"{name}.wav", n)
    (db / "102_1b1_Ar_sc_Meditron.wav").write_bytes(b"")  # corrupt: empty
    _wav(db / "999_1b1_Xx_sc_Unknown.wav", 9)  # not in the official list
    # Cycle annotations in the database's format (tab separated, start end crackle wheeze); 104 has none.
    (db / "101_1b1_Al_sc_Meditron.txt").write_text("0.036\t0.579\t0\t0\n0.579\t2.45\t1\t1\n")
    (db / "103_2b2_Ar_mc_LittC2SE.txt").write_text("0.2\t1.5\t0\t1\n\n")
    table = scan_corpus("icbhi", data_root=tmp_path, opera=opera)
    records = table.records.set_index("file")
    assert list(records.index) == ["101_1b1_Al_sc_Meditron", "103_2b2_Ar_mc_LittC2SE", "104_1b1_Al_sc_Litt3200"]
    assert (
        records.loc["103_2b2_Ar_mc_LittC2SE", "diagnosis"] == "Asthma"
        and records.loc["104_1b1_Al_sc_Litt3200", "diagnosis"] == "COPD"
    )
    assert (
        records.loc["101_1b1_Al_sc_Meditron", "official_split"] == "test"
        and records.loc["103_2b2_Ar_mc_LittC2SE", "subject_id"] == "103"
    )
    report = table.report
    assert [c["path"].endswith("102_1b1_Ar_sc_Meditron.wav") for c in report.corrupt] == [True]
    assert records.loc["101_1b1_Al_sc_Meditron", "cycles"] == [
        {"start_s": 0.036, "end_s": 0.579, "crackle": 0, "wheeze": 0},
        {"start_s": 0.579, "end_s": 2.45, "crackle": 1, "wheeze": 1},
    ]
    assert records.loc["103_2b2_Ar_mc_LittC2SE", "cycles"] == [
        {"start_s": 0.2, "end_s": 1.5, "crackle": 0, "wheeze": 1}
    ]
    assert records.loc["104_1b1_Al_sc_Litt3200", "cycles"] is None
    missing_audio = [m for m in report.missing if not m.endswith(".txt")]
    missing_annotations = [m for m in report.missing if m.endswith(".txt")]
    assert len(missing_audio) == 920 - 4 and "105_1b1_Tc_sc_Meditron" in missing_audio
    assert len(missing_annotations) == 920 - 2 and "104_1b1_Al_sc_Litt3200.txt" in missing_annotations
    assert [p.endswith("999_1b1_Xx_sc_Unknown.wav") for p in report.unlabelled] == [True]
    dataset = table.to_dataset_dict()
    assert set(dataset) == {"train", "test"} and dataset["test"].num_rows == 2
    samples = dataset["test"][0]["audio"].get_all_samples()
    assert samples.sample_rate == SR and samples.data.shape[-1] == int(0.5 * SR)


def test_t7_uses_audio_that_is_present_and_reports_the_rest(tmp_path, opera):
    db = tmp_path / "icbhi" / "ICBHI_final_database"
    _wav(db / "104_1b1_Al_sc_Litt3200.wav")  # COPD patient 104
    _wav(db / "103_2b2_Ar_mc_LittC2SE.wav")  # Asthma: excluded by T7's filter
    task = load_task("T7", tmp_path, opera=opera)
    assert list(task.available["file"]) == ["104_1b1_Al_sc_Litt3200.wav"] and task.available["label"].tolist() == [1]
    assert (
        len(task.report.missing) == 827
        and "103_2b2_Ar_mc_LittC2SE" in task.report.excluded["diagnosis other than COPD/Healthy (T7 filter)"]
    )
    assert len(task.table) == 828  # the split was drawn on OPERA's full list


def test_respiratory_tr_kauh_and_coughvid_builders(tmp_path, opera):
    _wav(tmp_path / "copd" / "RespiratoryDatabase@TR" / "H002_L1.wav")
    _wav(tmp_path / "copd" / "RespiratoryDatabase@TR" / "H007_R3.wav", 1)
    _wav(tmp_path / "copd" / "RespiratoryDatabase@TR" / "X999_L1.wav", 2)
    tr = scan_corpus("respiratory_tr", data_root=tmp_path, opera=opera)
    assert dict(zip(tr.records["file"], tr.records["copd_severity"])) == {"H002_L1": 4, "H007_R3": 3}
    assert tr.records.set_index("file").loc["H007_R3", "channel"] == "R3" and len(tr.report.unlabelled) == 1

    fields = parse_kauh_filename("DP110_Heart Failure + COPD,E W,P L L,62,M.wav")
    assert fields == {
        "subject_id": "110",
        "filter": "D",
        "diagnosis": "Heart Failure + COPD",
        "sound_type": "E W",
        "location": "P L L",
        "age": "62",
        "sex": "M",
    }

    import torch
    from torchcodec.encoders import AudioEncoder

    coughvid = tmp_path / "coughvid"
    (coughvid / "public_dataset").mkdir(parents=True)
    AudioEncoder(torch.tensor(tone(0.5, 16000))[None].float(), sample_rate=16000).to_file(
        str(coughvid / "public_dataset" / "aaaa-1.webm")
    )
    AudioEncoder(torch.tensor(tone(0.5, 16000, 300))[None].float(), sample_rate=16000).to_file(
        str(coughvid / "public_dataset" / "bbbb-2.ogg")
    )
    with open(coughvid / "metadata_compiled.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["uuid", "datetime", "cough_detected", "latitude", "longitude", "age", "gender", "status"])
        writer.writerow(["aaaa-1", "", "0.9", "", "", "30", "female", "healthy"])
        writer.writerow(["bbbb-2", "", "0.8", "", "", "41", "male", "COVID-19"])
        writer.writerow(["cccc-3", "", "0.7", "", "", "22", "male", "symptomatic"])
    cv = scan_corpus("coughvid", data_root=tmp_path, opera=opera)
    assert dict(zip(cv.records["file"], cv.records["status"])) == {"aaaa-1": "healthy", "bbbb-2": "COVID-19"}
    assert cv.report.missing == ["cccc-3"]
    decoded = cv.to_dataset_dict(sampling_rate=8000)["all"][1]["audio"].get_all_samples()
    assert decoded.sample_rate == 8000


def test_coswara_uk_covid_and_covid19_sounds_builders(tmp_path, opera):
    cos = tmp_path / "Coswara-Data"
    for n, (uid, _sex, _smoker) in enumerate([("u1", "male", "y"), ("u2", "female", "n")]):
        _wav(cos / "Extracted_data" / "20200424" / uid / "cough-shallow.wav", n)
        _wav(cos / "Extracted_data" / "20200424" / uid / "breathing-deep.wav", n + 5)
    pd.DataFrame(
        {
            "id": ["u1", "u2"],
            "g": ["male", "female"],
            "smoker": ["y", "n"],
            "covid_status": ["healthy", "positive_mild"],
        }
    ).to_csv(cos / "combined_data.csv", index=False)
    table = scan_corpus("coswara", data_root=tmp_path, opera=opera).records
    assert len(table) == 4 and set(table["modality"]) == {"cough-shallow", "breathing-deep"}
    assert table.set_index("file").loc["20200424/u2/cough-shallow.wav", "sex"] == "female"

    uk = tmp_path / "covidUK"
    _wav(uk / "audio" / "e1.wav")
    _wav(uk / "audio" / "c1.wav", 1)
    _wav(uk / "audio" / "e2.wav", 2)
    pd.DataFrame(
        {
            "participant_identifier": ["p1", "p2"],
            "exhalation_file_name": ["e1.wav", "e2.wav"],
            "cough_file_name": ["c1.wav", "c2.wav"],
        }
    ).to_csv(uk / "audio_metadata.csv", index=False)
    pd.DataFrame({"participant_identifier": ["p1", "p2"], "covid_test_result": ["Positive", "Negative"]}).to_csv(
        uk / "participant_metadata.csv", index=False
    )
    pd.DataFrame({"participant_identifier": ["p1", "p2"], "splits": ["train", "test"]}).to_csv(
        uk / "train_test_splits.csv", index=False
    )
    dataset, report = build_corpus_dataset("uk_covid19", data_root=tmp_path, opera=opera)
    assert set(dataset) == {"train", "test"} and dataset["train"].num_rows == 2 and report.missing == ["c2.wav"]
    assert sorted(dataset["train"]["modality"]) == ["cough", "exhalation"] and set(
        dataset["train"]["covid_test_result"]
    ) == {"Positive"}

    sounds = tmp_path / "covid19-sounds"
    rows = []
    for i in range(12):
        uid = f"user{i:02d}"
        split = 0 if i < 10 else (1 if i == 10 else 2)
        for kind in ("breath", "cough"):
            _wav(sounds / "0426_EN_used_task1" / uid / "2020-05-01" / f"{kind}.wav", i)
        rows.append(
            {
                "Uid": uid,
                "Folder Name": "2020-05-01",
                "Breath filename": "breath.wav",
                "Cough filename": "cough.wav",
                "split": split,
                "label": i % 2,
            }
        )
    pd.DataFrame(rows).to_csv(sounds / "data_0426_en_task1.csv", sep=";", index=False)
    t3 = load_task("T3", tmp_path, opera=opera).table
    # OPERA keeps every 5th training row (csv rows 0 and 5) and all validation/test rows.
    assert list(t3["subject_id"]) == ["user00", "user05", "user10", "user11"]
    assert list(t3["split"]) == ["train", "train", "validation", "test"] and all(
        t3["file"].str.endswith("/breath.wav")
    )


def test_ssbpr_task_excludes_prone_and_splits_60_20_20(tmp_path, opera):
    root = tmp_path / "SSBPR"
    n = 0
    for sex in ("female", "male"):
        for patient in range(5):
            for position in range(6):
                _wav(root / sex / f"p{patient}" / f"{sex[0]}{patient}-1-{position}.wav", n, seconds=0.2)
                n += 1
    task = load_task("T12", tmp_path, opera=opera)
    table = task.table
    assert len(table) == 50 and 5 not in set(table["label"])
    assert len(task.report.excluded["prone position (class 5) is not used by OPERA's T12"]) == 10
    counts = collections.Counter(table["split"])
    assert counts == {"train": 30, "validation": 10, "test": 10}
    for split in ("train", "validation", "test"):
        assert (
            sorted(collections.Counter(table.loc[table["split"] == split, "label"]).values())
            == [counts[split] // 5] * 5
        )


def test_mmlung_loocv_and_nosemic_loso_folds(tmp_path, opera):
    mm = tmp_path / "mmlung"
    rows = []
    for subject in range(1, 6):
        _wav(mm / "Trimmed Data from phone" / "9_3_deepbreath" / f"{subject}_deepbreaths.wav", subject)
        if subject != 3:
            _wav(mm / "Trimmed Data from phone" / "5_2_O_single" / f"{subject}_vowelo.wav", subject + 10)
        rows.append(
            {
                "Spirometry_file": f"./spirometry_ground_truth/{subject}_spiro.xls",
                "O_Single_file": f"./Trimmed Data from phone/5_2_O_single/{subject}_vowelo.wav",
                "Deep_Breath_file": f"./Trimmed Data from phone/9_3_deepbreath/{subject}_deepbreaths.wav",
                "FVC": 3.0 + subject / 10,
                "FEV1": 2.5 + subject / 10,
                "FEV1/FVC": 0.8 + subject / 100,
            }
        )
    pd.DataFrame(rows).to_excel(mm / "All_path.xlsx")
    t13 = load_task("T13", tmp_path, opera=opera).table
    assert list(t13["fold"]) == ["1", "2", "3", "4", "5"] and np.allclose(t13["label"], [3.1, 3.2, 3.3, 3.4, 3.5])
    t18 = load_task("T18", tmp_path, opera=opera)
    assert t18.table["audio"].notna().sum() == 4 and any("3_vowelo" in m for m in t18.report.missing)
    assert np.allclose(t18.available["label"], [0.81, 0.82, 0.84, 0.85])

    audio = tmp_path / "nosemic" / "audio"
    for n, (user, rate) in enumerate([("4", 12.5), ("4", 14.0), ("5", 16.0), ("1", 18.0)]):
        _wav(audio / f"{user}_a_{n}_{rate}.wav", n)
    t19 = load_task("T19", tmp_path, opera=opera).table
    assert dict(zip(t19["file"], t19["fold"])) == {
        "1_a_3_18.0.wav": "",
        "4_a_0_12.5.wav": "4",
        "4_a_1_14.0.wav": "4",
        "5_a_2_16.0.wav": "5",
    }


def _raw_sprsound_labels():
    labels = {}
    for folder in shared_path("sprsound", "test_json").iterdir():
        for path in folder.glob("*.json"):
            with open(path) as handle:
                labels[path.stem] = (json.load(handle)["record_annotation"], folder.name)
    return labels


def test_sprsound_builder_on_the_real_test_release():
    root = shared_path("sprsound")
    table = scan_corpus("sprsound", root)
    raw = _raw_sprsound_labels()
    records = table.records
    assert len(records) == 734 == len(raw) and table.report.complete and not table.report.unlabelled
    assert all(raw[r.file[:-4]][0] == r.record_label for r in records.itertuples())
    assert collections.Counter(records["official_split"]) == collections.Counter(
        "test_intra" if f.startswith("intra") else "test_inter" for _, f in raw.values()
    )
    wheezy = records[records["record_label"] == "CAS"].iloc[0]
    assert (
        wheezy["subject_id"] == parse_sprsound_filename(wheezy["file"])["subject_id"] == wheezy["file"].split("_")[0]
    )
    json_path = next(shared_path("sprsound", "test_json").glob(f"*/{wheezy['file'][:-4]}.json"))
    with open(json_path) as handle:
        raw_events = json.load(handle)["event_annotation"]
    assert [(e["start_ms"], e["end_ms"], e["type"]) for e in wheezy["events"]] == [
        (float(e["start"]), float(e["end"]), e["type"]) for e in raw_events
    ]
    dataset = table.to_dataset_dict()
    assert set(dataset) == {"test_intra", "test_inter"}
    samples = dataset["test_inter"][0]["audio"].get_all_samples()
    assert samples.sample_rate == 8000 and samples.data.shape[-1] > 8000


def test_sprsound_record_task_is_patient_grouped_and_drops_poor_quality():
    task = load_task("S1", shared_path(), verify_audio=False)
    raw = _raw_sprsound_labels()
    table = task.table
    poor = [name for name, (label, _) in raw.items() if label == "Poor Quality"]
    assert len(table) == len(raw) - len(poor) and sorted(task.report.excluded["record label Poor Quality"]) == sorted(
        f"{p}.wav" for p in poor
    )
    assert all(r.label == int(raw[r.file[:-4]][0] != "Normal") for r in table.itertuples())
    assert (table.groupby("subject_id")["split"].nunique() == 1).all()
    fractions = table["split"].value_counts(normalize=True)
    assert 0.5 < fractions["train"] < 0.7 and 0.12 < fractions["test"] < 0.28
    for split in ("train", "validation", "test"):
        assert 0.2 < table.loc[table["split"] == split, "label"].mean() < 0.5  # stratified: roughly 1/3 adventitious


def test_sprsound_event_task_has_one_row_per_event():
    task = load_task("S2", shared_path(), verify_audio=False)
    n_events = 0
    for folder in shared_path("sprsound", "test_json").iterdir():
        for path in folder.glob("*.json"):
            with open(path) as handle:
                n_events += len(json.load(handle)["event_annotation"])
    assert len(task.table) == n_events
    assert (task.table["end_s"] > task.table["start_s"]).all()
    assert (task.table.groupby("subject_id")["split"].nunique() == 1).all()
