"""UK COVID-19 Vocal Audio Dataset (`covidUK/` in OPERA's layout): its corpus builder and tasks T1 (exhalation) and
T2 (cough), COVID-19 detection on OPERA's committed participant-disjoint split."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..file_io import read_table_rows
from ..task_spec import BINARY_CLASSES, TaskContext, corpus_task
from ..task_tables import opera_variant_split, resolve_audio, rows_frame

CORPUS = CorpusSpec(
    name="uk_covid19", title="UK COVID-19 Vocal Audio", dirnames=("uk_covid19", "covidUK", "uk-covid19"),
    access="manual", homepage="https://zenodo.org/records/10043978", license="OGL 3.0", split_column="official_split",
)


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """UK COVID-19 Vocal Audio Dataset (audio files + `audio_metadata.csv`,
    `participant_metadata.csv`, `train_test_splits.csv`).

    One row per (participant, modality) for the `exhalation` and `cough` recordings. Columns:
    `modality`, `covid_test_result` (Positive/Negative), `official_split` (train/val/test).
    """
    root, index = scan.root, scan.index
    audio_meta = index.find_metadata("audio_metadata.csv")
    participant_meta = index.find_metadata("participant_metadata.csv")
    if audio_meta is None or participant_meta is None:
        raise FileNotFoundError(
            f"UK COVID-19: audio_metadata.csv and participant_metadata.csv are required under {root}."
        )
    results = {row["participant_identifier"]: row.get("covid_test_result") for row in read_table_rows(participant_meta)}
    splits = {}
    split_file = index.find_metadata("train_test_splits.csv")
    if split_file is not None:
        splits = {row["participant_identifier"]: row.get("splits") for row in read_table_rows(split_file)}
    rows = []
    for row in read_table_rows(audio_meta):
        participant = row.get("participant_identifier")
        for modality in ("exhalation", "cough"):
            filename = (row.get(f"{modality}_file_name") or "").strip()
            if not filename:
                continue
            rows.append(
                {
                    "audio": index.find(name=filename),
                    "file": filename,
                    "subject_id": participant,
                    "modality": modality,
                    "covid_test_result": results.get(participant),
                    "official_split": splits.get(participant) or "unassigned",
                }
            )
    return rows


def _coviduk_table(ctx: TaskContext, modality: str):
    committed = opera_variant_split(ctx, "coviduk_eval", modality)
    participants = {}
    metadata = ctx.index.find_metadata("audio_metadata.csv")
    if metadata is not None:
        for row in read_table_rows(metadata):
            participants[row.get(f"{modality}_file_name")] = row.get("participant_identifier")
    rows = [
        {"file": name, "label": label, "subject_id": participants.get(name, Path(name).stem), "split": split}
        for name, label, split in committed
    ]
    return rows_frame(resolve_audio(ctx, rows, by="name"))


TASK_SPECS = tuple(
    corpus_task(
        CORPUS, task_id=task_id, name=f"UK COVID-19 {modality}: COVID-19 detection", modality=modality,
        kind="classification", evaluation="holdout",
        split_description="OPERA's committed participant-disjoint train/val/test files (1000/500/1000)",
        class_names=BINARY_CLASSES, table_builder=partial(_coviduk_table, modality=modality),
    )
    for task_id, modality in (("T1", "exhalation"), ("T2", "cough"))
)
