"""Where are the adventitious sounds in an SPRSound recording? A windowed classifier, scored with sed_eval.

One command writes `results/sprsound_event_detection.json` and `.md`:

    python results/sprsound_event_detection.py --data-root /work/data/ext

Recordings: SPRSound 2022's official parts (`sprsound_challenge.recording_events_table`): the train part's patients
minus the challenge tasks' validation patients (one fifth, seed 1337) train the classifier; the validation patients
choose everything else; the test parts (`test_inter`, `test_intra`) are scored apart, once, at the end. Poor
Quality recordings are left out (their events are not annotated). The reference events are the annotated events of
the six adventitious types, merged into one class "Adventitious".

Classifier (`resp_audio_hf.event_detection`): every recording is cut into full windows of W s every H s; by
default a linear probe (scikit-learn `LogisticRegression`, balanced class weights, `C` chosen on validation) on
frozen mn04 embeddings of each window (`--encoder`; the benchmark's extraction and embedding cache), z-scored with
the training windows' statistics and trained on every second training window (neighbours overlap by 3/4). A window
is Adventitious when it overlaps an adventitious event by at least half of the shorter of the window and the event.
`--classifier FOLDER` scores the windows with a fine-tuned Task 1-1 audio-classification model instead (its
"Adventitious" probability; nothing is trained here, so only the validation and test recordings are scored).

Detections: windows scoring >= a threshold, each speaking for the H s at its centre, merged across gaps <= a merging
gap, events shorter than a minimum duration dropped. Window/hop, `C`, threshold, gap and minimum duration are chosen
on the validation recordings by sed_eval's event-based F1 (onset collar `--collar`, offsets not evaluated: the
events are 0.3-1.5 s long and their annotated ends vary more than the window resolution). Reported per test part:
event-based F1 (onset only, at `--collar` and at 0.5 s; also onset + offset, 50 % of the length), segment-based F1
(1 s segments), the share of each type's events a detection overlaps, and references: every abnormal-labelled
recording (its record label given) as one event, and the window-label oracle (the true window labels through the same
merging: the ceiling that the windows' resolution leaves).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

LABEL = "Adventitious"
TEST_SPLITS = ("test_inter", "test_intra")
WINDOWS = ((1.0, 0.25), (0.5, 0.25))
PROBE_C = (0.01, 0.1)
# Balanced class weights put most windows above 0.5, so the grid reaches close to 1.
THRESHOLDS = (*(round(t, 2) for t in np.arange(0.1, 0.96, 0.05)), 0.97, 0.98, 0.99)
MERGE_GAPS = (0.0, 0.25, 0.5)
MIN_DURATIONS = (0.0, 0.25, 0.5)
LOOSE_COLLAR = 0.5


def recordings(args):
    """The recordings table (see the module docstring) with `num_samples` at 32 kHz; without the train part's
    recordings under `--classifier`."""
    from resp_audio_hf.data.corpora import scan_corpus
    from resp_audio_hf.data.corpora.sprsound_challenge import recording_events_table
    from resp_audio_hf.event_detection import recording_num_samples

    table = recording_events_table(scan_corpus("sprsound", data_root=args.data_root, verify_audio=False).records)
    table = table[table["record_label"] != "Poor Quality"].reset_index(drop=True)
    if args.train_from_test:  # smoke runs on the test part alone: test_intra's patients become train/validation
        intra = table["split"] == "test_intra"
        half = [hashlib.sha256(p.encode()).digest()[0] % 2 for p in table["subject_id"]]
        table.loc[intra, "split"] = ["train" if h else "validation" for h, i in zip(half, intra) if i]
    missing = {"train", "validation"} - set(table["split"])
    if missing:
        raise SystemExit(f"{args.data_root}: no SPRSound recordings for {sorted(missing)} (the train part, "
                         "SPRSound/train_wav and train_json, is needed; --train-from-test for a smoke run)")
    if args.limit:
        rng = np.random.default_rng(0)
        keep = [i for split in dict.fromkeys(table["split"])
                for i in rng.permutation(np.flatnonzero(table["split"] == split))[: args.limit]]
        table = table.iloc[sorted(keep)].reset_index(drop=True)
    if args.classifier:  # nothing is trained here: the train part's recordings are neither probed nor scored
        table = table[table["split"] != "train"].reset_index(drop=True)
    table["num_samples"] = [recording_num_samples(path, args.rate) for path in table["audio"]]
    return table


def true_window_labels(table, dataset) -> np.ndarray:
    """Whether each window of `dataset` is Adventitious (`event_detection.window_labels`)."""
    from resp_audio_hf.event_detection import window_labels

    return np.concatenate([
        window_labels(dataset.start_s[dataset.recording == r], dataset.window_seconds,
                      [(a, b) for a, b, t in table.at[r, "events"] if t != "Normal"])
        for r in range(len(table))])


def probe_scores(args, table, dataset, labels) -> dict[float, np.ndarray]:
    """`{C: window probabilities}` of logistic-regression probes on the windows' frozen embeddings."""
    from sklearn.linear_model import LogisticRegression

    from resp_audio_hf.benchmark.probe import standardize_features
    from resp_audio_hf.extraction import AudioEncoder, extract_embeddings

    encoder = AudioEncoder.from_pretrained(args.encoder)
    features, failures = extract_embeddings(
        encoder, dataset, cache_dir=args.cache_dir, cache_extra={"purpose": "sprsound_event_detection"},
        batch_size=32, progress=False, desc=f"windows {dataset.window_seconds} s", return_failures=True)
    if failures:
        raise SystemExit(f"{len(failures)} windows could not be embedded, e.g. {next(iter(failures.values()))}")
    split = table["split"].to_numpy()[dataset.recording]
    train = np.flatnonzero(split == "train")[::2]
    features = standardize_features(features, train)
    scores = {}
    for c in PROBE_C:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(features[train], labels[train])
        scores[c] = model.predict_proba(features)[:, 1].astype(np.float32)
        print(f"  probe C={c} fitted on {train.size} windows", flush=True)
    return scores


def classifier_scores(args, dataset) -> dict[str, np.ndarray]:
    """`{"fine-tuned": window probabilities}` of Adventitious from a fine-tuned audio-classification folder."""
    import torch

    from resp_audio_hf.tagging import AudioTagger

    tagger = AudioTagger(args.classifier)
    if LABEL not in tagger.labels:
        raise SystemExit(f"{args.classifier} has no label {LABEL!r} (its labels: {tagger.labels[:8]}): give a "
                         "Task 1-1 (Normal / Adventitious) audio-classification folder")
    multi_label = tagger.model.config.problem_type == "multi_label_classification"
    column = tagger.labels.index(LABEL)
    out = np.empty(len(dataset), dtype=np.float32)
    for first in range(0, len(dataset), 32):
        items = [dataset[i] for i in range(first, min(first + 32, len(dataset)))]
        bad = [item for item in items if "error" in item]
        if bad:
            raise SystemExit(f"{dataset.describe(bad[0]['index'])}: {bad[0]['error']}")
        by_length: dict[int, list[dict]] = {}
        for item in items:
            by_length.setdefault(item["audio"].size, []).append(item)
        with torch.inference_mode():
            for group in by_length.values():  # no padding: a window's score never depends on its batch
                inputs = tagger.feature_extractor([g["audio"] for g in group], sampling_rate=args.rate,
                                                  return_tensors="pt")
                logits = tagger.model(**inputs).logits.float()
                probabilities = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
                out[[g["index"] for g in group]] = probabilities[:, column].numpy()
    return {"fine-tuned": out}


def detections(table, rows, dataset, scores, setting) -> dict[str, list]:
    """The detected events of the recordings `rows` of `table` at `setting` (threshold, gap, min duration)."""
    from resp_audio_hf.event_detection import detect_events

    bounds = np.searchsorted(dataset.recording, np.arange(len(table) + 1))
    threshold, gap, minimum = setting
    return {
        table.at[r, "file"]: detect_events(
            dataset.start_s[bounds[r]: bounds[r + 1]], scores[bounds[r]: bounds[r + 1]],
            table.at[r, "num_samples"] / dataset.sampling_rate, dataset.window_seconds, dataset.hop_seconds,
            threshold, gap, minimum)
        for r in rows
    }


def reference(table, rows, typed: bool = False) -> dict[str, list]:
    return {table.at[r, "file"]: [(a, b, t) if typed else (a, b) for a, b, t in table.at[r, "events"] if t != "Normal"]
            for r in rows}


def durations(table, rows, rate) -> dict[str, float]:
    return {table.at[r, "file"]: table.at[r, "num_samples"] / rate for r in rows}


def tune(table, dataset, scores, collar) -> dict:
    """The setting (threshold, gap, minimum duration) of the best validation event F1 (the first best wins)."""
    from resp_audio_hf.event_detection import sed_eval_scores

    rows = np.flatnonzero(table["split"] == "validation")
    truth, lengths = reference(table, rows), durations(table, rows, dataset.sampling_rate)
    best = None
    for setting in [(t, g, m) for t in THRESHOLDS for g in MERGE_GAPS for m in MIN_DURATIONS]:
        found = detections(table, rows, dataset, scores, setting)
        f1 = sed_eval_scores(truth, found, lengths, label=LABEL, collar_seconds=collar,
                             segment_seconds=None)["event"]["f1"]
        if best is None or f1 > best["validation_event_f1"]:
            best = {"threshold": setting[0], "merge_gap_seconds": setting[1], "min_duration_seconds": setting[2],
                    "validation_event_f1": f1}
    return best


def score_split(table, rows, dataset, found, collar) -> dict:
    from resp_audio_hf.event_detection import overlap_recall, sed_eval_scores

    truth, lengths = reference(table, rows), durations(table, rows, dataset.sampling_rate)
    main = sed_eval_scores(truth, found, lengths, label=LABEL, collar_seconds=collar)
    return {
        "event": main["event"],
        "segment_1s": main["segment"],
        f"event_collar_{LOOSE_COLLAR}s": sed_eval_scores(truth, found, lengths, label=LABEL,
                                                         collar_seconds=LOOSE_COLLAR, segment_seconds=None)["event"],
        "event_onset_offset": sed_eval_scores(truth, found, lengths, label=LABEL, collar_seconds=collar,
                                              evaluate_offset=True, segment_seconds=None)["event"],
        "overlap_recall_by_type": overlap_recall(reference(table, rows, typed=True), found),
    }


def markdown(report: dict) -> str:
    chosen, collar = report["chosen"], report["collar_s"]
    lines = [
        "# Locating adventitious sounds in SPRSound recordings",
        "",
        f"Classifier: {report['classifier']}; windows of {chosen['window_seconds']} s every {chosen['hop_seconds']} s"
        f"{', C = ' + str(chosen['C']) if 'C' in chosen else ''}, Adventitious at probability >= "
        f"{chosen['threshold']}, merged across gaps <= {chosen['merge_gap_seconds']} s, events shorter than "
        f"{chosen['min_duration_seconds']} s dropped (chosen on {report['recordings']['validation']} validation "
        f"recordings: event F1 {chosen['validation_event_f1']:.3f}). sed_eval, class Adventitious (six types merged); "
        f"event-based: onset within {collar} s (offset not evaluated unless stated), one to one; segment-based: 1 s "
        "segments.",
        "",
        f"| test part | detector | event F1 (P / R), onset {collar} s | event F1, onset {LOOSE_COLLAR} s | event F1, "
        "onset + offset | segment F1 (1 s) (P / R) | reference events | detected |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split in report["test"]:
        for name, row in report["test"][split].items():
            e, s = row["event"], row["segment_1s"]
            lines.append(
                f"| {split} | {name} | {e['f1']:.3f} ({e['precision']:.3f} / {e['recall']:.3f}) | "
                f"{row[f'event_collar_{LOOSE_COLLAR}s']['f1']:.3f} | {row['event_onset_offset']['f1']:.3f} | "
                f"{s['f1']:.3f} ({s['precision']:.3f} / {s['recall']:.3f}) | {e['reference']} | {e['estimated']} |")
    lines += ["", "The detector's window AUROC (window scores against the window labels) and the share of each "
              "type's events that a detection overlaps:", "",
              "| test part | window AUROC | " + " | ".join(report["types"]) + " |",
              "|---|---|" + "---|" * len(report["types"])]
    for split in report["test"]:
        recall = report["test"][split]["detector"]["overlap_recall_by_type"]
        auroc = report["test"][split]["detector"]["window_auroc"]
        lines.append(f"| {split} | {'—' if auroc is None else f'{auroc:.3f}'} | " + " | ".join(
            f"{recall[t]['overlapped']}/{recall[t]['events']}" if t in recall else "—" for t in report["types"]) + " |")
    lines += ["", "References: *abnormal record = one event* gives every recording whose record label is CAS, DAS or "
              "CAS & DAS one event over its whole length (the record label known); *window-label oracle* merges the "
              "true window labels as the detector's are merged: what the window resolution allows.", "",
              f"Command: `{report['command']}`", "",
              f"Run time: {report['run_seconds'] / 60:.1f} min ({report['machine']}).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="/work/data/ext", help="folder holding SPRSound/ (both parts)")
    parser.add_argument("--encoder", default=str(REPO / "pretrained" / "efficientat-mn04-as"),
                        help="frozen encoder of the probe")
    parser.add_argument("--classifier", help="fine-tuned Task 1-1 audio-classification folder (instead of the probe)")
    parser.add_argument("--windows", default=",".join(f"{w}/{h}" for w, h in WINDOWS),
                        help="window/hop pairs in seconds tried on validation, e.g. 1.0/0.25,0.5/0.25")
    parser.add_argument("--collar", type=float, default=0.2, help="onset collar of the event-based F1, seconds")
    parser.add_argument("--cache-dir", default=str(REPO / "runs" / "sprsound_event_detection" / "embeddings"))
    parser.add_argument("--limit", type=int, help="recordings per split (smoke runs; the output says so)")
    parser.add_argument("--train-from-test", action="store_true",
                        help="smoke runs without the train part: test_intra's patients train and validate")
    parser.add_argument("--output", type=Path, default=REPO / "results" / "sprsound_event_detection",
                        help="output stem (.json, .md)")
    args = parser.parse_args(argv)
    args.rate = 32000

    import torch
    from sklearn.metrics import roc_auc_score

    from resp_audio_hf.data.file_io import atomic_write_json, atomic_write_text
    from resp_audio_hf.event_detection import WindowClipDataset

    started = time.perf_counter()
    table = recordings(args)
    print({s: int((table["split"] == s).sum()) for s in dict.fromkeys(table["split"])}, "recordings", flush=True)
    candidates = {}  # (window, hop, model) -> (dataset, scores)
    report_windows = {}  # windows and seconds spent scoring them (embedding, or read from the cache, and fitting)
    for pair in args.windows.split(","):
        window, hop = (float(x) for x in pair.split("/"))
        dataset = WindowClipDataset(table["audio"], table["num_samples"], args.rate, window, hop)
        print(f"windows {window} s / {hop} s: {len(dataset)}", flush=True)
        scored_from = time.perf_counter()
        if args.classifier:
            scores = classifier_scores(args, dataset)
        else:
            scores = probe_scores(args, table, dataset, true_window_labels(table, dataset).astype(np.int64))
        report_windows[f"{window} s / {hop} s"] = {"windows": len(dataset),
                                                    "seconds": round(time.perf_counter() - scored_from, 1)}
        for model, values in scores.items():
            candidates[(window, hop, model)] = (dataset, values)
    tuned = {key: tune(table, dataset, values, args.collar) for key, (dataset, values) in candidates.items()}
    best = max(tuned, key=lambda key: tuned[key]["validation_event_f1"])  # the first best wins
    dataset, scores = candidates[best]
    chosen = {"window_seconds": best[0], "hop_seconds": best[1], **tuned[best]}
    if not args.classifier:
        chosen["C"] = best[2]
    setting = (chosen["threshold"], chosen["merge_gap_seconds"], chosen["min_duration_seconds"])
    oracle = true_window_labels(table, dataset).astype(np.float32)  # merged like the detector's scores
    report = {
        "classifier": (f"fine-tuned {args.classifier}" if args.classifier
                       else f"linear probe on frozen {Path(args.encoder).name} window embeddings"),
        "collar_s": args.collar,
        "chosen": chosen,
        "validation": {f"{w} s / {h} s, {m if args.classifier else f'C={m}'}": v for (w, h, m), v in tuned.items()},
        "recordings": {s: int((table["split"] == s).sum()) for s in dict.fromkeys(table["split"])},
        "windows": report_windows,
        "types": sorted({t for events in table["events"] for _, _, t in events if t != "Normal"}),
        "test": {},
    }
    window_split = table["split"].to_numpy()[dataset.recording]
    for split in TEST_SPLITS:
        rows = np.flatnonzero(table["split"] == split)
        if not rows.size:  # smoke runs (--train-from-test, --limit) may have no recording of a part
            continue
        abnormal = {table.at[r, "file"]: [(0.0, table.at[r, "num_samples"] / args.rate)] for r in rows
                    if table.at[r, "record_label"] != "Normal"}
        report["test"][split] = {
            "detector": score_split(table, rows, dataset, detections(table, rows, dataset, scores, setting),
                                    args.collar),
            "abnormal record = one event": score_split(table, rows, dataset, abnormal, args.collar),
            "window-label oracle": score_split(table, rows, dataset,
                                               detections(table, rows, dataset, oracle, (0.5, 0.0, 0.0)), args.collar),
        }
        in_split = window_split == split
        report["test"][split]["detector"]["window_auroc"] = (
            float(roc_auc_score(oracle[in_split], scores[in_split])) if len(set(oracle[in_split])) == 2 else None)
        print(split, {k: round(v["event"]["f1"], 3) for k, v in report["test"][split].items()}, flush=True)
    command = ["python", "results/sprsound_event_detection.py", *(argv if argv is not None else sys.argv[1:])]
    report["command"] = shlex.join(command)
    report["smoke_run"] = bool(args.limit or args.train_from_test)
    report["run_seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = f"{platform.machine()} CPU, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output.with_suffix(".json"), report)
    atomic_write_text(args.output.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
