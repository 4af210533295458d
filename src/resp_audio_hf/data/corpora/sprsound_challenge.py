"""The four tasks of the SPRSound 2022 challenge (IEEE BioCAS 2022 Grand Challenge on Respiratory Sound
Classification; Zhang et al., BioCAS 2022), on the corpus that `.sprsound` scans, scored by the challenge's own
score (`sprsound_score`).

* `SPRSound-1-1` (event level): Normal / Adventitious.
* `SPRSound-1-2` (event level): Normal, Rhonchi, Wheeze, Stridor, Coarse Crackle, Fine Crackle, Wheeze+Crackle.
* `SPRSound-2-1` (record level): Normal / Poor Quality / Adventitious (CAS, DAS and CAS & DAS records).
* `SPRSound-2-2` (record level): Normal / Poor Quality / CAS / DAS / CAS & DAS.

Class ids are the organisers': `task_11_dict` ... `task_22_dict` of `scripts/test.py` in
SJTU-YONGFU-RESEARCH-GRP/SPRSound (id -> name of the submission format) and `scripts/train.py` (annotation string ->
id). test.py names event class 6 "Wheeze & Crackle" where the annotation files say "Wheeze+Crackle"; the tables use
the annotation spelling, and `SUBMISSION_NAMES` holds test.py's for writing predictions in the organisers'
output format.

Every task table has `file` (`<recording>.wav`, or `<recording>.wav#<n>` for the *n*-th event of the annotation
file, the number of the organisers' `test_clip/<recording>_<n>.wav`), `audio`, `label`, `subject_id`,
`start_s`/`end_s` (the event in seconds; `None` for the record-level tasks, which use the whole recording, as
ICBHI-cycle's rows do for its cycles) and `split`:

* `train` and `validation`: the official train part, its patients split once for all four tasks (one fifth to
  validation: [`~resp_audio_hf.data.task_tables.patient_grouped_split`], the helper S1/S2 draw theirs with,
  stratified by the Task 2-2 record label, seed 1337), so no patient is on both sides and the event and record tasks
  hold out the same patients.
* `test_inter` and `test_intra`: the official test parts, scored apart (inter first, the headline). The
  intra-patient part holds new recordings of training patients by design.

With only the test part on disk (`../shared/data/sprsound`) the tables have only the test splits (split mode
`test-only`): enough to score a model trained elsewhere, not to train one.

The annotations are checked, and what the builders do with each disagreement is counted in
[`annotation_checks`] (logged and written to the task's build report): an event without `start`/`end`/`type`
or with times that are not numbers, of a type outside the seven, with `end <= start`, or starting at or after the
end of its recording is left out (named in `report.excluded`); an event ending after the end of its recording is
cut at the end; overlapping events, events listed out of time order, records without events and records whose label
disagrees with their events are kept as annotated and counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

from ..audio import probe_audio
from ..task_spec import TaskContext, corpus_task
from ..task_tables import patient_grouped_split, rows_frame
from .sprsound import CORPUS, SPRSOUND_EVENT_CLASSES, SPRSOUND_RECORD_CLASSES, SPRSOUND_TEST_PARTS

logger = logging.getLogger(__name__)

#: The continuous (CAS) and discontinuous (DAS) adventitious event types, for checking record labels against events.
CAS_EVENT_TYPES = frozenset({"Rhonchi", "Wheeze", "Stridor", "Wheeze+Crackle"})
DAS_EVENT_TYPES = frozenset({"Coarse Crackle", "Fine Crackle", "Wheeze+Crackle"})


@dataclass(frozen=True)
class ChallengeTask:
    """One task of the challenge.

    Attributes:
        task_id: registry id (`SPRSound-1-1` ...).
        number: the organisers' task number (`11`, `12`, `21`, `22`: `--task` of their scripts).
        level: `"event"` (one row per annotated event) or `"record"` (one row per recording).
        class_names: names by class id, in the organisers' id order.
        label_of: annotation string (event `type` or `record_annotation`) -> class id (their `train.py`).
    """

    task_id: str
    number: int
    level: str
    class_names: tuple[str, ...]
    label_of: dict

    @property
    def poor_quality_class(self) -> int | None:
        """Id of Poor Quality (record-level tasks), for the score's sensitivity; `None` for event tasks."""
        return self.class_names.index("Poor Quality") if "Poor Quality" in self.class_names else None


_EVENT_ADVENTITIOUS = {name: int(name != "Normal") for name in SPRSOUND_EVENT_CLASSES}
CHALLENGE_TASKS: dict[str, ChallengeTask] = {
    task.task_id: task
    for task in (
        ChallengeTask("SPRSound-1-1", 11, "event", ("Normal", "Adventitious"), _EVENT_ADVENTITIOUS),
        ChallengeTask(
            "SPRSound-1-2", 12, "event", SPRSOUND_EVENT_CLASSES, {n: i for i, n in enumerate(SPRSOUND_EVENT_CLASSES)}
        ),
        ChallengeTask(
            "SPRSound-2-1", 21, "record", ("Normal", "Poor Quality", "Adventitious"),
            {"Normal": 0, "Poor Quality": 1, "CAS": 2, "DAS": 2, "CAS & DAS": 2},
        ),
        ChallengeTask(
            "SPRSound-2-2", 22, "record", ("Normal", "Poor Quality", "CAS", "DAS", "CAS & DAS"),
            {"Normal": 0, "Poor Quality": 1, "CAS": 2, "DAS": 3, "CAS & DAS": 4},
        ),
    )
}

#: The organisers' output names by class id (`scripts/test.py`), where they differ from the class names.
SUBMISSION_NAMES = {"SPRSound-1-2": {6: "Wheeze & Crackle"}}

#: Short forms accepted for the task ids: `sprsound-11` ... `sprsound-22`.
CHALLENGE_ALIASES = {f"sprsound-{task.number}": task.task_id for task in CHALLENGE_TASKS.values()}


def challenge_task(task_id: str) -> ChallengeTask:
    """The [`ChallengeTask`] of `SPRSound-1-1` ... (also `1-1`, `11`, `sprsound-11`)."""
    key = str(task_id).strip().lower()
    for task in CHALLENGE_TASKS.values():
        number = str(task.number)
        if key in {task.task_id.lower(), f"{number[0]}-{number[1]}", number, f"sprsound-{number}"}:
            return task
    raise KeyError(f"Unknown SPRSound challenge task {task_id!r}; known: {', '.join(CHALLENGE_TASKS)}.")


def submission_name(task_id: str, label: int) -> str:
    """The organisers' output name of class `label` (`Wheeze & Crackle` for id 6 of Task 1-2)."""
    task = challenge_task(task_id)
    return SUBMISSION_NAMES.get(task.task_id, {}).get(int(label), task.class_names[int(label)])


# ---------------------------------------------------------------------------------------------- annotation checks


def _record_disagrees(record_label: str, types: set[str]) -> bool:
    """Whether a record label contradicts its events (Normal with adventitious events, CAS without a continuous
    event...). Poor Quality records say nothing about their events."""
    if record_label == "Poor Quality":
        return False
    has_cas, has_das = bool(types & CAS_EVENT_TYPES), bool(types & DAS_EVENT_TYPES)
    expected = {"Normal": (False, False), "CAS": (True, False), "DAS": (False, True), "CAS & DAS": (True, True)}
    if record_label == "CAS & DAS":  # a Wheeze+Crackle event alone is both
        return not (has_cas and has_das)
    return (has_cas, has_das) != expected[record_label]


_MALFORMED = "events malformed (no start/end/type, or times that are not numbers): left out"
_UNKNOWN_TYPE = "events of a type outside the seven: left out"
_NON_POSITIVE = "events with end <= start (zero or negative length): left out"
_AFTER_END = "events starting at or after the end of their recording: left out"
_CUT = "events ending after the end of their recording: cut at the end"
_OVERLAPS = "overlapping event pairs: both kept"
_UNORDERED = "recordings whose events are listed out of time order: kept"
_DISAGREE = "{} records whose events disagree with the record label: kept"
_NO_EVENTS = "{} records without events"

#: Every key of [`annotation_checks`] (each present, 0 when nothing was found).
CHECK_KEYS = (
    "recordings",
    "events listed",
    "events used",
    _MALFORMED,
    _UNKNOWN_TYPE,
    _NON_POSITIVE,
    _AFTER_END,
    _CUT,
    _OVERLAPS,
    _UNORDERED,
    *(_DISAGREE.format(label) for label in ("Normal", "CAS", "DAS", "CAS & DAS")),
    *(_NO_EVENTS.format(label) for label in SPRSOUND_RECORD_CLASSES),
)


def event_rows(records) -> tuple[list[dict], dict, dict[str, list[str]]]:
    """Every usable event of the scanned recordings (`records`: the SPRSound corpus table), with its checks.

    Returns `(rows, checks, excluded)`: `rows` are `{"file", "audio", "type", "subject_id", "start_s",
    "end_s", "official_split"}` in table and file order; `checks` is [`annotation_checks`]' dict;
    `excluded` maps each reason an event was left out to the events (`<recording>.wav#<n>`).
    """
    checks: Counter = Counter(dict.fromkeys(CHECK_KEYS, 0))
    excluded: dict[str, list[str]] = {}
    rows = []

    def exclude(reason: str, item: str) -> None:
        checks[reason] += 1
        excluded.setdefault(reason, []).append(item)

    for record in records.itertuples():
        checks["recordings"] += 1
        for item in record.malformed_events:
            exclude(_MALFORMED, item)
        events = list(record.events)
        checks["events listed"] += len(events) + len(record.malformed_events)
        if not events and not record.malformed_events:
            checks[_NO_EVENTS.format(record.record_label)] += 1
        if any(a["start_ms"] > b["start_ms"] for a, b in pairwise(events)):
            checks[_UNORDERED] += 1
        by_start = sorted(events, key=lambda e: (e["start_ms"], e["end_ms"]))
        checks[_OVERLAPS] += sum(
            1 for i, a in enumerate(by_start) for b in by_start[i + 1 :] if b["start_ms"] < a["end_ms"]
        )
        if _record_disagrees(record.record_label, {e["type"] for e in events}):
            checks[_DISAGREE.format(record.record_label)] += 1
        duration = probe_audio(record.audio).duration_s if events else None
        for event in events:
            item = f"{record.file}#{event['number']}"
            start_s, end_s = event["start_ms"] / 1000.0, event["end_ms"] / 1000.0
            if event["type"] not in SPRSOUND_EVENT_CLASSES:
                exclude(_UNKNOWN_TYPE, f"{item} ({event['type']!r})")
                continue
            if end_s <= start_s:
                exclude(_NON_POSITIVE, item)
                continue
            if duration is not None and start_s >= duration:
                exclude(_AFTER_END, item)
                continue
            if duration is not None and end_s > duration:
                checks[_CUT] += 1
                end_s = duration
            rows.append(
                {
                    "file": item,
                    "audio": record.audio,
                    "type": event["type"],
                    "subject_id": record.subject_id,
                    "start_s": start_s,
                    "end_s": end_s,
                    "official_split": record.official_split,
                }
            )
    checks["events used"] = len(rows)
    return rows, {key: int(checks[key]) for key in CHECK_KEYS}, excluded


def annotation_checks(records) -> dict[str, int]:
    """How often each disagreement of the annotations occurs in `records` (the SPRSound corpus table) and what the
    tasks do with it (in the key): the `checks` of [`event_rows`]."""
    return event_rows(records)[1]


# ---------------------------------------------------------------------------------------------- splits


def validation_patients(records) -> set[str]:
    """The train part's patients held out for validation, the same for the four tasks: one fifth of them by
    [`~resp_audio_hf.data.task_tables.patient_grouped_split`] of the train part's recordings labelled as in Task
    2-2 (stratified, seed 1337), as S1/S2 draw theirs. Empty without a train part."""
    train = records[records["official_split"] == "train"]
    if train.empty:
        return set()
    label_of = CHALLENGE_TASKS["SPRSound-2-2"].label_of
    frame = rows_frame(
        [{"label": label_of[r.record_label], "subject_id": r.subject_id, "split": "train"} for r in train.itertuples()]
    )
    split = patient_grouped_split(frame, test=False)
    return set(split.loc[split["split"] == "validation", "subject_id"])


def recording_events_table(records):
    """One row per recording of `records` (the SPRSound corpus table) with its annotated events in time, for
    locating events within recordings (`results/sprsound_event_detection.py`).

    Columns `file`, `audio`, `subject_id`, `record_label`, `split` (`train` / `validation` /
    `test_inter` / `test_intra`: the four tasks' split, `validation_patients`) and `events`: the
    recording's usable events as `(start_s, end_s, type)` in file order, as `event_rows` keeps them (events it
    leaves out are absent, events past the end are cut at the end).
    """
    import pandas as pd

    rows, _, _ = event_rows(records)
    by_recording: dict[str, list[tuple[float, float, str]]] = {}
    for row in rows:
        by_recording.setdefault(row["audio"], []).append((row["start_s"], row["end_s"], row["type"]))
    held_out = validation_patients(records)
    return pd.DataFrame(
        {
            "file": records["file"].tolist(),
            "audio": records["audio"].tolist(),
            "subject_id": records["subject_id"].tolist(),
            "record_label": records["record_label"].tolist(),
            "split": [
                "validation" if part == "train" and patient in held_out else part
                for part, patient in zip(records["official_split"], records["subject_id"])
            ],
            "events": [by_recording.get(audio, []) for audio in records["audio"]],
        }
    )


def _assign_splits(frame, records, ctx: TaskContext):
    present = set(records["official_split"])
    unknown = present - {"train", *SPRSOUND_TEST_PARTS}
    if unknown:
        raise ValueError(f"{ctx.spec.task_id}: recordings of unexpected official parts {sorted(unknown)}")
    held_out = validation_patients(records)
    frame = frame.copy()
    frame["split"] = [
        "validation" if part == "train" and patient in held_out else part
        for part, patient in zip(frame["official_split"], frame["subject_id"])
    ]
    ctx.test_splits = SPRSOUND_TEST_PARTS
    if "train" in present:
        ctx.split_mode = "official"
        ctx.report.notes.append(
            f"split mode official: train part -> train/validation ({len(held_out)} validation patients, "
            "patient-grouped fifth stratified by the Task 2-2 record label, seed 1337, shared by the four tasks); "
            "test_inter and test_intra scored separately"
        )
    else:
        ctx.split_mode = "test-only"
        ctx.report.notes.append(
            "split mode test-only: only the SPRSound test part is present, so the table has only the test_inter and "
            "test_intra splits (no train or validation split: score a model trained elsewhere)"
        )
        logger.warning("%s: %s", ctx.spec.task_id, ctx.report.notes[-1])
    return frame.drop(columns=["official_split"])


def _challenge_table(ctx: TaskContext):
    """Table builder of the four tasks (`ctx.spec.task_id` says which)."""
    task = CHALLENGE_TASKS[ctx.spec.task_id]
    records = ctx.scan()
    rows, checks, excluded = event_rows(records)
    ctx.report.notes.append(f"annotation checks: {json.dumps(checks)}")
    logger.info("%s annotation checks: %s", task.task_id, checks)
    if task.level == "event":
        for reason, items in excluded.items():
            ctx.report.exclude(reason, items)
        table = [
            {**{k: v for k, v in row.items() if k != "type"}, "label": task.label_of[row["type"]]} for row in rows
        ]
    else:
        table = [
            {
                "file": r.file,
                "audio": r.audio,
                "label": task.label_of[r.record_label],
                "subject_id": r.subject_id,
                "start_s": None,
                "end_s": None,
                "official_split": r.official_split,
            }
            for r in records.itertuples()
        ]
    columns = ["file", "audio", "label", "subject_id", "start_s", "end_s", "official_split"]
    frame = rows_frame(table).reindex(columns=columns)
    return _assign_splits(frame, records, ctx)


def load_challenge_dataset(task_id: str, data_root, *, sampling_rate: int | None = None, verify_audio: bool = True):
    """One task as a `datasets.DatasetDict` ready for `Trainer` / `RespAudioCollator`, and its task data.

    Splits `train`/`validation` (when the train part is present), `test_inter`, `test_intra`; columns
    `audio` (`datasets.Audio`), `file`, `label` (`ClassLabel` with the official names in id order),
    `subject_id`, `start_s`/`end_s` (the event in seconds; `None` for record-level tasks, whose rows are
    whole recordings). `RespAudioCollator` cuts the events out of their recordings.

    Returns:
        `(dataset_dict, task_data)`; `task_data.report` holds the annotation checks and exclusions.
    """
    import datasets

    from ..tasks import load_task

    task = challenge_task(task_id)
    task_data = load_task(task.task_id, data_root, verify_audio=verify_audio)
    splits = task_data.to_dataset_dict(sampling_rate=sampling_rate)
    label = datasets.ClassLabel(names=list(task.class_names))
    splits = datasets.DatasetDict({name: part.cast_column("label", label) for name, part in splits.items()})
    return splits, task_data


_SPLIT_DESCRIPTION = (
    "official SPRSound 2022 parts: the train part minus one fifth of its patients (validation: patient-grouped, "
    "stratified by the Task 2-2 record label, seed 1337, the same patients for the four challenge tasks); test_inter "
    "and test_intra scored separately (inter first). Only the test part present: test splits only (split mode "
    "'test-only')"
)

TASK_SPECS = tuple(
    corpus_task(
        CORPUS,
        task_id=task.task_id,
        name=f"SPRSound challenge Task {str(task.number)[0]}-{str(task.number)[1]} ({task.level} level): "
        + " / ".join(task.class_names),
        modality="lung sound",
        kind="classification",
        evaluation="holdout",
        split_description=_SPLIT_DESCRIPTION
        + ("; every annotated respiratory event is one row" if task.level == "event" else "; one row per recording"),
        class_names=task.class_names,
        opera=False,
        table_builder=_challenge_table,
        score="sprsound_score",
        extra_metrics=("auroc",),
    )
    for task in CHALLENGE_TASKS.values()
)

if set(SPRSOUND_RECORD_CLASSES) != set(CHALLENGE_TASKS["SPRSound-2-2"].label_of):  # one list of record labels
    raise ImportError("SPRSound record classes and Task 2-2's labels disagree")
