"""NoseMic (nasal breathing recorded by earbuds): the corpus builder and task T19 (respiratory rate, leaving out each
of OPERA's listed subjects in turn)."""

from __future__ import annotations

from ..corpus_table import CorpusScan, CorpusSpec
from ..task_spec import TaskContext, corpus_task
from ..task_tables import record_rows

CORPUS = CorpusSpec(
    name="nosemic", title="NoseMic", dirnames=("nosemic", "NoseMic"),
    access="manual", homepage="https://github.com/evelyn0414/OPERA/tree/main/datasets/nosemic",
    license="custom (University of Cambridge)",
)

NOSEMIC_TEST_SUBJECTS = ("4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "17", "18", "19", "20", "21")


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """NoseMic nasal breathing (`audio/<user>_<x>_<y>_<rate>.wav`); target `respiratory_rate`."""
    index, report = scan.index, scan.report
    rows = []
    for path in sorted(index.audio_paths(), key=lambda p: p.name):
        parts = path.stem.split("_")
        try:
            rate = float(parts[3]) if len(parts) == 4 else None
        except ValueError:
            rate = None
        if rate is None:
            report.unlabelled.append(str(path))
            continue
        rows.append({"audio": path, "file": path.name, "subject_id": parts[0], "respiratory_rate": rate})
    return rows


def _nosemic_table(ctx: TaskContext):
    records = ctx.scan()
    # OPERA leaves out each listed subject in turn; other subjects are always in the training folds.
    return record_rows(
        records,
        lambda r: float(r.respiratory_rate),
        fold=lambda r: r.subject_id if r.subject_id in NOSEMIC_TEST_SUBJECTS else "",
    )


TASK_SPECS = (
    corpus_task(
        CORPUS, task_id="T19", name="NoseMic: respiratory rate estimation", modality="nasal breath",
        kind="regression", evaluation="loso", target="respiratory_rate", table_builder=_nosemic_table,
        split_description="leave-one-subject-out over OPERA's 16 listed subjects; 20 % inner validation (seed 42)",
    ),
)
