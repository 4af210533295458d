"""CoughVID (crowd-sourced coughs, no participant ids): its corpus builder and tasks T5 (COVID-19) and T6 (gender),
both on OPERA's committed train/val/test uuids."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..file_io import read_table_rows
from ..files import metadata_file
from ..task_spec import TaskContext, corpus_task
from ..task_tables import opera_variant_split, resolve_audio, rows_frame

CORPUS = CorpusSpec(
    name="coughvid", title="CoughVID", dirnames=("coughvid", "CoughVID", "COUGHVID"),
    access="open", homepage="https://zenodo.org/records/4048312", license="CC BY 4.0",
)


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """CoughVID (`public_dataset/<uuid>.webm|.ogg` or converted `wav/<uuid>.wav`).

    Rows follow `metadata_compiled.csv`. Columns: `status` (healthy/symptomatic/COVID-19),
    `gender`, `age`, `cough_detected`. CoughVID has no participant ids, so `subject_id` is the
    recording uuid.
    """
    index, report = scan.index, scan.report
    metadata = metadata_file(
        index, "metadata_compiled.csv", scan.opera, "datasets/coughvid/metadata_compiled.csv", report
    )
    if metadata is None:
        raise FileNotFoundError("CoughVID needs metadata_compiled.csv (in the corpus folder or OPERA's copy).")
    rows, listed = [], set()
    for row in read_table_rows(metadata):
        uuid = row.get("uuid", "").strip()
        if not uuid:
            continue
        listed.add(uuid)
        path = index.find(stem=uuid) or index.find(stem=uuid[:-1])
        rows.append(
            {
                "audio": path,
                "file": uuid,
                "subject_id": uuid,
                "status": row.get("status") or None,
                "gender": row.get("gender") or None,
                "age": row.get("age") or None,
                "cough_detected": float(row["cough_detected"]) if row.get("cough_detected") else None,
            }
        )
    report.unlabelled.extend(str(p) for p in index.audio_paths() if p.stem not in listed and p.stem[:-1] not in listed)
    return rows


def _coughvid_table(ctx: TaskContext, label_name: str):
    committed = opera_variant_split(ctx, "coughvid_eval", label_name)
    rows = [
        {"file": name, "label": label, "subject_id": Path(name).stem, "split": split}
        for name, label, split in committed
    ]
    return rows_frame(resolve_audio(ctx, rows, by="stem"))


TASK_SPECS = tuple(
    corpus_task(
        CORPUS, task_id=task_id, name=f"CoughVID: {target} detection", modality="cough", kind="classification",
        evaluation="holdout", split_description="OPERA's committed train/val/test uuids", class_names=class_names,
        table_builder=partial(_coughvid_table, label_name=label_name),
    )
    for task_id, label_name, target, class_names in (
        ("T5", "covid", "COVID-19", ("healthy", "COVID-19")),
        ("T6", "gender", "gender", ("male", "female")),
    )
)
