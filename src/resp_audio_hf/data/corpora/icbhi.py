"""ICBHI 2017 Respiratory Sound Database: its corpus builder, the readers of its metadata and cycle annotations, and
tasks T7 (COPD vs healthy, OPERA) and ICBHI-cycle (the challenge's normal/crackle/wheeze/both cycle task)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from ..build_report import BuildReport
from ..corpus_table import CorpusScan, CorpusSpec
from ..files import metadata_file
from ..opera_files import OperaFileError
from ..task_spec import TaskContext, corpus_task
from ..task_tables import draw_validation_then_resolve, rows_frame

CORPUS = CorpusSpec(
    name="icbhi", title="ICBHI 2017", dirnames=("icbhi", "ICBHI", "ICBHI_final_database"),
    access="open", homepage="https://bhichallenge.med.auth.gr", license="CC0", split_column="official_split",
)


def read_icbhi_diagnosis(path: Path) -> dict[str, str]:
    """Patient id -> diagnosis from `ICBHI_Challenge_diagnosis.txt` (tab separated)."""
    result = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            patient, diagnosis = re.split(r"\s+", line.strip(), maxsplit=1)
            result[patient] = diagnosis.strip()
    return result


def read_icbhi_split_list(path: Path) -> list[tuple[str, str]]:
    """(recording id, `train`/`test`) pairs from `ICBHI_challenge_train_test.txt` in file order."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            recording, split = line.split()
            pairs.append((recording.strip(), split.strip()))
    return pairs


# The official train/test list names one recording that is not in the released database (patient
# 226, Pneumonia); OPERA's 920-file list omits it too.
ICBHI_LISTED_WITHOUT_AUDIO = frozenset({"226_1b1_Pl_sc_Meditron"})


def exclude_icbhi_listed_without_audio(listed: Iterable[tuple[str, str]], report: BuildReport) -> list[tuple[str, str]]:
    """Drop the recordings of `ICBHI_LISTED_WITHOUT_AUDIO` from `(recording, split)` pairs.

    They are named in `report.excluded` rather than reported missing: no download of the database can
    supply them. Shared by the corpus builder and task T7 so both exclude them under the same reason.
    """
    listed = list(listed)
    report.exclude(
        "listed in ICBHI_challenge_train_test.txt but not part of the released database",
        [recording for recording, _ in listed if recording in ICBHI_LISTED_WITHOUT_AUDIO],
    )
    return [(recording, split) for recording, split in listed if recording not in ICBHI_LISTED_WITHOUT_AUDIO]


ICBHI_CYCLE_CLASSES = ("normal", "crackle", "wheeze", "both")


def icbhi_cycle_class(crackle: int, wheeze: int) -> int:
    """Class id of a respiratory cycle in the challenge's 4-class task: 0 normal, 1 crackle, 2 wheeze, 3 both."""
    return int(crackle) + 2 * int(wheeze)


def read_icbhi_cycles(path: Path) -> list[dict]:
    """Respiratory cycles of one recording from its annotation file `<recording>.txt`.

    Each non-empty line is `start end crackle wheeze` (seconds, seconds, 0/1, 0/1), separated by tabs or spaces.
    Returns `[{"start_s", "end_s", "crackle", "wheeze"}]` in file order; a malformed line raises `ValueError`
    naming the file and the line.
    """
    cycles = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) != 4:
                raise ValueError(f"{len(fields)} fields")
            start, end = float(fields[0]), float(fields[1])
            crackle, wheeze = int(fields[2]), int(fields[3])
            if crackle not in (0, 1) or wheeze not in (0, 1):
                raise ValueError("crackle/wheeze flags must be 0 or 1")
            if not (math.isfinite(start) and math.isfinite(end)):
                raise ValueError("non-finite time")
        except ValueError as error:
            raise ValueError(
                f"{path}, line {number}: expected 'start end crackle wheeze' (seconds, seconds, 0/1, 0/1), "
                f"got {line.strip()!r} ({error})"
            ) from None
        cycles.append({"start_s": start, "end_s": end, "crackle": crackle, "wheeze": wheeze})
    return cycles


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """ICBHI 2017 Respiratory Sound Database (`ICBHI_final_database/*.wav`).

    Columns: `diagnosis` (patient-level, e.g. COPD, Healthy, URTI), `official_split` (challenge
    train/test list), `cycles` (the recording's annotated respiratory cycles, [`read_icbhi_cycles`];
    `None` when its `.txt` file is absent, which is then listed as missing). Rows follow the official
    920-recording list.
    """
    index, report = scan.index, scan.report
    diagnosis_path = metadata_file(
        index, "ICBHI_Challenge_diagnosis.txt", scan.opera, "datasets/icbhi/ICBHI_Challenge_diagnosis.txt", report
    )
    split_path = metadata_file(
        index, "ICBHI_challenge_train_test.txt", scan.opera, "datasets/icbhi/ICBHI_challenge_train_test.txt", report
    )
    if diagnosis_path is None or split_path is None:
        raise FileNotFoundError(
            "ICBHI needs ICBHI_Challenge_diagnosis.txt and ICBHI_challenge_train_test.txt (in the corpus folder or OPERA's copy)."
        )
    diagnosis = read_icbhi_diagnosis(diagnosis_path)
    listed = read_icbhi_split_list(split_path)
    rows = []
    for recording, split in exclude_icbhi_listed_without_audio(listed, report):
        patient = recording.split("_")[0]
        path = index.find(name=f"{recording}.wav")
        annotation = index.find(name=f"{recording}.txt")
        if annotation is None:
            report.missing.append(f"{recording}.txt")
        rows.append(
            {
                "audio": path,
                "file": recording,
                "subject_id": patient,
                "diagnosis": diagnosis.get(patient),
                "official_split": split,
                "cycles": read_icbhi_cycles(annotation) if annotation is not None else None,
            }
        )
    # The whole official list: a listed-without-audio recording found on disk is excluded, not unlabelled.
    listed_ids = {r for r, _ in listed}
    report.unlabelled.extend(str(p) for p in index.audio_paths() if p.stem not in listed_ids)
    return rows


def _icbhi_copd_table(ctx: TaskContext):
    diagnosis = read_icbhi_diagnosis(ctx.opera.path("datasets/icbhi/ICBHI_Challenge_diagnosis.txt"))
    listed = dict(read_icbhi_split_list(ctx.opera.path("datasets/icbhi/ICBHI_challenge_train_test.txt")))
    listed = dict(exclude_icbhi_listed_without_audio(listed.items(), ctx.report))
    order_file = "feature/icbhidisease_eval/sound_dir_loc.npy"
    try:
        order = [Path(str(p)).stem for p in ctx.opera.load_npy(order_file)]
        ctx.report.notes.append("row order: OPERA's sound_dir_loc.npy (reproduces its validation draw exactly)")
    except OperaFileError:
        order = sorted(listed)
        ctx.report.notes.append(
            f"row order: sorted recording ids ({order_file} unavailable, so the 20 % validation draw may differ from OPERA's)"
        )
    if set(order) != set(listed):
        raise ValueError("OPERA's ICBHI row order and the official train/test list disagree")
    classes = {"Healthy": 0, "COPD": 1}
    rows, excluded = [], []
    for recording in order:
        patient = recording.split("_")[0]
        label = classes.get(diagnosis.get(patient))
        if label is None:
            excluded.append(recording)
            continue
        rows.append({"file": f"{recording}.wav", "label": label, "subject_id": patient, "split": listed[recording]})
    ctx.report.exclude("diagnosis other than COPD/Healthy (T7 filter)", excluded)
    return draw_validation_then_resolve(ctx, rows, fraction=0.2, seed=1337, by="name")


def _icbhi_cycle_table(ctx: TaskContext):
    """The ICBHI 2017 challenge task: every annotated respiratory cycle of the official train/test list, classed
    normal / crackle / wheeze / both from the recording's `<recording>.txt`. The official list is read from the
    corpus folder, else OPERA's pinned copy. The challenge has no validation set: one fifth of the patients of the
    official training list (`train_test_split` of the sorted patient ids, seed 1337) are held out for checkpoint
    selection. The draw uses only the list, so it does not depend on which annotation or audio files are present."""
    from sklearn.model_selection import train_test_split

    split_path = metadata_file(
        ctx.index,
        "ICBHI_challenge_train_test.txt",
        ctx.opera,
        "datasets/icbhi/ICBHI_challenge_train_test.txt",
        ctx.report,
    )
    if split_path is None:
        raise FileNotFoundError(
            "ICBHI-cycle needs ICBHI_challenge_train_test.txt (in the corpus folder or OPERA's copy)."
        )
    listed = exclude_icbhi_listed_without_audio(read_icbhi_split_list(split_path), ctx.report)
    train_patients = sorted({recording.split("_")[0] for recording, split in listed if split == "train"})
    _, validation_patients = train_test_split(train_patients, test_size=0.2, random_state=1337)
    validation_patients = set(validation_patients)
    rows, without_annotation = [], []
    for recording, split in listed:
        annotation = ctx.index.find(name=f"{recording}.txt")
        if annotation is None:
            without_annotation.append(f"{recording}.txt")
            continue
        audio = ctx.index.find(name=f"{recording}.wav")
        patient = recording.split("_")[0]
        if split == "train" and patient in validation_patients:
            split = "validation"
        for number, cycle in enumerate(read_icbhi_cycles(annotation)):
            if cycle["end_s"] <= cycle["start_s"]:
                ctx.report.exclude("cycle with end <= start", [f"{recording}.wav#{number}"])
                continue
            rows.append(
                {
                    "file": f"{recording}.wav#{number}",
                    "audio": str(audio) if audio is not None else None,
                    "label": icbhi_cycle_class(cycle["crackle"], cycle["wheeze"]),
                    "subject_id": patient,
                    "start_s": cycle["start_s"],
                    "end_s": cycle["end_s"],
                    "split": split,
                }
            )
    if not rows:
        raise FileNotFoundError(
            f"ICBHI-cycle: none of the {len(listed)} listed recordings has its annotation file (<recording>.txt) "
            f"under {ctx.root}; they ship with the ICBHI database (ICBHI_final_database/)."
        )
    ctx.report.missing.extend(without_annotation)
    ctx.split_mode = "official"
    sides = defaultdict(set)
    for recording, split in listed:
        sides[recording.split("_")[0]].add(split)
    both = sorted(patient for patient, parts in sides.items() if len(parts) > 1)
    if both:
        ctx.report.notes.append(
            f"the official split is not patient-disjoint: patient(s) {', '.join(both)} have recordings on both sides"
        )
    return rows_frame(rows)


TASK_SPECS = (
    corpus_task(
        CORPUS, task_id="T7", name="ICBHI: COPD detection", modality="lung sound", kind="classification",
        evaluation="holdout", class_names=("Healthy", "COPD"), table_builder=_icbhi_copd_table,
        split_description="official ICBHI train/test list; 20 % stratified validation from train (seed 1337)",
    ),
    corpus_task(
        CORPUS,
        task_id="ICBHI-cycle",
        name="ICBHI 2017 challenge: respiratory cycle classification (normal/crackle/wheeze/both)",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        split_description=(
            "official ICBHI 60/40 train/test list; validation: one fifth of the training patients (seed 1337); scored "
            "by the ICBHI score (mean of sensitivity and specificity) of the predicted class"
        ),
        class_names=ICBHI_CYCLE_CLASSES,
        opera=False,
        table_builder=_icbhi_cycle_table,
        score="icbhi_score",
        extra_metrics=("sensitivity", "specificity", "auroc"),
    ),
)
