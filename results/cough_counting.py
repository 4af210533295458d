"""How well does `resp-audio-hf tag` count coughs? Measured on long recordings assembled from real coughs.

One command writes `results/cough_counting.json`, `.md` and `.png` (see results/README.md for the command of the
committed files and its run time):

    python results/cough_counting.py --data-root ../shared/data --background /work/data/ext/SPRSound/train_wav

Coughs: the CC0 COVID-19 induced coughs (`load_task("COVID-cough")`), each trimmed to its active part (one true
event, a cough episode: `resp_audio_hf.assembly`); clips whose active part is over `--max-event-seconds` (long takes
with speech or many coughs) are left out. Each assembly inserts 4 to 12 of them after random gaps of 2 to 10 s into
one of two backgrounds:

* `breathing`: real non-cough audio, SPRSound auscultation recordings (breathing, with the occasional crackle or
  wheeze) concatenated, each brought to the same RMS; each cough's active part is scaled to a signal-to-noise ratio
  drawn from 0 to 20 dB. SPRSound is GPL-3.0: it is read from `--background` and never written out.
* `quiet`: a noise floor at -60 dBFS with the coughs at their recorded level (what the demo assembles).

Everything is seeded. The tagger's settings (window, hop, Cough threshold, merging gap) are chosen on assemblies of the
task's **train** split coughs (and one half of the SPRSound patients), maximising the event F1 (onset within
`--tolerance` seconds); the figures are measured on assemblies of its **test** split coughs (and the other half of
the patients). Reported per background: count error per assembly (mean absolute, bias), onset error of matched coughs
(median absolute, mean signed, in ms), precision/recall/F1 of our one-to-one onset matching, and sed_eval's
event-based F1 (onset-only, the same collar) as an independent check. The figure is one `quiet` test assembly
(CC0 audio only).
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Window/hop pairs tried while tuning (seconds), thresholds and merging gaps.
WINDOWS = ((0.5, 0.25), (1.0, 0.25), (2.0, 0.5))
THRESHOLDS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MERGE_GAPS = (0.0, 0.25, 0.5, 1.0, 1.5)
BACKGROUND_RMS_DBFS = -30.0


def cough_clips(data_root: str, split: str, rate: int, max_event_seconds: float) -> list[tuple[str, np.ndarray]]:
    """The decodable coughs of one split of the COVID-cough task whose active part is at most `max_event_seconds`."""
    from resp_audio_hf.assembly import active_span
    from resp_audio_hf.data.audio import AudioDecodeError, load_audio
    from resp_audio_hf.data.tasks import load_task

    table = load_task("COVID-cough", data_root).available
    clips = []
    for path in table.loc[table["split"] == split, "audio"]:
        try:
            audio, _ = load_audio(path, rate)
        except AudioDecodeError:
            continue
        start, end = active_span(audio, rate)
        if (end - start) / rate <= max_event_seconds:
            clips.append((Path(path).name, audio))
    return clips


def background_files(folder: str, part: int) -> list[Path]:
    """SPRSound recordings of one half of the patients (by a hash of the patient id, the name's first field)."""
    files = sorted(Path(folder).glob("*.wav"))
    if not files:
        raise SystemExit(f"No .wav recordings in {folder} (the SPRSound train_wav folder).")

    def half(path: Path) -> int:
        return hashlib.sha256(path.name.split("_")[0].encode()).digest()[0] % 2

    return [p for p in files if half(p) == part]


def background(files: list[Path], seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Random recordings of `files`, each brought to the same RMS, concatenated to at least `seconds`."""
    from resp_audio_hf.assembly import rms
    from resp_audio_hf.data.audio import load_audio

    pieces, total = [], 0
    target = 10 ** (BACKGROUND_RMS_DBFS / 20)
    while total < seconds * rate:
        audio, _ = load_audio(files[int(rng.integers(len(files)))], rate)
        pieces.append(audio * (target / max(rms(audio), 1e-9)))
        total += audio.size
    return np.concatenate(pieces).astype(np.float32)


def assemblies(clips, files, count: int, rate: int, seed: int, kind: str):
    """`count` seeded assemblies of one background `kind` from `clips`; every clip is used before any repeats."""
    from resp_audio_hf.assembly import assemble_coughs

    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(clips)))
    for _ in range(count):
        n = int(rng.integers(4, 13))
        if len(order) < n:
            order += list(rng.permutation(len(clips)))
        chosen, order = order[:n], order[n:]
        names, audio = [clips[i][0] for i in chosen], [clips[i][1] for i in chosen]
        if kind == "quiet":
            yield assemble_coughs(audio, rate, rng, names=names)
        else:
            longest = sum(a.size for a in audio) / rate + 10.0 * (n + 1)
            noise = background(files, longest, rate, rng)
            yield assemble_coughs(audio, rate, rng, background=noise, names=names, snr_db=(0.0, 20.0))


def detections(scores, config) -> list[tuple[float, float]]:
    from resp_audio_hf.tagging import COUGH_LABEL, label_segments

    return [(s.start_s, s.end_s) for s in label_segments(scores, config, [COUGH_LABEL])]


def summarise(runs: list[tuple[list, list]], tolerance: float) -> dict:
    """Count, onset and event figures over `(true events, detected segments)` pairs, one per assembly."""
    from resp_audio_hf.assembly import match_onsets

    count_errors, onset_errors, hits, n_true, n_detected = [], [], 0, 0, 0
    for truth, detected in runs:
        count_errors.append(len(detected) - len(truth))
        matching = match_onsets([t[0] for t in truth], [d[0] for d in detected], tolerance)
        onset_errors += list(matching.onset_errors_s)
        hits, n_true, n_detected = hits + matching.hits, n_true + len(truth), n_detected + len(detected)
    precision = hits / n_detected if n_detected else 0.0
    recall = hits / n_true if n_true else 0.0
    errors = np.asarray(count_errors, dtype=float)
    onsets_ms = np.asarray(onset_errors) * 1000
    return {
        "assemblies": len(runs),
        "true_events": n_true,
        "detected": n_detected,
        "count_mean_abs_error": float(np.abs(errors).mean()),
        "count_bias": float(errors.mean()),
        "count_exact_fraction": float((errors == 0).mean()),
        "true_per_assembly_mean": n_true / len(runs),
        "onset_median_abs_error_ms": float(np.median(np.abs(onsets_ms))) if onsets_ms.size else None,
        "onset_mean_error_ms": float(onsets_ms.mean()) if onsets_ms.size else None,
        "onset_p90_abs_error_ms": float(np.percentile(np.abs(onsets_ms), 90)) if onsets_ms.size else None,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
    }


def sed_eval_f1(runs: list[tuple[list, list]], tolerance: float) -> float:
    """sed_eval's event-based F1 over all assemblies, onsets only, collar `tolerance`."""
    from resp_audio_hf.event_detection import sed_eval_scores

    names = [f"assembly{index}.wav" for index in range(len(runs))]
    reference = {name: [(a, b) for a, b in truth] for name, (truth, _) in zip(names, runs)}
    detected = {name: found for name, (_, found) in zip(names, runs)}
    return sed_eval_scores(reference, detected, dict.fromkeys(names, 0.0), label="Cough", collar_seconds=tolerance,
                           segment_seconds=None)["event"]["f1"]


def tune(tagger, clips, files, args) -> tuple[object, list[dict]]:
    """The TagConfig of the highest train event F1 (ties: the lower count error)."""
    from resp_audio_hf.tagging import COUGH_LABEL, TagConfig, score_windows

    built = [
        a
        for kind, seed in (("breathing", args.seed), ("quiet", args.seed + 1))
        for a in assemblies(clips, files, args.tune_assemblies // 2, tagger.sampling_rate, seed, kind)
    ]
    grid = []
    for window, hop in WINDOWS:
        base = TagConfig(window_seconds=window, hop_seconds=hop)
        scored = [score_windows(tagger, a.audio, base, tracked=(COUGH_LABEL,), keep_threshold=1.0) for a in built]
        for threshold in THRESHOLDS:
            for gap in MERGE_GAPS:
                config = replace(base, cough_threshold=threshold, merge_gap_seconds=gap)
                runs = [(a.events, detections(s, config)) for a, s in zip(built, scored)]
                grid.append({"config": config, **summarise(runs, args.tolerance)})
        print(f"tuned window {window} s / hop {hop} s: best F1 "
              f"{max(g['f1'] for g in grid if g['config'].window_seconds == window):.3f}", flush=True)
    best = max(grid, key=lambda g: (round(g["f1"], 6), -g["count_mean_abs_error"]))
    return best["config"], grid


def markdown(report: dict) -> str:
    config = report["config"]
    lines = [
        "# Cough counting: `resp-audio-hf tag` on assembled recordings",
        "",
        f"Tagger: `{report['model']}`, windows of {config['window_seconds']} s every {config['hop_seconds']} s, "
        f"Cough at probability >= {config['cough_threshold']}, segments merged across gaps <= "
        f"{config['merge_gap_seconds']} s (chosen on {report['tuning']['assemblies']} assemblies of train-split "
        f"coughs, train F1 {report['tuning']['best']['f1']:.3f}). Measured on test-split coughs "
        f"({report['test_clips']} clips), onset tolerance {report['tolerance_s']} s.",
        "",
        "| background | assemblies | true coughs | count MAE | count bias | exact count | onset median abs (ms) "
        "| onset mean (ms) | precision | recall | F1 | sed_eval F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in report["test"].items():
        lines.append(
            f"| {kind} | {row['assemblies']} | {row['true_events']} | {row['count_mean_abs_error']:.2f} | "
            f"{row['count_bias']:+.2f} | {row['count_exact_fraction']:.0%} | {row['onset_median_abs_error_ms']:.0f} | "
            f"{row['onset_mean_error_ms']:+.0f} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | "
            f"{row['sed_eval_f1']:.3f} |"
        )
    lines += ["", f"Run time: {report['run_seconds'] / 60:.1f} min on one CPU thread ({report['machine']}).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"),
                        help="folder holding covid19-cough/ (default: ../shared/data)")
    parser.add_argument("--background", default="/work/data/ext/SPRSound/train_wav",
                        help="folder of SPRSound .wav recordings (the train_wav of SPRSound 2022)")
    parser.add_argument("--model", help="audio-classification model folder (default: pretrained/efficientat-mn04-as)")
    parser.add_argument("--tune-assemblies", type=int, default=24, help="train assemblies, half per background")
    parser.add_argument("--test-assemblies", type=int, default=40, help="test assemblies per background")
    parser.add_argument("--tolerance", type=float, default=0.5, help="onset tolerance of a match, seconds")
    parser.add_argument("--max-event-seconds", type=float, default=3.0, help="longest active part of a clip used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=REPO / "results" / "cough_counting",
                        help="output stem (.json, .md, .png)")
    args = parser.parse_args(argv)

    import torch

    from resp_audio_hf.data.file_io import atomic_write_json, atomic_write_text
    from resp_audio_hf.tagging import COUGH_LABEL, AudioTagger, TagResult, draw_timeline, label_segments, score_windows

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    tagger = AudioTagger(args.model)
    rate = tagger.sampling_rate
    train = cough_clips(args.data_root, "train", rate, args.max_event_seconds)
    test = cough_clips(args.data_root, "test", rate, args.max_event_seconds)
    print(f"{len(train)} train and {len(test)} test coughs with an active part <= {args.max_event_seconds} s",
          flush=True)
    config, grid = tune(tagger, train, background_files(args.background, 0), args)
    print(f"chosen: {config}", flush=True)
    report = {
        "model": str(tagger.model_dir.relative_to(REPO) if tagger.model_dir.is_relative_to(REPO) else tagger.model_dir),
        "config": asdict(config),
        "tolerance_s": args.tolerance,
        "seed": args.seed,
        "train_clips": len(train),
        "test_clips": len(test),
        "tuning": {
            "assemblies": args.tune_assemblies,
            "best": {k: v for k, v in next(g for g in grid if g["config"] == config).items() if k != "config"},
            "best_per_window": {
                f"{w} s / {h} s": max(
                    ({"cough_threshold": g["config"].cough_threshold, "merge_gap_seconds": g["config"].merge_gap_seconds,
                      "f1": g["f1"], "count_mean_abs_error": g["count_mean_abs_error"]}
                     for g in grid if g["config"].window_seconds == w),
                    key=lambda g: g["f1"],
                )
                for w, h in WINDOWS
            },
        },
        "test": {},
    }
    files = background_files(args.background, 1)
    shown = None
    for kind, seed in (("breathing", args.seed + 10), ("quiet", args.seed + 11)):
        runs = []
        for assembly in assemblies(test, files, args.test_assemblies, rate, seed, kind):
            scores = score_windows(tagger, assembly.audio, config, tracked=(COUGH_LABEL,), keep_threshold=1.0)
            runs.append((assembly.events, detections(scores, config)))
            if kind == "quiet" and shown is None:
                shown = TagResult("quiet test assembly 0", config, label_segments(scores, config, [COUGH_LABEL]),
                                  scores)
                truth = assembly.events
        report["test"][kind] = {**summarise(runs, args.tolerance), "sed_eval_f1": sed_eval_f1(runs, args.tolerance)}
        print(kind, report["test"][kind], flush=True)
    report["run_seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output.with_suffix(".json"), report)
    atomic_write_text(args.output.with_suffix(".md"), markdown(report))
    draw_timeline(shown, args.output.with_suffix(".png"), truth=truth)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
