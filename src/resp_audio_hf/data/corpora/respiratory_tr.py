"""Respiratory@TR (`copd/` in OPERA's layout): its corpus builder and task T11 (COPD severity, OPERA's committed
patient-level split)."""

from __future__ import annotations

import re
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..file_io import read_table_rows
from ..files import metadata_file
from ..task_spec import TaskContext, corpus_task
from ..task_tables import opera_committed_split, resolve_audio, rows_frame

CORPUS = CorpusSpec(
    name="respiratory_tr", title="Respiratory@TR", dirnames=("respiratory_tr", "copd", "RespiratoryDatabase@TR"),
    access="open", homepage="https://data.mendeley.com/datasets/p9z4h98s6j/1", license="CC BY 4.0",
)


def read_respiratory_tr_labels(path: Path) -> dict[str, int]:
    """Patient id (`H001`) -> COPD severity 0-4 from `Labels.csv` (`COPD0` ... `COPD4`)."""
    labels = {}
    for row in read_table_rows(path):
        patient = (row.get("Patient ID") or "").strip()
        diagnosis = (row.get("Diagnosis") or "").strip()
        if patient and diagnosis:
            match = re.fullmatch(r"COPD\s*([0-4])", diagnosis)
            if match is None:
                raise ValueError(f"{path}: unexpected diagnosis {diagnosis!r} for {patient}; expected COPD0..COPD4")
            labels[patient] = int(match.group(1))
    return labels


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """Respiratory@TR (`RespiratoryDatabase@TR/H001_L1.wav`): 12-channel auscultation per patient.

    Columns: `copd_severity` (0-4), `channel` (e.g. `L1`).
    """
    index, report = scan.index, scan.report
    labels_path = metadata_file(index, "Labels.csv", scan.opera, "datasets/copd/Labels.csv", report)
    if labels_path is None:
        raise FileNotFoundError("Respiratory@TR needs Labels.csv (in the corpus folder or OPERA's copy).")
    labels = read_respiratory_tr_labels(labels_path)
    rows = []
    for path in index.audio_paths():
        patient = path.name[:4]
        if patient not in labels:
            report.unlabelled.append(str(path))
            continue
        rows.append(
            {
                "audio": path,
                "file": path.stem,
                "subject_id": patient,
                "copd_severity": labels[patient],
                "channel": path.stem[5:],
            }
        )
    return rows


def _respiratory_tr_table(ctx: TaskContext):
    committed = opera_committed_split(
        ctx,
        "feature/copd_eval/sound_dir_loc.npy",
        "feature/copd_eval/labels.npy",
        "feature/copd_eval/train_test_split.npy",
    )
    rows = [
        {"file": name, "label": label, "subject_id": name[:4], "split": split} for name, label, split in committed
    ]
    return rows_frame(resolve_audio(ctx, rows, by="name"))


TASK_SPECS = (
    corpus_task(
        CORPUS, task_id="T11", name="Respiratory@TR: COPD severity (COPD0-4)", modality="lung sound",
        kind="classification", evaluation="holdout",
        split_description="OPERA's committed patient-level train/val/test split",
        class_names=("COPD0", "COPD1", "COPD2", "COPD3", "COPD4"), table_builder=_respiratory_tr_table,
    ),
)
