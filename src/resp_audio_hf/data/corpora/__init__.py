"""The corpora, one module each: its builder, which turns the official download layout into a table, and the specs of
its tasks (OPERA's `processing/<corpus>_processing.py` is the precedent). This package assembles them into
`CORPORA` and scans a corpus into a [`~resp_audio_hf.data.corpus_table.CorpusTable`].

Every builder scans one corpus directory, joins the audio files with the corpus' own metadata and returns one row per
recording (`audio` path, `file` identifier, `subject_id` and label columns); [`scan_corpus`] turns them into
a pandas frame plus a [`~resp_audio_hf.data.build_report.BuildReport`] naming every file that was expected but is
missing, present but undecodable, or present without a label. Nothing is dropped without appearing in the report, and
what is intact stays usable.

`CorpusTable.to_dataset_dict()` gives a `datasets.DatasetDict` whose `audio` column is a `datasets.Audio`
feature (decoded lazily with torchcodec). Corpora with an official partition (ICBHI, UK COVID-19, COVID-19 Sounds,
SPRSound) keep it as splits; the others have one `all` split.

Directory names follow OPERA's `datasets/` folder (`KAUH`, `copd`, `covidUK`, ...) as well as lower-case
aliases, so a data root can be an OPERA checkout's `datasets` folder.

A new corpus is one module here, listed in `CORPUS_MODULES`, with `CORPUS` (its
[`~resp_audio_hf.data.corpus_table.CorpusSpec`]), `corpus_rows(scan: CorpusScan) -> list[dict]` (its builder:
one row per expected recording, `audio` the resolved path or `None`, in the table's order; files it cannot use go
to `scan.report`) and `TASK_SPECS` (its tasks, made with [`~resp_audio_hf.data.task_spec.corpus_task`]); each
task's probe protocol is its row of `resp_audio_hf.data.probe_protocols.PROBE_PROTOCOLS`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..build_report import BuildReport
from ..corpus_table import CorpusNotFoundError, CorpusScan, CorpusSpec, CorpusTable
from ..files import FileIndex, check_audio_files
from ..opera_files import OperaFiles
from . import (
    coswara,
    coughvid,
    covid19_cough,
    covid19_sounds,
    icbhi,
    kauh,
    mmlung,
    nosemic,
    respiratory_tr,
    sprsound,
    sprsound_challenge,
    ssbpr,
    uk_covid19,
)

#: The corpus modules, in registry order.
CORPUS_MODULES = (
    icbhi,
    respiratory_tr,
    kauh,
    coughvid,
    coswara,
    uk_covid19,
    covid19_sounds,
    ssbpr,
    mmlung,
    nosemic,
    covid19_cough,
    sprsound,
)

#: Every module holding task specs (`TASK_SPECS`): the corpus modules, then the modules of further tasks on a corpus
#: of theirs (the SPRSound challenge's four tasks).
TASK_MODULES = (*CORPUS_MODULES, sprsound_challenge)

CORPORA: dict[str, CorpusSpec] = {module.CORPUS.name: module.CORPUS for module in CORPUS_MODULES}
_BUILDERS = {module.CORPUS.name: module.corpus_rows for module in CORPUS_MODULES}


def find_corpus_dir(name: str, data_root: str | os.PathLike) -> Path:
    """The corpus folder under `data_root` (any accepted alias), or `CorpusNotFoundError`."""
    spec = get_corpus_spec(name)
    data_root = Path(data_root)
    for dirname in spec.dirnames:
        candidate = data_root / dirname
        if candidate.is_dir():
            return candidate
    raise CorpusNotFoundError(
        f"{spec.title} not found under {data_root}: expected one of the folders {', '.join(spec.dirnames)}. "
        f"Obtain it from {spec.homepage} ({spec.access} access) - `resp_audio_hf.data.download_corpus('{name}', "
        f"'{data_root}')` explains or performs the download."
    )


def get_corpus_spec(name: str) -> CorpusSpec:
    key = name.lower().replace("-", "_")
    for spec in CORPORA.values():
        if key == spec.name or key in {d.lower().replace("-", "_") for d in spec.dirnames}:
            return spec
    raise KeyError(f"Unknown corpus {name!r}. Known corpora: {', '.join(sorted(CORPORA))}")


def scan_corpus(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    data_root: str | os.PathLike | None = None,
    opera: OperaFiles | None = None,
    verify_audio: bool = True,
) -> CorpusTable:
    """Scan one corpus into a [`CorpusTable`] (give its folder as `root` or its parent as `data_root`)."""
    spec = get_corpus_spec(name)
    if root is None:
        if data_root is None:
            raise ValueError("Give the corpus folder (root=...) or the folder containing it (data_root=...).")
        root = find_corpus_dir(spec.name, data_root)
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFoundError(f"{spec.title}: {root} is not a directory. Obtain the corpus from {spec.homepage}.")
    report = BuildReport(spec.name, str(root))
    rows = _BUILDERS[spec.name](CorpusScan(root, FileIndex(root), opera or OperaFiles(), report))
    table = _usable_table(spec, root, rows, report, verify_audio)
    table.report.n_usable = len(table.records)
    table.report.log()
    return table


def _usable_table(spec: CorpusSpec, root: Path, rows: list[dict], report: BuildReport, verify_audio: bool):
    """The builder's rows whose audio is present and decodable, as a [`CorpusTable`]; the others are reported
    (absent: `missing`; undecodable: `corrupt`)."""
    import pandas as pd

    usable = check_audio_files([Path(r["audio"]) if r.get("audio") else None for r in rows], report, verify_audio)
    for row in rows:
        if row.get("audio") is None:
            report.missing.append(row["file"])
    kept = [row for row, ok in zip(rows, usable) if ok]
    frame = pd.DataFrame(kept)
    if frame.empty:
        columns = ["audio", "file", "subject_id"] + ([spec.split_column] if spec.split_column else [])
        frame = pd.DataFrame(columns=columns)
    else:
        frame["audio"] = frame["audio"].astype(str)
    return CorpusTable(spec.name, root, frame, report, spec.split_column)


def build_corpus_dataset(name: str, root=None, *, data_root=None, opera=None, verify_audio=True, sampling_rate=None):
    """`DatasetDict` for one corpus; its build report is returned alongside it.

    Returns:
        `(dataset_dict, report)`.
    """
    table = scan_corpus(name, root, data_root=data_root, opera=opera, verify_audio=verify_audio)
    return table.to_dataset_dict(sampling_rate=sampling_rate), table.report
