"""KAUH lung sounds (labels in the file names): the corpus builder and tasks T10 (obstructive vs healthy on OPERA's
split, as its linear_eval.py) and T10-subject (the same on OPERA's subject-disjoint split)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..task_spec import TaskContext, corpus_task
from ..task_tables import draw_validation_then_resolve

CORPUS = CorpusSpec(
    name="kauh", title="KAUH", dirnames=("kauh", "KAUH"),
    access="open", homepage="https://data.mendeley.com/datasets/jwyy9np4gv/3", license="CC BY 4.0",
)


def parse_kauh_filename(name: str) -> dict:
    """Fields of a KAUH file name such as `BP47_asthma,E W,P L M,60,M.wav`.

    Returns `subject_id` (OPERA's user id: the prefix without its two filter/letters), `filter`
    (B = bell, D = diaphragm, E = extended), raw `diagnosis`, `sound_type`, `location`, `age`
    and `sex`.
    """
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
    head, *rest = stem.split(",")
    prefix, _, diagnosis = head.partition("_")
    fields = [f.strip() for f in rest] + [""] * (4 - len(rest))
    return {
        "subject_id": prefix[2:],
        "filter": prefix[:1],
        "diagnosis": diagnosis.strip(),
        "sound_type": fields[0],
        "location": fields[1],
        "age": fields[2],
        "sex": fields[3],
    }


def kauh_opera_diagnosis(diagnosis: str) -> str | None:
    """OPERA's grouping of KAUH diagnoses: `healthy`, `asthma`, `COPD` or `None` (other)."""
    if diagnosis == "N":
        return "healthy"
    if "asthma" in diagnosis.lower():
        return "asthma"
    if "COPD" in diagnosis:
        return "COPD"
    return None


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """KAUH lung sounds (`AudioFiles/*.wav`); labels come from the file names.

    Columns: raw `diagnosis`, `opera_group` (healthy/asthma/COPD/None), `filter`, `location`,
    `sound_type`, `age`, `sex`.
    """
    index, report = scan.index, scan.report
    rows = []
    for path in index.audio_paths():
        fields = parse_kauh_filename(path.name)
        if not fields["diagnosis"]:
            report.unlabelled.append(str(path))
            continue
        rows.append(
            {"audio": path, "file": path.name, **fields, "opera_group": kauh_opera_diagnosis(fields["diagnosis"])}
        )
    return rows


def _kauh_table(ctx: TaskContext, split_file: str):
    """T10 from OPERA's KAUH subset. `train_test_split.npy` is the split OPERA's linear_eval.py uses
    (and its published T10 numbers); it puts the bell/diaphragm/extended-filter versions of one
    patient's recording in different splits. `train_test.npy` is OPERA's subject-disjoint split."""
    files = [str(f) for f in ctx.opera.load_npy("feature/kauh_eval/sound_dir_loc_subset.npy")]
    groups = [str(g) for g in ctx.opera.load_npy("feature/kauh_eval/labels_both.npy")]
    splits = [str(s) for s in ctx.opera.load_npy(f"feature/kauh_eval/{split_file}")]
    label_of = {"healthy": 0, "asthma": 1, "COPD": 1, "obstructive": 1}
    rows = []
    for path, group, split in zip(files, groups, splits):
        name = Path(path).name
        if kauh_opera_diagnosis(parse_kauh_filename(name)["diagnosis"]) != group:
            raise ValueError(f"OPERA's KAUH label {group!r} does not match the file name {name!r}")
        # OPERA's train_test_split_from_list sends everything that is not "train" (its "val" and
        # "test" entries) to the test set; the validation set is re-drawn from the training rows.
        rows.append(
            {
                "file": name,
                "label": label_of[group],
                "subject_id": parse_kauh_filename(name)["subject_id"],
                "split": "train" if split == "train" else "test",
            }
        )
    if ctx.root is not None:
        listed = {r["file"] for r in rows}
        ctx.report.exclude(
            "not in OPERA's T10 subset (diagnosis other than healthy/asthma/COPD)",
            [p.name for p in ctx.index.paths() if p.suffix.lower() == ".wav" and p.name not in listed],
        )
    if split_file == "train_test_split.npy":
        ctx.report.notes.append(
            "split: OPERA's train_test_split.npy, as its linear_eval.py; it is not subject-disjoint (T10-subject is)"
        )
    return draw_validation_then_resolve(ctx, rows, fraction=0.1, seed=1337, by="name")


TASK_SPECS = (
    corpus_task(
        CORPUS, task_id="T10", name="KAUH: obstructive (asthma/COPD) vs healthy", modality="lung sound",
        kind="classification", evaluation="holdout", class_names=("healthy", "obstructive"),
        split_description=(
            "OPERA's committed split used by its linear_eval.py (non-train rows are test; filter variants of one "
            "recording can fall in different splits); 10 % stratified validation (seed 1337)"
        ),
        table_builder=partial(_kauh_table, split_file="train_test_split.npy"),
    ),
    corpus_task(
        CORPUS, task_id="T10-subject", name="KAUH: obstructive vs healthy (subject-disjoint split)",
        modality="lung sound", kind="classification", evaluation="holdout", class_names=("healthy", "obstructive"),
        split_description=(
            "OPERA's committed subject-disjoint split (train_test.npy); 10 % stratified validation (seed 1337)"
        ),
        opera=False, table_builder=partial(_kauh_table, split_file="train_test.npy"),
    ),
)
