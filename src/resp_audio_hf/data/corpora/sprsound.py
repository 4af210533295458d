"""SPRSound 2022 (paediatric lung sounds, BioCAS challenge) in its official layout: the corpus builder and tasks S1
(record level) and S2 (event level), normal vs adventitious, on the official parts or a labelled fallback split."""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path

from ..corpus_table import CorpusScan, CorpusSpec
from ..task_spec import TaskContext, corpus_task
from ..task_tables import patient_grouped_split, record_rows, rows_frame

CORPUS = CorpusSpec(
    name="sprsound", title="SPRSound 2022", dirnames=("sprsound", "SPRSound"),
    access="open", homepage="https://github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound",
    license="GPL-3.0 (as shipped; cite Zhang et al., TBioCAS 2022)", split_column="official_split",
)

logger = logging.getLogger(__name__)


SPRSOUND_RECORD_CLASSES = ("Normal", "CAS", "DAS", "CAS & DAS", "Poor Quality")
SPRSOUND_EVENT_CLASSES = ("Normal", "Rhonchi", "Wheeze", "Stridor", "Coarse Crackle", "Fine Crackle", "Wheeze+Crackle")


def parse_sprsound_filename(name: str) -> dict:
    """`<patient>_<age>_<sex>_<location>_<n>.wav` -> fields (sex 0 = male, 1 = female; p1-p4 location)."""
    parts = Path(name).stem.split("_")
    if len(parts) != 5:
        raise ValueError(f"SPRSound file name {name!r} does not follow <patient>_<age>_<sex>_<location>_<n>.wav")
    patient, age, sex, location, number = parts
    return {
        "subject_id": patient,
        "age": float(age),
        "sex": "female" if sex == "1" else "male",
        "location": location,
        "recording_number": number,
    }


# Folders of the official release (BioCAS 2022 challenge): audio in `train_wav`/`test_wav`, one annotation per
# recording in `train_json` and `test_json/{intra,inter}_test_json`. The intra-patient test part holds new
# recordings of patients who also appear in the train part; the inter-patient test part holds patients who do not.
SPRSOUND_ANNOTATION_FOLDERS = {"train_json": "train", "intra_test_json": "test_intra", "inter_test_json": "test_inter"}
SPRSOUND_AUDIO_FOLDERS = ("train_wav", "test_wav")


def read_sprsound_events(annotation: dict, path: Path) -> tuple[list[dict], list[str]]:
    """The respiratory events of one annotation file (its `event_annotation` list), in file order.

    The released files give `start`/`end` in milliseconds as strings (`"2499"`); numbers are accepted too.
    Returns `(events, malformed)`: `events` are `{"number", "start_ms", "end_ms", "type"}` with `number`
    the event's position in the file (the organisers' `test_clip/<recording>_<number>.wav` uses the same number);
    `malformed` names each event that lacks `start`, `end` or `type` or whose times are not finite numbers,
    as `"<file>#<number>: <problem>"`. What the times and types mean is left to the tasks (end before start,
    unknown types and events past the end of the recording are theirs to count)."""
    events, malformed = [], []
    listed = annotation.get("event_annotation", [])
    if not isinstance(listed, list):
        return [], [f"{path.stem}.wav: event_annotation is {type(listed).__name__}, not a list"]
    for number, event in enumerate(listed):
        where = f"{path.stem}.wav#{number}"
        missing = [key for key in ("start", "end", "type") if not isinstance(event, dict) or key not in event]
        if missing:
            malformed.append(f"{where}: no {'/'.join(missing)}")
            continue
        try:
            start, end = float(event["start"]), float(event["end"])
        except (TypeError, ValueError):
            malformed.append(f"{where}: start/end {event['start']!r}/{event['end']!r} are not numbers")
            continue
        if not (math.isfinite(start) and math.isfinite(end)):
            malformed.append(f"{where}: start/end {event['start']!r}/{event['end']!r} are not finite")
            continue
        events.append({"number": number, "start_ms": start, "end_ms": end, "type": str(event["type"])})
    return events, malformed


def _sprsound_part(json_path: Path) -> str:
    """Official part of an annotation file, from its folder (`unknown` outside the official folders)."""
    return SPRSOUND_ANNOTATION_FOLDERS.get(json_path.parent.name.lower(), "unknown")


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """SPRSound 2022 paediatric lung sounds in the official layout (`train_wav/`, `train_json/`, `test_wav/`,
    `test_json/{intra,inter}_test_json/`; either part may be absent).

    Columns: `record_label` (Normal, CAS, DAS, CAS & DAS, Poor Quality), `events` (list of
    `{"number", "start_ms", "end_ms", "type"}`, [`read_sprsound_events`]), `malformed_events` (the events
    that could not be read, by name and problem), `official_split` (`train` / `test_intra` / `test_inter`,
    from the annotation folder), `age`, `sex`, `location`.

    Only the official folders are read: the release also ships `example/` (copies of 50 training recordings and
    their annotations) and `test_clip/` (unannotated event clips), which would otherwise duplicate or pollute the
    table. Their presence is noted in the report.
    """
    root, index, report = scan.root, scan.index, scan.report
    annotations: dict[str, list[Path]] = defaultdict(list)
    for path in index.paths():
        if path.suffix.lower() == ".json" and path.parent.name.lower() in SPRSOUND_ANNOTATION_FOLDERS:
            annotations[path.stem].append(path)
    official_audio = [p for p in index.audio_paths() if p.parent.name.lower() in SPRSOUND_AUDIO_FOLDERS]
    # Only the official folders' copies are looked at, so e.g. example/'s copies of training recordings are no
    # duplicates.
    ignored = sorted(
        {p.parent.relative_to(root).as_posix() for p in index.audio_paths()}
        - {p.parent.relative_to(root).as_posix() for p in official_audio}
    )
    if ignored:
        report.notes.append(f"ignored folders outside the official layout: {', '.join(ignored)}")
    if not official_audio:
        raise FileNotFoundError(
            f"SPRSound: no recording under {root}/train_wav or {root}/test_wav (the official layout: train_wav, "
            "train_json, test_wav, test_json/{intra,inter}_test_json)."
        )
    rows = []
    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in official_audio:
        by_name[path.name].append(path)
    audio_stems = {Path(name).stem for name in by_name}
    # An annotation whose recording is gone (deleted, never unpacked) is a missing recording.
    report.missing.extend(f"{stem}.wav" for stem in sorted(annotations) if stem not in audio_stems)
    for name in sorted(by_name):
        copies = by_name[name]
        # Several copies in the official folders: the first when byte-identical, else listed as duplicates.
        path = copies[0] if len(copies) == 1 else index.one_copy(name, copies)
        if path is None:
            continue
        candidates = annotations.get(path.stem, [])
        if len(candidates) != 1:
            report.unlabelled.append(str(path) + ("" if not candidates else " (several annotation files)"))
            continue
        with open(candidates[0], encoding="utf-8") as handle:
            annotation = json.load(handle)
        # The README documents "recording_annotation"; the released JSON files use "record_annotation".
        record_label = annotation.get("record_annotation", annotation.get("recording_annotation"))
        if record_label not in SPRSOUND_RECORD_CLASSES:
            report.unlabelled.append(f"{path} (record label {record_label!r})")
            continue
        events, malformed = read_sprsound_events(annotation, candidates[0])
        rows.append(
            {
                "audio": path,
                "file": path.name,
                **parse_sprsound_filename(path.name),
                "record_label": record_label,
                "events": events,
                "malformed_events": malformed,
                "official_split": _sprsound_part(candidates[0]),
            }
        )
    report.add_duplicates(index.duplicates)
    return rows


SPRSOUND_TEST_PARTS = ("test_inter", "test_intra")
SPRSOUND_SPLIT_DESCRIPTION = (
    "official (train part and test parts present): the train part is split by patient into train and validation "
    "(one fifth of its patients, stratified, seed 1337); the inter-patient and intra-patient test parts are scored "
    "separately (inter first). Fallback (only one part present): patient-grouped stratified 60/20/20 split of it "
    "(seed 1337), split mode 'patient-grouped-fallback'"
)


def _sprsound_split(frame, ctx: TaskContext):
    """The challenge's protocol when the train part and a test part are on disk, else a labelled fallback.

    Official mode: train on the train part (a patient-grouped fifth of it held out for validation) and test on the
    inter-patient and intra-patient parts separately; the intra part's patients are in the train part by design,
    so merging the two would mix two different questions. A test part that is absent leaves its split empty, which
    the benchmark refuses before extracting anything. Fallback (`../shared` has only the test part): one
    patient-grouped 60/20/20 split of what is present, recorded as `patient-grouped-fallback`.
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
    frame = record_rows(records, lambda r: int(r.record_label != "Normal"), official_split=lambda r: r.official_split)
    return _sprsound_split(frame, ctx).drop(columns=["official_split"])


def _sprsound_event_table(ctx: TaskContext):
    records = ctx.scan()
    rows = []
    for r in records.itertuples():
        ctx.report.exclude("event annotation malformed", r.malformed_events)
        for event in r.events:
            number = event["number"]
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
    return _sprsound_split(rows_frame(rows), ctx).drop(columns=["official_split"])


TASK_SPECS = tuple(
    corpus_task(
        CORPUS, task_id=task_id, name=f"SPRSound {level} level: normal vs adventitious", modality="lung sound",
        kind="classification", evaluation="holdout", split_description=SPRSOUND_SPLIT_DESCRIPTION + rows,
        class_names=("Normal", "Adventitious"), opera=False, table_builder=table_builder,
    )
    for task_id, level, rows, table_builder in (
        ("S1", "record", "; Poor Quality records excluded", _sprsound_record_table),
        ("S2", "event", "; every annotated respiratory event is one row", _sprsound_event_table),
    )
)
