"""COVID-19 induced coughs (CC0, call centre and Telegram; shipped in ../shared/data/covid19-cough): the corpus builder
and task COVID-cough (COVID-19 detection on a split stratified by label and recording source)."""

from __future__ import annotations

import json
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..task_spec import TaskContext, corpus_task
from ..task_tables import rows_frame

CORPUS = CorpusSpec(
    name="covid19_cough", title="COVID-19 induced coughs (call centre and Telegram)",
    dirnames=("covid19-cough", "covid19_cough"), access="open",
    homepage="distributed with this project's shared data (../shared/data/covid19-cough, README.md and LICENSE there)",
    license="CC0-1.0",
)


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """Induced coughs recorded through a call centre (8 kHz) or a Telegram bot (48 kHz), CC0 (`raw/<name>.mp3` +
    `metadata.json`).

    Rows follow `metadata.json`. Columns: `covid19` (bool), `source` (`call-center` / `telegram`),
    `verified` (PCR confirmed by a laboratory; `None` where not stated), `asymptomatic`. There are no participant
    ids, so `subject_id` is the file name (each recording is its own resampling unit).
    """
    root, index, report = scan.root, scan.index, scan.report
    metadata = index.find_metadata("metadata.json")
    if metadata is None:
        raise FileNotFoundError(f"The COVID-19 cough corpus needs metadata.json under {root}.")
    with open(metadata, encoding="utf-8") as handle:
        entries = json.load(handle)
    rows, listed = [], set()
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("filename") or not isinstance(entry.get("covid19"), bool):
            raise ValueError(f"{metadata}: entry {number} lacks a filename or a boolean covid19 label: {entry!r}")
        name = str(entry["filename"])
        listed.add(name)
        rows.append(
            {
                "audio": index.find(name=name),
                "file": name,
                "subject_id": Path(name).stem,
                "covid19": entry["covid19"],
                "source": entry.get("source"),
                "verified": entry.get("verified"),
                "asymptomatic": entry.get("asymptomatic"),
            }
        )
    report.unlabelled.extend(str(p) for p in index.audio_paths() if p.name not in listed)
    report.add_duplicates(index.duplicates)
    return rows


COVID_COUGH_SPLIT_DESCRIPTION = (
    "stratified by label and recording source (call centre 8 kHz / Telegram 48 kHz) 60/20/20 split of every "
    "recording listed in metadata.json, in file-name order (scikit-learn train_test_split, seed 1337: 20 % to test, "
    "then a quarter of the rest to validation); no participant ids exist, so each recording is its own unit"
)


def covid_cough_split(names: list[str], labels: list[int], sources: list[str], seed: int = 1337) -> dict[str, str]:
    """File name -> `train`/`validation`/`test` of `COVID_COUGH_SPLIT_DESCRIPTION`. Depends only on the
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
    return rows_frame(rows)


TASK_SPECS = (
    corpus_task(
        CORPUS, task_id="COVID-cough", name="COVID-19 induced coughs (CC0): COVID-19 detection", modality="cough",
        kind="classification", evaluation="holdout", split_description=COVID_COUGH_SPLIT_DESCRIPTION,
        class_names=("negative", "COVID-19"), opera=False, table_builder=_covid_cough_table,
    ),
)
