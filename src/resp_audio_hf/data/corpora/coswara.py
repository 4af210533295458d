"""Coswara (crowd-sourced breathing, cough and speech): its corpus builder and tasks T8 (smoker) and T9 (sex) on the
shallow cough, on OPERA's HeAR-aligned split and (`-random`) on a random stratified split."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..file_io import read_table_rows
from ..task_spec import TaskContext, corpus_task
from ..task_tables import draw_validation_then_resolve, opera_relative

CORPUS = CorpusSpec(
    name="coswara", title="Coswara", dirnames=("coswara", "Coswara-Data", "Coswara"),
    access="open", homepage="https://github.com/iiscleap/Coswara-Data", license="CC BY 4.0",
)

#: Split variants of T8/T9: task-id suffix, suffix of the task name, split description.
_SPLIT_VARIANTS = {
    "hear": (
        "",
        "",
        "HeAR-aligned test set (OPERA's committed split); 20 % stratified validation (seed 1337)",
    ),
    "random": (
        "-random",
        " (random split)",
        "random stratified 80/20 train/test (seed 1337); 20 % stratified validation (seed 1337)",
    ),
}


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """Coswara (`Extracted_data/<date>/<participant>/<modality>.wav` + `combined_data.csv`).

    One row per recording. Columns: `modality` (e.g. `cough-shallow`), `date`, `sex`
    (`g` column), `smoker`, `covid_status`, `quality` (from `annotations/<modality>_labels.csv`
    when present).
    """
    index, report = scan.index, scan.report
    combined = index.find_metadata("combined_data.csv")
    participants = {}
    if combined is not None:
        participants = {row["id"]: row for row in read_table_rows(combined)}
        report.notes.append(f"metadata: {combined}")
    quality: dict[str, str] = {}
    for path in index.paths():
        if path.name.endswith("_labels.csv") and path.parent.name == "annotations":
            for row in read_table_rows(path):
                values = list(row.values())
                if len(values) >= 2:
                    quality[values[0]] = values[1]
    rows = []
    for path in index.audio_paths():
        participant, modality = path.parent.name, path.stem
        meta = participants.get(participant)
        if meta is None:
            report.unlabelled.append(str(path))
            continue
        rows.append(
            {
                "audio": path,
                "file": f"{path.parent.parent.name}/{participant}/{path.name}",
                "subject_id": participant,
                "date": path.parent.parent.name,
                "modality": modality,
                "sex": meta.get("g") or None,
                "smoker": meta.get("smoker") or None,
                "covid_status": meta.get("covid_status") or None,
                "quality": quality.get(f"{participant}_{modality}"),
            }
        )
    if combined is None:
        report.notes.append("combined_data.csv not found: no recording could be labelled")
    return rows


def _coswara_table(ctx: TaskContext, label_name: str, split_variant: str):
    from sklearn.model_selection import train_test_split

    files = [
        str(f)
        for f in ctx.opera.load_npy(
            f"feature/coswara_eval/cough_aligned_filenames_{label_name}_w_cough-shallow.npy"
        )
    ]
    labels = [
        int(y)
        for y in ctx.opera.load_npy(f"feature/coswara_eval/cough_aligned_{label_name}_label_cough-shallow.npy")
    ]
    if split_variant == "hear":
        split = [str(s) for s in ctx.opera.load_npy(f"feature/coswara_eval/google_{label_name}_cough_split.npy")]
        if len(split) != len(files):
            raise ValueError(
                f"OPERA's HeAR split for Coswara {label_name} has {len(split)} rows for {len(files)} files"
            )
    else:
        _, test_positions = train_test_split(
            list(range(len(files))), test_size=0.2, random_state=1337, stratify=labels
        )
        test_positions = set(test_positions)
        split = ["test" if i in test_positions else "train" for i in range(len(files))]
    rows = []
    for path, label, part in zip(files, labels, split):
        relative = opera_relative(path, "Coswara-Data")
        rows.append({"file": relative, "label": label, "subject_id": Path(relative).parent.name, "split": part})
    return draw_validation_then_resolve(ctx, rows, fraction=0.2, seed=1337, by="relpath", tail=2)


TASK_SPECS = tuple(
    corpus_task(
        CORPUS,
        task_id=task_id + id_suffix,
        name=f"Coswara shallow cough: {label_name} detection{name_suffix}",
        modality="cough", kind="classification", evaluation="holdout", split_description=split_description,
        class_names=class_names, table_builder=partial(_coswara_table, label_name=label_name, split_variant=variant),
    )
    for variant, (id_suffix, name_suffix, split_description) in _SPLIT_VARIANTS.items()
    for task_id, label_name, class_names in (
        ("T8", "smoker", ("non-smoker", "smoker")),
        ("T9", "sex", ("male", "female")),
    )
)
