"""COVID-19 Sounds, task-1 release: its corpus builder and tasks T3 (breath) and T4 (cough), COVID-19 detection on the
official split with OPERA's every-5th training sample."""

from __future__ import annotations

from functools import partial

from ..corpus_table import CorpusScan, CorpusSpec
from ..file_io import read_table_rows
from ..task_spec import BINARY_CLASSES, TaskContext, corpus_task
from ..task_tables import record_rows

CORPUS = CorpusSpec(
    name="covid19_sounds", title="COVID-19 Sounds", dirnames=("covid19_sounds", "covid19-sounds"),
    access="request", homepage="https://covid-19-sounds.org/blog/neurips_dataset",
    license="custom (data transfer agreement)", split_column="official_split",
)

COVID19_SOUNDS_TASK1_CSV = "data_0426_en_task1.csv"


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """COVID-19 Sounds, task-1 release (`data_0426_en_task1.csv` + `0426_EN_used_task1/`).

    One row per (sample, modality) for `breath` and `cough`. Columns: `modality`, `label`
    (1 = COVID-19 positive), `official_split` (train/validation/test from the csv's 0/1/2),
    `row_index` (csv order, needed for OPERA's training downsampling).
    """
    root, index = scan.root, scan.index
    csv_path = index.find_metadata(COVID19_SOUNDS_TASK1_CSV)
    if csv_path is None:
        raise FileNotFoundError(
            f"COVID-19 Sounds: {COVID19_SOUNDS_TASK1_CSV} not found under {root} (it ships with the task-1 release)."
        )
    split_names = {"0": "train", "1": "validation", "2": "test"}
    rows = []
    for row_index, row in enumerate(read_table_rows(csv_path, delimiter=";")):
        uid = row["Uid"]
        user_folder = "form-app-users" if uid[:4] == "2020" else uid
        for modality in ("breath", "cough"):
            filename = row.get(f"{modality.capitalize()} filename")
            relpath = f"0426_EN_used_task1/{user_folder}/{row['Folder Name']}/{filename}"
            rows.append(
                {
                    "audio": index.find(relpath=relpath, tail=3),
                    "file": relpath,
                    "subject_id": uid,
                    "modality": modality,
                    "label": int(row["label"]),
                    "official_split": split_names.get(str(row["split"]).strip(), str(row["split"])),
                    "row_index": row_index,
                }
            )
    return rows


def _covid19_sounds_table(ctx: TaskContext, modality: str):
    records = ctx.scan()
    records = (
        records[records["modality"] == modality].sort_values("row_index", kind="stable").reset_index(drop=True)
    )
    # OPERA keeps every 5th training row (csv order) and all validation/test rows.
    train = records[records["official_split"] == "train"]
    kept_train = set(train["row_index"].tolist()[::5])
    dropped = train[~train["row_index"].isin(kept_train)]
    ctx.report.exclude("OPERA keeps every 5th COVID-19 Sounds training sample", dropped["file"].tolist())
    records = records[(records["official_split"] != "train") | records["row_index"].isin(kept_train)]
    return record_rows(records, lambda r: int(r.label), split=lambda r: r.official_split)


TASK_SPECS = tuple(
    corpus_task(
        CORPUS, task_id=task_id, name=f"COVID-19 Sounds {modality}: COVID-19 detection", modality=modality,
        kind="classification", evaluation="holdout", class_names=BINARY_CLASSES,
        split_description="official task-1 train/validation/test; every 5th training sample (OPERA)",
        table_builder=partial(_covid19_sounds_table, modality=modality),
    )
    for task_id, modality in (("T3", "breath"), ("T4", "cough"))
)
