"""SSBPR snoring sounds: the corpus builder and task T12 (body position, OPERA's stratified 60/20/20 split)."""

from __future__ import annotations

import re

from ..corpus_table import CorpusScan, CorpusSpec
from ..task_spec import TaskContext, corpus_task
from ..task_tables import record_rows

CORPUS = CorpusSpec(
    name="ssbpr", title="SSBPR", dirnames=("ssbpr", "SSBPR"),
    access="request", homepage="https://github.com/xiaoli1996/SSBPR", license="CC BY 4.0",
)


SSBPR_POSITIONS = (
    "supine",
    "supine, left lateral head",
    "supine, right lateral head",
    "left-side lying",
    "right-side lying",
    "prone",
)


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """SSBPR snoring sounds (`female|male/<...>/<A>-<B>-<C>.wav`, C = body position 0-5).

    Columns: `position` (0-5), `sex` (from the top-level folder). `subject_id` is `A-B`.
    """
    root, index, report = scan.root, scan.index, scan.report
    rows = []
    for path in index.audio_paths():
        match = re.fullmatch(r"(.+)-(\d)", path.stem)
        if match is None:
            report.unlabelled.append(str(path))
            continue
        top = path.relative_to(root).parts[0].lower()
        rows.append(
            {
                "audio": path,
                "file": path.relative_to(root).as_posix(),
                "subject_id": match.group(1),
                "position": int(match.group(2)),
                "sex": top if top in {"female", "male"} else None,
            }
        )
    return rows


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
    ctx.report.notes.append(
        "row order: sorted file names (OPERA used unsorted glob order, so its exact 60/20/20 draw cannot be reproduced)"
    )
    return record_rows(records, lambda r: int(r.position), split=lambda r: split[r.Index])


TASK_SPECS = (
    corpus_task(
        CORPUS, task_id="T12", name="SSBPR: snoring body position", modality="snoring", kind="classification",
        evaluation="holdout", split_description="stratified 60/20/20 (seed 42); prone recordings excluded",
        class_names=("supine", "supine-left-head", "supine-right-head", "left-side", "right-side"),
        table_builder=_ssbpr_table,
    ),
)
