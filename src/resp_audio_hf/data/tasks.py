"""The OPERA task registry (T1-T19) plus SPRSound tasks, with OPERA's exact labels, filters and splits.

Each task turns a corpus (and, where OPERA committed them, OPERA's split files) into a *task table*:
one row per expected recording with ``file``, ``audio`` (resolved path, or ``None`` when the file is
not on disk), ``label``, ``subject_id`` and either ``split`` (``train``/``validation``/``test``) or
``fold`` (cross-validation). Splits are drawn on OPERA's full recording list *before* looking at which
audio is present, so a missing file never changes the partition of the others; missing files are
named in the task's :class:`~resp_audio_hf.data.corpora.BuildReport`.

Every task's probe protocol (epochs, batch size, learning rate, L2, checkpoint period, early stopping, seeds,
validation) is its row of one table, :data:`PROBE_PROTOCOLS`, with the values OPERA's
``src/benchmark/linear_eval.py`` and ``scripts/eval_all.sh`` actually run at the pinned commit.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ._io import read_table_rows
from .corpora import (
    BuildReport,
    CorpusNotFoundError,
    ICBHI_CYCLE_CLASSES,
    FileIndex,
    _metadata_file,
    check_audio_files,
    exclude_icbhi_listed_without_audio,
    find_corpus_dir,
    get_corpus_spec,
    icbhi_cycle_class,
    kauh_opera_diagnosis,
    parse_kauh_filename,
    read_icbhi_cycles,
    read_icbhi_diagnosis,
    read_icbhi_split_list,
    records_to_dataset_dict,
    scan_corpus,
)
from .opera_files import OperaFileError, OperaFiles

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeProtocol:
    """Linear-probe hyper-parameters of one task (OPERA defaults).

    Attributes:
        epochs: training epochs.
        batch_size: mini-batch size (``None`` = full batch).
        learning_rate: Adam learning rate.
        l2_strength: weight of the summed squared head parameters added to the loss.
        lr_decay: learning-rate factor applied after every epoch.
        grad_clip: maximum global gradient norm per run.
        checkpoint_every: the best-validation checkpoint is only considered every this many epochs
            (OPERA's ``ModelCheckpoint(every_n_epochs=...)``).
        early_stopping_patience: stop after this many validations without improvement (``None`` = off).
        early_stopping_min_delta: improvement needed to reset the patience counter.
        seeds: random seeds; one probe per seed (classification) or per fold (cross-validation).
        inner_validation_fraction: for cross-validated tasks, fraction of each fold's training rows
            held out for checkpoint selection.
        inner_validation_seed: ``random_state`` of that draw.
        validation: how the checkpoint-selection rows are chosen, in words (hold-out tasks: drawn by the task's
            table builder; cross-validated tasks: from ``inner_validation_fraction`` and ``inner_validation_seed``).
        standardize_features: z-score every feature with the mean and standard deviation of the run's *training*
            rows (validation and test rows are transformed with those, never used to compute them; a feature
            constant on the training rows is only centred). OPERA's probe does not standardise (``False``, the
            default); with ``True`` a network whose activations are tiny (a randomly initialised mn04 gives about
            1e-8) no longer scores chance just because Adam's steps of 1e-4 cannot move the probe on such inputs.
    """

    epochs: int = 64
    batch_size: int | None = 64
    learning_rate: float = 1e-4
    l2_strength: float = 1e-5
    lr_decay: float = 0.97
    grad_clip: float = 1.0
    checkpoint_every: int = 1
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    inner_validation_fraction: float | None = None
    inner_validation_seed: int = 42
    validation: str = ""
    standardize_features: bool = False


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One downstream task.

    Attributes:
        task_id: ``"T1"`` ... ``"T19"`` for OPERA, ``"S1"``/``"S2"`` for SPRSound, variants with a suffix.
        name: short description.
        corpus: corpus registry name.
        modality: recorded sound (lung sound, cough, breath, ...).
        kind: ``"classification"`` or ``"regression"``.
        class_names: label names indexed by class id (classification).
        target: regression target name.
        evaluation: ``"holdout"`` (fixed train/validation/test), ``"loocv"`` (leave one subject out,
            every subject a fold) or ``"loso"`` (leave one listed subject out).
        protocol: linear-probe hyper-parameters.
        split_description: how the split is made, in words (shown in reports).
        opera: part of OPERA's 19 tasks (``False`` for extra tasks such as SPRSound).
        table_builder: ``(TaskContext) -> DataFrame``.
        score: test metric when it is not the default (AUROC for classification, MAE for regression), e.g.
            ``"icbhi_score"`` (the ICBHI challenge's mean of sensitivity and specificity).
        extra_metrics: further test metrics reported beside ``score`` (e.g. ``("sensitivity", "specificity",
            "auroc")``).
    """

    task_id: str
    name: str
    corpus: str
    modality: str
    kind: str
    evaluation: str
    protocol: ProbeProtocol
    split_description: str
    class_names: tuple[str, ...] | None = None
    target: str | None = None
    opera: bool = True
    table_builder: Callable = field(default=None, repr=False, compare=False)
    score: str | None = None
    extra_metrics: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        if self.score is not None:
            return self.score
        return "auroc" if self.kind == "classification" else "mae"

    @property
    def higher_is_better(self) -> bool:
        from ..benchmark.results import METRICS  # the one statement of each metric's direction

        return METRICS[self.metric].higher_is_better


@dataclass
class TaskContext:
    """What a task-table builder needs: the corpus folder (may be ``None``), its file index, OPERA's
    pinned files and the report to fill. A builder whose split depends on what is on disk sets ``split_mode``
    and ``test_splits`` (see :class:`TaskData`)."""

    spec: TaskSpec
    root: Path | None
    index: FileIndex
    opera: OperaFiles
    report: BuildReport
    data_root: Path | None = None
    verify_audio: bool = True
    split_mode: str = "default"
    test_splits: tuple[str, ...] = ("test",)

    def scan(self):
        """The corpus table (requires the corpus on disk)."""
        if self.root is None:
            raise CorpusNotFoundError(
                f"{self.spec.task_id} needs the {self.spec.corpus} recordings themselves (their labels live in the audio folder)."
            )
        table = scan_corpus(self.spec.corpus, self.root, opera=self.opera, verify_audio=False)
        self.report.missing.extend(table.report.missing)
        self.report.unlabelled.extend(table.report.unlabelled)
        self.report.duplicates.update(table.report.duplicates)
        self.report.notes.extend(table.report.notes)
        return table.records


@dataclass
class TaskData:
    """A task's table and the report on its files.

    Attributes:
        spec: the task.
        table: every expected row (``audio`` is ``None`` where the file is missing or corrupt).
        report: missing/corrupt/excluded files by name.
        split_mode: which partition was used: ``"default"`` (the one in ``spec.split_description``),
            ``"official"`` (the corpus' own train/test parts) or a named fallback such as SPRSound's
            ``"patient-grouped-fallback"`` when only part of the corpus is present.
        test_splits: the ``split`` values scored as test sets, each reported on its own (SPRSound's official
            mode has ``("test_inter", "test_intra")``); the first is the headline score.
    """

    spec: TaskSpec
    table: object
    report: BuildReport
    split_mode: str = "default"
    test_splits: tuple[str, ...] = ("test",)

    @property
    def available(self):
        """Rows whose audio is present and decodable."""
        return self.table[self.table["audio"].notna()].reset_index(drop=True)

    def counts(self, available_only: bool = False) -> dict:
        """Row counts per split (or fold count) and label, for reports and sanity checks."""
        frame = self.available if available_only else self.table
        column = "split" if "split" in frame.columns else None
        counts: dict = {"total": len(frame)}
        if column:
            counts["per_split"] = {str(k): int(v) for k, v in frame[column].value_counts().items()}
        if "fold" in frame.columns:
            counts["folds"] = int(frame.loc[frame["fold"] != "", "fold"].nunique())
        if self.spec.kind == "classification":
            counts["per_label"] = {
                str(self.spec.class_names[int(k)]): int(v)
                for k, v in frame["label"].value_counts().sort_index().items()
            }
        return counts

    def to_dataset_dict(self, sampling_rate: int | None = None):
        """``DatasetDict`` (train/validation/test, or ``all`` for cross-validated tasks) of available rows."""
        frame = self.available
        split_column = "split" if "split" in frame.columns else None
        return records_to_dataset_dict(frame, split_column, sampling_rate)


# --------------------------------------------------------------------------------------------------
# Split helpers (scikit-learn's splitters, called exactly as OPERA calls them)
# --------------------------------------------------------------------------------------------------


def _draw_validation(frame, fraction: float, seed: int, stratify: bool = True):
    """Move ``fraction`` of the ``train`` rows (in table order) to ``validation``, as OPERA's
    ``train_test_split(X_train, y_train, test_size=fraction, random_state=seed, stratify=y_train)``."""
    from sklearn.model_selection import train_test_split

    train_positions = [i for i, s in enumerate(frame["split"]) if s == "train"]
    labels = frame["label"].to_numpy()[train_positions]
    _, val_positions = train_test_split(
        train_positions, test_size=fraction, random_state=seed, stratify=labels if stratify else None
    )
    split = frame["split"].to_numpy(dtype=object).copy()
    split[val_positions] = "validation"
    frame = frame.copy()
    frame["split"] = split
    return frame


def patient_grouped_split(frame, seed: int = 1337, n_splits: int = 5, test: bool = True):
    """Stratified, subject-grouped split of the rows marked ``train`` (all rows when there is no ``split``
    column): one fold of their subjects to test (when ``test``), one to validation, the rest stay in train.
    Rows of other splits (e.g. an official test part) are left alone."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    frame = frame.copy()
    split = (
        frame["split"].to_numpy(dtype=object).copy()
        if "split" in frame.columns
        else np.array(["train"] * len(frame), dtype=object)
    )
    pool = np.flatnonzero(split == "train")
    folds = list(
        StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(
            pool, frame["label"].to_numpy()[pool], frame["subject_id"].to_numpy()[pool]
        )
    )
    if test:
        split[pool[folds[0][1]]] = "test"
        split[pool[folds[1][1]]] = "validation"
    else:
        split[pool[folds[0][1]]] = "validation"
    frame["split"] = split
    return frame


def _resolve(ctx: TaskContext, rows: list[dict], *, by: str = "name", tail: int = 1) -> list[dict]:
    """Fill ``audio`` for each row from the corpus index (``None`` when absent)."""
    for row in rows:
        if by == "name":
            path = ctx.index.find(name=Path(row["file"]).name)
        elif by == "stem":
            stem = Path(row["file"]).stem
            path = ctx.index.find(stem=stem) or ctx.index.find(stem=stem[:-1])
        else:
            path = ctx.index.find(relpath=row["file"], tail=tail)
        row["audio"] = str(path) if path is not None else None
    return rows


def _opera_relative(path: str, corpus_folder: str) -> str:
    """``datasets/KAUH/AudioFiles/x.wav`` -> ``AudioFiles/x.wav`` (path inside the corpus folder)."""
    marker = f"datasets/{corpus_folder}/"
    return path.split(marker, 1)[1] if marker in path else path


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


def _draw_validation_then_resolve(
    ctx: TaskContext, rows: list[dict], *, fraction: float, seed: int, by: str, tail: int = 1
):
    """Task table from rows with a ``train``/``test`` split: draw the validation rows (``_draw_validation``),
    then fill ``audio`` (``_resolve``). The draw comes first so it never depends on which files are on disk."""
    frame = _draw_validation(_frame(rows), fraction=fraction, seed=seed)
    return _frame(_resolve(ctx, frame.to_dict("records"), by=by, tail=tail))


def _opera_committed_split(
    ctx: TaskContext, files_npy: str, labels_npy: str, splits_npy: str
) -> list[tuple[str, int, str]]:
    """``(file name, label, split)`` per row of a split OPERA committed as three parallel ``.npy`` arrays (recording
    paths, class ids, ``train``/``val``/``test``); OPERA's ``val`` is renamed ``validation`` as in every task table."""
    files = ctx.opera.load_npy(files_npy)
    labels = ctx.opera.load_npy(labels_npy)
    splits = ctx.opera.load_npy(splits_npy)
    return [
        (Path(str(f)).name, int(y), {"val": "validation"}.get(str(s), str(s))) for f, y, s in zip(files, labels, splits)
    ]


# --------------------------------------------------------------------------------------------------
# Task tables
# --------------------------------------------------------------------------------------------------


def _coviduk_table(modality: str):
    def build(ctx: TaskContext):
        committed = _opera_committed_split(
            ctx,
            f"feature/coviduk_eval/sound_dir_loc_{modality}.npy",
            f"feature/coviduk_eval/label_{modality}.npy",
            f"feature/coviduk_eval/split_{modality}.npy",
        )
        participants = {}
        metadata = ctx.index.find_metadata("audio_metadata.csv")
        if metadata is not None:
            for row in read_table_rows(metadata):
                participants[row.get(f"{modality}_file_name")] = row.get("participant_identifier")
        rows = [
            {"file": name, "label": label, "subject_id": participants.get(name, Path(name).stem), "split": split}
            for name, label, split in committed
        ]
        return _frame(_resolve(ctx, rows, by="name"))

    return build


def _covid19_sounds_table(modality: str):
    def build(ctx: TaskContext):
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
        rows = [
            {
                "file": r.file,
                "audio": r.audio,
                "label": int(r.label),
                "subject_id": r.subject_id,
                "split": r.official_split,
            }
            for r in records.itertuples()
        ]
        return _frame(rows)

    return build


def _coughvid_table(label_name: str):
    def build(ctx: TaskContext):
        committed = _opera_committed_split(
            ctx,
            f"feature/coughvid_eval/sound_dir_loc_{label_name}.npy",
            f"feature/coughvid_eval/label_{label_name}.npy",
            f"feature/coughvid_eval/split_{label_name}.npy",
        )
        rows = [
            {"file": name, "label": label, "subject_id": Path(name).stem, "split": split}
            for name, label, split in committed
        ]
        return _frame(_resolve(ctx, rows, by="stem"))

    return build


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
    return _draw_validation_then_resolve(ctx, rows, fraction=0.2, seed=1337, by="name")


def _icbhi_cycle_table(ctx: TaskContext):
    """The ICBHI 2017 challenge task: every annotated respiratory cycle of the official train/test list, classed
    normal / crackle / wheeze / both from the recording's ``<recording>.txt``. The official list is read from the
    corpus folder, else OPERA's pinned copy. The challenge has no validation set: one fifth of the patients of the
    official training list (``train_test_split`` of the sorted patient ids, seed 1337) are held out for checkpoint
    selection. The draw uses only the list, so it does not depend on which annotation or audio files are present."""
    from sklearn.model_selection import train_test_split

    split_path = _metadata_file(
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
    return _frame(rows)


def _coswara_table(label_name: str, split_variant: str):
    def build(ctx: TaskContext):
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
            relative = _opera_relative(path, "Coswara-Data")
            rows.append({"file": relative, "label": label, "subject_id": Path(relative).parent.name, "split": part})
        return _draw_validation_then_resolve(ctx, rows, fraction=0.2, seed=1337, by="relpath", tail=2)

    return build


def _kauh_table(split_file: str):
    """T10 from OPERA's KAUH subset. ``train_test_split.npy`` is the split OPERA's linear_eval.py uses
    (and its published T10 numbers); it puts the bell/diaphragm/extended-filter versions of one
    patient's recording in different splits. ``train_test.npy`` is OPERA's subject-disjoint split."""

    def build(ctx: TaskContext):
        return _kauh_rows(ctx, split_file)

    return build


def _kauh_rows(ctx: TaskContext, split_file: str):
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
    return _draw_validation_then_resolve(ctx, rows, fraction=0.1, seed=1337, by="name")


def _respiratory_tr_table(ctx: TaskContext):
    committed = _opera_committed_split(
        ctx,
        "feature/copd_eval/sound_dir_loc.npy",
        "feature/copd_eval/labels.npy",
        "feature/copd_eval/train_test_split.npy",
    )
    rows = [
        {"file": name, "label": label, "subject_id": name[:4], "split": split} for name, label, split in committed
    ]
    return _frame(_resolve(ctx, rows, by="name"))


def _ssbpr_table(ctx: TaskContext):
    from sklearn.model_selection import train_test_split

    records = ctx.scan().sort_values("file", kind="stable").reset_index(drop=True)
    ctx.report.exclude(
        "prone position (class 5) is not used by OPERA's T12", records.loc[records["position"] == 5, "file"].tolist()
    )
    records = records[records["position"] != 5].reset_index(drop=True)
    labels = records["position"].to_numpy()
    positions = list(range(len(records)))
    # OPERA: 60/20/20 stratified, random_state 42 (first test, then validation from the rest).
    rest, test = train_test_split(positions, test_size=0.2, random_state=42, stratify=labels)
    train, val = train_test_split(rest, test_size=0.25, random_state=42, stratify=labels[rest])
    split = {**{i: "train" for i in train}, **{i: "validation" for i in val}, **{i: "test" for i in test}}
    rows = [
        {"file": r.file, "audio": r.audio, "label": int(r.position), "subject_id": r.subject_id, "split": split[i]}
        for i, r in enumerate(records.itertuples())
    ]
    ctx.report.notes.append(
        "row order: sorted file names (OPERA used unsorted glob order, so its exact 60/20/20 draw cannot be reproduced)"
    )
    return _frame(rows)


def _mmlung_table(modality: str, target: str):
    def build(ctx: TaskContext):
        records = ctx.scan()
        records = records[records["modality"] == modality].reset_index(drop=True)
        rows = [
            {
                "file": r.file,
                "audio": r.audio,
                "label": float(getattr(r, target)),
                "subject_id": r.subject_id,
                "fold": str(r.subject_id),
            }
            for r in records.itertuples()
        ]
        return _frame(rows)

    return build


NOSEMIC_TEST_SUBJECTS = ("4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "17", "18", "19", "20", "21")


def _nosemic_table(ctx: TaskContext):
    records = ctx.scan()
    # OPERA leaves out each listed subject in turn; other subjects are always in the training folds.
    rows = [
        {
            "file": r.file,
            "audio": r.audio,
            "label": float(r.respiratory_rate),
            "subject_id": r.subject_id,
            "fold": r.subject_id if r.subject_id in NOSEMIC_TEST_SUBJECTS else "",
        }
        for r in records.itertuples()
    ]
    return _frame(rows)


SPRSOUND_TEST_PARTS = ("test_inter", "test_intra")
SPRSOUND_SPLIT_DESCRIPTION = (
    "official (train part and test parts present): the train part is split by patient into train and validation "
    "(one fifth of its patients, stratified, seed 1337); the inter-patient and intra-patient test parts are scored "
    "separately (inter first). Fallback (only one part present): patient-grouped stratified 60/20/20 split of it "
    "(seed 1337), split mode 'patient-grouped-fallback'"
)


COVID_COUGH_SPLIT_DESCRIPTION = (
    "stratified by label and recording source (call centre 8 kHz / Telegram 48 kHz) 60/20/20 split of every "
    "recording listed in metadata.json, in file-name order (scikit-learn train_test_split, seed 1337: 20 % to test, "
    "then a quarter of the rest to validation); no participant ids exist, so each recording is its own unit"
)


def covid_cough_split(names: list[str], labels: list[int], sources: list[str], seed: int = 1337) -> dict[str, str]:
    """File name -> ``train``/``validation``/``test`` of :data:`COVID_COUGH_SPLIT_DESCRIPTION`. Depends only on the
    listing (not on which files are on disk or decodable), so every model and run scores the same rows."""
    from sklearn.model_selection import train_test_split

    order = sorted(range(len(names)), key=lambda i: names[i])
    strata = [f"{labels[i]}/{sources[i]}" for i in order]
    rest, test = train_test_split(order, test_size=0.2, random_state=seed, stratify=strata)
    rest_strata = [f"{labels[i]}/{sources[i]}" for i in rest]
    train, validation = train_test_split(rest, test_size=0.25, random_state=seed, stratify=rest_strata)
    split = {names[i]: "train" for i in train}
    split.update({names[i]: "validation" for i in validation})
    split.update({names[i]: "test" for i in test})
    return split


def _covid_cough_table(ctx: TaskContext):
    import json

    records = ctx.scan()
    metadata = ctx.index.find_metadata("metadata.json")
    with open(metadata, encoding="utf-8") as handle:
        listing = json.load(handle)
    names = [str(entry["filename"]) for entry in listing]
    labels = [int(bool(entry["covid19"])) for entry in listing]
    sources = [str(entry.get("source")) for entry in listing]
    split = covid_cough_split(names, labels, sources)
    audio = dict(zip(records["file"], records["audio"]))
    rows = [
        {
            "file": name,
            "audio": audio.get(name),
            "label": label,
            "subject_id": Path(name).stem,
            "source": source,
            "split": split[name],
        }
        for name, label, source in zip(names, labels, sources)
    ]
    ctx.report.notes.append(
        "split: " + COVID_COUGH_SPLIT_DESCRIPTION + "; the source predicts the label (most call-centre recordings are "
        "positive, most Telegram ones negative), so a model can score by recognising the channel"
    )
    return _frame(rows)


def _sprsound_split(frame, ctx: TaskContext):
    """The challenge's protocol when the train part and a test part are on disk, else a labelled fallback.

    Official mode: train on the train part (a patient-grouped fifth of it held out for validation) and test on the
    inter-patient and intra-patient parts separately; the intra part's patients are in the train part by design,
    so merging the two would mix two different questions. A test part that is absent leaves its split empty, which
    the benchmark refuses before extracting anything. Fallback (``../shared`` has only the test part): one
    patient-grouped 60/20/20 split of what is present, recorded as ``patient-grouped-fallback``.
    """
    present = set(frame["official_split"])
    frame = frame.copy()
    frame["split"] = frame["official_split"]
    if "train" in present and present & set(SPRSOUND_TEST_PARTS):
        ctx.split_mode = "official"
        ctx.test_splits = SPRSOUND_TEST_PARTS
        ctx.report.notes.append(
            "split mode official: train part -> train/validation (patient-grouped, 1/5 of its patients, seed 1337); "
            "test_inter and test_intra scored separately"
        )
        return patient_grouped_split(frame, test=False)
    parts = "train part" if "train" in present else "test part"
    ctx.split_mode = "patient-grouped-fallback"
    ctx.report.notes.append(
        f"split mode patient-grouped-fallback: only the SPRSound {parts} is present, so it is split by patient into "
        "train/validation/test (stratified 60/20/20, seed 1337); this is not the challenge's protocol"
    )
    logger.warning("%s: %s", ctx.spec.task_id, ctx.report.notes[-1])
    frame["split"] = "train"
    return patient_grouped_split(frame, test=True)


def _sprsound_record_table(ctx: TaskContext):
    records = ctx.scan()
    poor = records["record_label"] == "Poor Quality"
    ctx.report.exclude("record label Poor Quality", records.loc[poor, "file"].tolist())
    records = records[~poor].reset_index(drop=True)
    frame = _frame(
        [
            {
                "file": r.file,
                "audio": r.audio,
                "label": int(r.record_label != "Normal"),
                "subject_id": r.subject_id,
                "official_split": r.official_split,
            }
            for r in records.itertuples()
        ]
    )
    return _sprsound_split(frame, ctx).drop(columns=["official_split"])


def _sprsound_event_table(ctx: TaskContext):
    records = ctx.scan()
    rows = []
    for r in records.itertuples():
        for number, event in enumerate(r.events):
            if event["end_ms"] <= event["start_ms"]:
                ctx.report.exclude("event with end <= start", [f"{r.file}#{number}"])
                continue
            rows.append(
                {
                    "file": f"{r.file}#{number}",
                    "audio": r.audio,
                    "label": int(event["type"] != "Normal"),
                    "subject_id": r.subject_id,
                    "start_s": event["start_ms"] / 1000.0,
                    "end_s": event["end_ms"] / 1000.0,
                    "official_split": r.official_split,
                }
            )
    return _sprsound_split(_frame(rows), ctx).drop(columns=["official_split"])


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

_BINARY = ("negative", "positive")


def _holdout(epochs: int, batch_size: int, validation: str, checkpoint_every: int = 1) -> ProbeProtocol:
    return ProbeProtocol(epochs=epochs, batch_size=batch_size, checkpoint_every=checkpoint_every, validation=validation)


def _leave_one_out(validation_fraction: float, **probe) -> ProbeProtocol:
    return ProbeProtocol(
        epochs=64,
        batch_size=64,
        l2_strength=1e-1,
        seeds=(0,),
        inner_validation_fraction=validation_fraction,
        inner_validation_seed=42,
        validation=f"{validation_fraction * 100:g} % of each fold's training rows, unstratified (seed 42)",
        **probe,
    )


_OPERA_SPLIT_VALIDATION = "OPERA's committed validation split"
_STRATIFIED_20 = "20 % of train, stratified (seed 1337)"

#: Every task's linear-probe protocol: the one table the task registry below takes its protocols from.
#:
#: OPERA values are those its ``src/benchmark/linear_eval.py`` (pinned commit) runs: the epochs, batch size, L2 and
#: checkpoint period each ``linear_evaluation_*`` call passes; Adam with the learning rate decayed by 0.97 per epoch;
#: gradient clipping at 1.0; 5 seeds for hold-out tasks, one (seed 0) for the leave-one-out regressions. The learning
#: rate is 1e-4 for every task: OPERA builds ``LinearHead`` / ``LinearHeadR`` without an ``lr`` argument, so their
#: default 1e-4 is what the optimiser gets, and the ``lr=1e-1`` passed to the MMlung evaluation (T13-T18) never
#: reaches it. SPRSound (S1/S2) and the ICBHI challenge's cycle task (ICBHI-cycle) are not OPERA tasks; they use the
#: OPERA defaults (ICBHI-cycle with T7's batch size).
PROBE_PROTOCOLS: dict[str, ProbeProtocol] = {
    "T1": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T2": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T3": _holdout(64, 64, "official COVID-19 Sounds task-1 validation split"),
    "T4": _holdout(64, 64, "official COVID-19 Sounds task-1 validation split"),
    "T5": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T6": _holdout(64, 64, _OPERA_SPLIT_VALIDATION),
    "T7": _holdout(64, 32, _STRATIFIED_20),
    "ICBHI-cycle": _holdout(64, 32, "a fifth of the official training list's patients, unstratified (seed 1337)"),
    "T8": _holdout(64, 32, _STRATIFIED_20),
    "T9": _holdout(64, 32, _STRATIFIED_20),
    "T8-random": _holdout(64, 32, _STRATIFIED_20),
    "T9-random": _holdout(64, 32, _STRATIFIED_20),
    "T10": _holdout(50, 32, "10 % of train, stratified (seed 1337)", checkpoint_every=5),
    "T10-subject": _holdout(50, 32, "10 % of train, stratified (seed 1337)", checkpoint_every=5),
    "T11": _holdout(64, 32, _OPERA_SPLIT_VALIDATION),
    "T12": _holdout(32, 64, "20 % of all recordings, stratified (seed 42)", checkpoint_every=3),
    **{
        f"T{number}": _leave_one_out(
            0.11, checkpoint_every=3, early_stopping_patience=5, early_stopping_min_delta=0.001
        )
        for number in range(13, 19)
    },
    "T19": _leave_one_out(0.2),
    "S1": _holdout(64, 64, "a patient-grouped, stratified fifth of the training patients (seed 1337)"),
    "S2": _holdout(64, 64, "a patient-grouped, stratified fifth of the training patients (seed 1337)"),
    "COVID-cough": _holdout(64, 32, "20 % of all recordings, stratified by label and source (seed 1337)"),
}


def _scientific(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-")


def protocol_table() -> str:
    """:data:`PROBE_PROTOCOLS` as a markdown table (the README shows it)."""
    header = (
        "| task | metric | evaluation | epochs | batch | lr | L2 | checkpoint every | early stopping | seeds "
        "| validation |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for task_id, protocol in PROBE_PROTOCOLS.items():
        spec = TASKS[task_id]
        stopping = (
            f"patience {protocol.early_stopping_patience}, min delta {protocol.early_stopping_min_delta:g}"
            if protocol.early_stopping_patience is not None
            else "–"
        )
        seeds = ", ".join(str(seed) for seed in protocol.seeds)
        cells = [
            task_id,
            spec.metric.upper(),
            spec.evaluation,
            str(protocol.epochs),
            str(protocol.batch_size),
            _scientific(protocol.learning_rate),
            _scientific(protocol.l2_strength),
            str(protocol.checkpoint_every),
            stopping,
            seeds,
            protocol.validation,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


TASKS: dict[str, TaskSpec] = {}


def _task(spec: TaskSpec) -> None:
    if spec.protocol is not PROBE_PROTOCOLS.get(spec.task_id):
        raise ValueError(f"{spec.task_id}: its probe protocol must be its row of PROBE_PROTOCOLS (the one table).")
    TASKS[spec.task_id] = spec


_task(
    TaskSpec(
        task_id="T1",
        name="UK COVID-19 exhalation: COVID-19 detection",
        corpus="uk_covid19",
        modality="exhalation",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T1"],
        split_description="OPERA's committed participant-disjoint train/val/test files (1000/500/1000)",
        class_names=_BINARY,
        table_builder=_coviduk_table("exhalation"),
    )
)
_task(
    TaskSpec(
        task_id="T2",
        name="UK COVID-19 cough: COVID-19 detection",
        corpus="uk_covid19",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T2"],
        split_description="OPERA's committed participant-disjoint train/val/test files (1000/500/1000)",
        class_names=_BINARY,
        table_builder=_coviduk_table("cough"),
    )
)
_task(
    TaskSpec(
        task_id="T3",
        name="COVID-19 Sounds breath: COVID-19 detection",
        corpus="covid19_sounds",
        modality="breath",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T3"],
        split_description="official task-1 train/validation/test; every 5th training sample (OPERA)",
        class_names=_BINARY,
        table_builder=_covid19_sounds_table("breath"),
    )
)
_task(
    TaskSpec(
        task_id="T4",
        name="COVID-19 Sounds cough: COVID-19 detection",
        corpus="covid19_sounds",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T4"],
        split_description="official task-1 train/validation/test; every 5th training sample (OPERA)",
        class_names=_BINARY,
        table_builder=_covid19_sounds_table("cough"),
    )
)
_task(
    TaskSpec(
        task_id="T5",
        name="CoughVID: COVID-19 detection",
        corpus="coughvid",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T5"],
        split_description="OPERA's committed train/val/test uuids",
        class_names=("healthy", "COVID-19"),
        table_builder=_coughvid_table("covid"),
    )
)
_task(
    TaskSpec(
        task_id="T6",
        name="CoughVID: gender detection",
        corpus="coughvid",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T6"],
        split_description="OPERA's committed train/val/test uuids",
        class_names=("male", "female"),
        table_builder=_coughvid_table("gender"),
    )
)
_task(
    TaskSpec(
        task_id="T7",
        name="ICBHI: COPD detection",
        corpus="icbhi",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T7"],
        split_description="official ICBHI train/test list; 20 % stratified validation from train (seed 1337)",
        class_names=("Healthy", "COPD"),
        table_builder=_icbhi_copd_table,
    )
)
_task(
    TaskSpec(
        task_id="ICBHI-cycle",
        name="ICBHI 2017 challenge: respiratory cycle classification (normal/crackle/wheeze/both)",
        corpus="icbhi",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["ICBHI-cycle"],
        split_description=(
            "official ICBHI 60/40 train/test list; validation: one fifth of the training patients (seed 1337); scored "
            "by the ICBHI score (mean of sensitivity and specificity) of the predicted class"
        ),
        class_names=ICBHI_CYCLE_CLASSES,
        opera=False,
        table_builder=_icbhi_cycle_table,
        score="icbhi_score",
        extra_metrics=("sensitivity", "specificity", "auroc"),
    )
)
_task(
    TaskSpec(
        task_id="T8",
        name="Coswara shallow cough: smoker detection",
        corpus="coswara",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T8"],
        split_description="HeAR-aligned test set (OPERA's committed split); 20 % stratified validation (seed 1337)",
        class_names=("non-smoker", "smoker"),
        table_builder=_coswara_table("smoker", "hear"),
    )
)
_task(
    TaskSpec(
        task_id="T9",
        name="Coswara shallow cough: sex detection",
        corpus="coswara",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T9"],
        split_description="HeAR-aligned test set (OPERA's committed split); 20 % stratified validation (seed 1337)",
        class_names=("male", "female"),
        table_builder=_coswara_table("sex", "hear"),
    )
)
_task(
    TaskSpec(
        task_id="T8-random",
        name="Coswara shallow cough: smoker detection (random split)",
        corpus="coswara",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T8-random"],
        split_description="random stratified 80/20 train/test (seed 1337); 20 % stratified validation (seed 1337)",
        class_names=("non-smoker", "smoker"),
        table_builder=_coswara_table("smoker", "random"),
    )
)
_task(
    TaskSpec(
        task_id="T9-random",
        name="Coswara shallow cough: sex detection (random split)",
        corpus="coswara",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T9-random"],
        split_description="random stratified 80/20 train/test (seed 1337); 20 % stratified validation (seed 1337)",
        class_names=("male", "female"),
        table_builder=_coswara_table("sex", "random"),
    )
)
_task(
    TaskSpec(
        task_id="T10",
        name="KAUH: obstructive (asthma/COPD) vs healthy",
        corpus="kauh",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T10"],
        split_description=(
            "OPERA's committed split used by its linear_eval.py (non-train rows are test; filter variants of one "
            "recording can fall in different splits); 10 % stratified validation (seed 1337)"
        ),
        class_names=("healthy", "obstructive"),
        table_builder=_kauh_table("train_test_split.npy"),
    )
)
_task(
    TaskSpec(
        task_id="T10-subject",
        name="KAUH: obstructive vs healthy (subject-disjoint split)",
        corpus="kauh",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T10-subject"],
        split_description=(
            "OPERA's committed subject-disjoint split (train_test.npy); 10 % stratified validation (seed 1337)"
        ),
        class_names=("healthy", "obstructive"),
        opera=False,
        table_builder=_kauh_table("train_test.npy"),
    )
)
_task(
    TaskSpec(
        task_id="T11",
        name="Respiratory@TR: COPD severity (COPD0-4)",
        corpus="respiratory_tr",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T11"],
        split_description="OPERA's committed patient-level train/val/test split",
        class_names=("COPD0", "COPD1", "COPD2", "COPD3", "COPD4"),
        table_builder=_respiratory_tr_table,
    )
)
_task(
    TaskSpec(
        task_id="T12",
        name="SSBPR: snoring body position",
        corpus="ssbpr",
        modality="snoring",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["T12"],
        split_description="stratified 60/20/20 (seed 42); prone recordings excluded",
        class_names=("supine", "supine-left-head", "supine-right-head", "left-side", "right-side"),
        table_builder=_ssbpr_table,
    )
)
for _number, (_modality, _label) in enumerate(
    [(m, t) for m in ("deep_breath", "o_single") for t in ("FVC", "FEV1", "FEV1_FVC")], start=13
):
    _task(
        TaskSpec(
            task_id=f"T{_number}",
            name=f"MMlung {_modality.replace('_', ' ')}: {_label.replace('_', '/')} estimation",
            corpus="mmlung",
            modality="breath" if _modality == "deep_breath" else "vowel",
            kind="regression",
            evaluation="loocv",
            protocol=PROBE_PROTOCOLS[f"T{_number}"],
            split_description="leave-one-subject-out over all 40 subjects; 11 % inner validation (seed 42)",
            target=_label,
            table_builder=_mmlung_table(_modality, _label),
        )
    )
_task(
    TaskSpec(
        task_id="T19",
        name="NoseMic: respiratory rate estimation",
        corpus="nosemic",
        modality="nasal breath",
        kind="regression",
        evaluation="loso",
        protocol=PROBE_PROTOCOLS["T19"],
        split_description="leave-one-subject-out over OPERA's 16 listed subjects; 20 % inner validation (seed 42)",
        target="respiratory_rate",
        table_builder=_nosemic_table,
    )
)
_task(
    TaskSpec(
        task_id="S1",
        name="SPRSound record level: normal vs adventitious",
        corpus="sprsound",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["S1"],
        split_description=SPRSOUND_SPLIT_DESCRIPTION + "; Poor Quality records excluded",
        class_names=("Normal", "Adventitious"),
        opera=False,
        table_builder=_sprsound_record_table,
    )
)
_task(
    TaskSpec(
        task_id="S2",
        name="SPRSound event level: normal vs adventitious",
        corpus="sprsound",
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["S2"],
        split_description=SPRSOUND_SPLIT_DESCRIPTION + "; every annotated respiratory event is one row",
        class_names=("Normal", "Adventitious"),
        opera=False,
        table_builder=_sprsound_event_table,
    )
)

_task(
    TaskSpec(
        task_id="COVID-cough",
        name="COVID-19 induced coughs (CC0): COVID-19 detection",
        corpus="covid19_cough",
        modality="cough",
        kind="classification",
        evaluation="holdout",
        protocol=PROBE_PROTOCOLS["COVID-cough"],
        split_description=COVID_COUGH_SPLIT_DESCRIPTION,
        class_names=("negative", "COVID-19"),
        opera=False,
        table_builder=_covid_cough_table,
    )
)

TASK_ALIASES = {"sprsound-record": "S1", "sprsound-event": "S2", "sprsound": "S1", "covid19-cough": "COVID-cough"}
EXTRA_TASK_IDS = ("ICBHI-cycle", "S1", "S2", "COVID-cough")
OPERA_TASK_IDS = tuple(f"T{i}" for i in range(1, 20))


def get_task_spec(task_id: str) -> TaskSpec:
    key = TASK_ALIASES.get(task_id.strip().lower(), task_id.strip())
    for candidate, spec in TASKS.items():
        if candidate.lower() == key.lower():
            return spec
    raise KeyError(f"Unknown task {task_id!r}. Known tasks: {', '.join(TASKS)} (aliases: {', '.join(TASK_ALIASES)}).")


def resolve_task_ids(selection: str | list[str]) -> list[str]:
    """``"T7,T10"`` / ``["T7"]`` / ``"all"`` (T1-T19, ICBHI-cycle and the SPRSound tasks) / ``"opera"`` (T1-T19)."""
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    items = [i.strip() for i in items if i.strip()]
    if not items:
        raise ValueError("No task given: use e.g. --tasks T7,T10,T11, --tasks opera or --tasks all.")
    result: list[str] = []
    for item in items:
        if item.lower() == "all":
            expanded = list(OPERA_TASK_IDS) + list(EXTRA_TASK_IDS)
        elif item.lower() == "opera":
            expanded = list(OPERA_TASK_IDS)
        else:
            expanded = [get_task_spec(item).task_id]
        result.extend(t for t in expanded if t not in result)
    return result


def default_opera_files(
    data_root: str | os.PathLike | None, opera_dir: str | os.PathLike | None = None, **kwargs
) -> OperaFiles:
    """OPERA file resolver that also looks in ``<data_root>/opera`` and an OPERA checkout above ``data_root``."""
    local = []
    if opera_dir is not None:
        local.append(Path(opera_dir))
    if data_root is not None:
        data_root = Path(data_root)
        local.append(data_root / "opera")
        # A data root that is an OPERA checkout's datasets/ folder: the repository is its parent.
        if data_root.name == "datasets":
            local.append(data_root.parent)
    return OperaFiles(local_dirs=tuple(local), **kwargs)


def load_task(
    task_id: str,
    data_root: str | os.PathLike | None,
    *,
    opera: OperaFiles | None = None,
    opera_dir: str | os.PathLike | None = None,
    verify_audio: bool = True,
    require_audio: bool = True,
) -> TaskData:
    """Build a task's table from the corpus under ``data_root`` and OPERA's pinned files.

    Args:
        task_id: e.g. ``"T7"`` (see ``TASKS``).
        data_root: folder holding the corpus folders (``icbhi/``, ``KAUH/``, ``copd/``, ``sprsound/``...).
        opera: resolver for OPERA's split files (default: ``<data_root>/opera``, ``opera_dir``, cache,
            then the pinned commit online).
        verify_audio: probe every resolved file with torchcodec and treat undecodable files as corrupt.
        require_audio: raise when the corpus folder is absent. With ``False`` a table is still built
            from OPERA's files (every row then has ``audio=None`` and is listed as missing).
    """
    spec = get_task_spec(task_id)
    opera = opera or default_opera_files(data_root, opera_dir)
    root = None
    if data_root is not None:
        try:
            root = find_corpus_dir(spec.corpus, data_root)
        except CorpusNotFoundError:
            if require_audio:
                raise
    elif require_audio:
        raise CorpusNotFoundError(
            f"{spec.task_id} needs --data-root with the {get_corpus_spec(spec.corpus).title} corpus."
        )
    report = BuildReport(spec.task_id, str(root) if root else "")
    index = FileIndex(root) if root is not None else FileIndex(Path(os.devnull))
    ctx = TaskContext(spec, root, index, opera, report, Path(data_root) if data_root else None, verify_audio)
    table = spec.table_builder(ctx).reset_index(drop=True)
    report.duplicates.update({name: [str(p) for p in paths] for name, paths in index.duplicates.items()})
    table = _check_table_audio(table, report, verify_audio)
    report.n_usable = int(table["audio"].notna().sum())
    report.log()
    return TaskData(spec, table, report, ctx.split_mode, ctx.test_splits)


def _check_table_audio(table, report: BuildReport, verify_audio: bool):
    """Record missing files and blank out undecodable ones (each file probed once)."""
    if "audio" not in table.columns:
        table["audio"] = None
    table = table.astype({"audio": object})
    missing = table["audio"].isna()
    report.missing.extend(table.loc[missing, "file"].tolist())
    unique_paths = sorted(set(table.loc[~missing, "audio"]))
    usable = dict(zip(unique_paths, check_audio_files([Path(p) for p in unique_paths], report, verify_audio)))
    bad = table["audio"].map(lambda p: p is not None and not usable.get(p, True))
    table.loc[bad, "audio"] = None
    return table


def with_protocol(spec: TaskSpec, **overrides) -> TaskSpec:
    """A copy of ``spec`` with some probe hyper-parameters replaced (e.g. fewer epochs for a smoke test)."""
    return replace(spec, protocol=replace(spec.protocol, **overrides))
