"""Helpers the corpus modules' task-table builders share: the split draws (scikit-learn's splitters, called exactly
as OPERA calls them), OPERA's committed splits, and resolving each row's recording in the corpus folder.

Splits are drawn on the full recording list *before* looking at which audio is present, so a missing file never
changes the partition of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .task_spec import TaskContext


def draw_validation(frame, fraction: float, seed: int, stratify: bool = True):
    """Move `fraction` of the `train` rows (in table order) to `validation`, as OPERA's
    `train_test_split(X_train, y_train, test_size=fraction, random_state=seed, stratify=y_train)`."""
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
    """Stratified, subject-grouped split of the rows marked `train` (all rows when there is no `split`
    column): one fold of their subjects to test (when `test`), one to validation, the rest stay in train.
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


def resolve_audio(ctx: TaskContext, rows: list[dict], *, by: str = "name", tail: int = 1) -> list[dict]:
    """Fill `audio` for each row from the corpus index (`None` when absent)."""
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


def opera_relative(path: str, corpus_folder: str) -> str:
    """`datasets/KAUH/AudioFiles/x.wav` -> `AudioFiles/x.wav` (path inside the corpus folder)."""
    marker = f"datasets/{corpus_folder}/"
    return path.split(marker, 1)[1] if marker in path else path


def rows_frame(rows: list[dict]):
    """A pandas frame of `rows` (pandas is imported here, so importing this module stays cheap)."""
    import pandas as pd

    return pd.DataFrame(rows)


def draw_validation_then_resolve(
    ctx: TaskContext, rows: list[dict], *, fraction: float, seed: int, by: str, tail: int = 1
):
    """Task table from rows with a `train`/`test` split: draw the validation rows (`draw_validation`),
    then fill `audio` (`resolve_audio`). The draw comes first so it never depends on which files are on disk."""
    frame = draw_validation(rows_frame(rows), fraction=fraction, seed=seed)
    return rows_frame(resolve_audio(ctx, frame.to_dict("records"), by=by, tail=tail))


def opera_committed_split(
    ctx: TaskContext, files_npy: str, labels_npy: str, splits_npy: str
) -> list[tuple[str, int, str]]:
    """`(file name, label, split)` per row of a split OPERA committed as three parallel `.npy` arrays (recording
    paths, class ids, `train`/`val`/`test`); OPERA's `val` is renamed `validation` as in every task table."""
    files = ctx.opera.load_npy(files_npy)
    labels = ctx.opera.load_npy(labels_npy)
    splits = ctx.opera.load_npy(splits_npy)
    return [
        (Path(str(f)).name, int(y), {"val": "validation"}.get(str(s), str(s))) for f, y, s in zip(files, labels, splits)
    ]


def opera_variant_split(ctx: TaskContext, eval_folder: str, variant: str) -> list[tuple[str, int, str]]:
    """[`opera_committed_split`] of `feature/<eval_folder>/{sound_dir_loc,label,split}_<variant>.npy`, how OPERA
    names the splits of its UK COVID-19 (variant: modality) and CoughVID (variant: label) tasks."""
    folder = f"feature/{eval_folder}"
    return opera_committed_split(
        ctx, f"{folder}/sound_dir_loc_{variant}.npy", f"{folder}/label_{variant}.npy", f"{folder}/split_{variant}.npy"
    )


def record_rows(records, label: Callable, **columns: Callable):
    """Task table with one row per corpus record (a row of `records.itertuples()`): its `file`, `audio`,
    `label(record)` and `subject_id`, then one column per keyword (`split`, `fold`...) valued
    `column(record)`."""
    return rows_frame(
        [
            {
                "file": r.file,
                "audio": r.audio,
                "label": label(r),
                "subject_id": r.subject_id,
                **{name: column(r) for name, column in columns.items()},
            }
            for r in records.itertuples()
        ]
    )
