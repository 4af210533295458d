"""Where one SPRSound clip's extraction time goes, stage by stage, against what this CPU could do (a roofline estimate).

For `pretrained/efficientat-mn04-as` (frequency-preserving embedding, as in `bench_extraction_sprsound.py` and
`results/`) and the small M2D ViT (the `small-m2d` preset at random initialisation: the same architecture and cost as
a trained one), every clip goes through the extraction path one step at a time on one thread, with the process's CPU
time read between the steps (`_speed.StageClock`): FFmpeg decode at the file's own rate, FFmpeg decode and resample
at the model's rate (`load_audio`: the extraction path's one call; `resample` is its time minus the decode's), the
log-mel front end, the network (up to its last layer, read by a forward hook) and the pooling (the rest of the
forward). The stages therefore sum to the path's whole time per clip. One more row, not part of the path, reads the
same WAV with libsndfile (`soundfile.read`), to show how much of `decode` is FFmpeg's cost of opening a file.

Roofline: the network's multiply-accumulates per clip are counted on the real input by
`torch.utils.flop_counter.FlopCounterMode` (mn04: about 0.11 GMACs per 10 s), the front end's FLOPs analytically
(FFT, power, mel product); the limit is this CPU's best float32 matrix product (`torch.mm`, one thread and all
threads). The table gives each stage's CPU ms per clip, its share, its GFLOP/s and the fraction of the one-thread peak
it reaches, and the time it would take at that peak. The goal check: mn04 at or under 10 CPU ms per clip, or which
stage holds it above, and what the roofline allows.

    python benchmarks/bench_speed_breakdown.py                   # 64 recordings spread over SPRSound, 3 repeats
    python benchmarks/bench_speed_breakdown.py --quick           # 8 recordings, 1 repeat
    python benchmarks/bench_speed_breakdown.py --clips 0         # every recording (2,683)
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from _common import finish, make_parser, print_table, setup_threads
from _speed import (
    STAGES,
    NetworkEndMark,
    StageClock,
    add_sprsound_clip_arguments,
    encoder_labels,
    frontend_flops,
    last_network_module,
    load_average,
    matmul_peak_gflops,
    network_macs,
    sprsound_paths,
    staged_embedding,
)
from bench_extraction_sprsound import build

NAME = "speed_breakdown"
# (row label, name `bench_extraction_sprsound.build` knows). `small-m2d-resp` falls back to the `small-m2d` preset
# with random weights where its retired folder is absent.
ENCODERS = {"efficientat-mn04-as": "efficientat-mn04-as", "small-m2d": "small-m2d-resp"}
GOAL_MS = 10.0
# Not a stage of the path: the same WAV read by libsndfile (`soundfile.read`, no resampling), beside FFmpeg's decode,
# to show how much of `decode` is FFmpeg's per-file cost rather than the decoding itself.
LIBSNDFILE = "decode_libsndfile (not in path)"


def breakdown(label: str, paths: list[Path], repeats: int, peak_1thread: float) -> tuple[list[dict], dict]:
    """Rows of the breakdown table for one encoder, and its per-clip figures for the JSON."""
    encoder, source = build(ENCODERS[label])
    clock = StageClock()
    network_end = NetworkEndMark(last_network_module(encoder.model))
    per_clip = []
    for path in paths:  # untimed first pass: warm caches and lazy initialisation; count the work on the real input
        _, inputs = staged_embedding(encoder, path, clock, network_end)
        per_clip.append({
            "path": path.name,
            "seconds": float(inputs["input_values"].shape[1] * encoder.feature_extractor.hop_length / encoder.sampling_rate),
            "network_gmacs": network_macs(encoder.model, inputs) / 1e9,
            "front_end_gflop": frontend_flops(encoder.feature_extractor, inputs["input_values"].shape[1]) / 1e9,
            "stage_s": {stage: [] for stage in (*STAGES, "whole", LIBSNDFILE)},
        })
    for repeat in range(repeats):
        order = range(len(paths)) if repeat % 2 == 0 else reversed(range(len(paths)))
        for index in order:
            staged_embedding(encoder, paths[index], clock, network_end)
            for stage, seconds in clock.stages().items():
                per_clip[index]["stage_s"][stage].append(seconds)
            start = time.process_time()
            soundfile.read(paths[index], dtype="float32")
            per_clip[index]["stage_s"][LIBSNDFILE].append(time.process_time() - start)
    network_end.remove()

    # CPU ms per clip of each stage: the mean over clips of each clip's median over repeats.
    ms = {
        stage: 1000 * float(np.mean([statistics.median(clip["stage_s"][stage]) for clip in per_clip]))
        for stage in (*STAGES, "whole", LIBSNDFILE)
    }
    gflop = {
        "front_end": float(np.mean([clip["front_end_gflop"] for clip in per_clip])),
        "network": 2 * float(np.mean([clip["network_gmacs"] for clip in per_clip])),
    }
    rows = []
    for stage in (*STAGES, "whole", LIBSNDFILE):
        work = gflop.get(stage)
        achieved = work / (ms[stage] / 1000) if work is not None and ms[stage] > 0 else None
        rows.append({
            "encoder": label,
            "stage": stage,
            "cpu_ms_per_clip": ms[stage],
            "share": ms[stage] / ms["whole"],
            "gflop_per_clip": work,
            "gflops": achieved,
            "fraction_of_peak": achieved / peak_1thread if achieved is not None else None,
            "ms_at_peak": 1000 * work / peak_1thread if work is not None else None,
        })
    summary = {
        "weights": source,
        "clips": len(paths),
        "mean_clip_seconds": float(np.mean([clip["seconds"] for clip in per_clip])),
        "network_gmacs_per_clip": gflop["network"] / 2,
        "network_gmacs_per_10s": float(
            np.mean([clip["network_gmacs"] * 10 / clip["seconds"] for clip in per_clip])
        ),
        "ms": ms,
        "per_clip": per_clip,
    }
    return rows, summary


def goal_rows(rows: list[dict], peak_1thread: float) -> list[dict]:
    """The mn04 goal: at or under 10 CPU ms per clip; else the dominant stage and the roofline floor."""
    mn04 = {row["stage"]: row for row in rows if row["encoder"] == "efficientat-mn04-as"}
    whole = mn04["whole"]["cpu_ms_per_clip"]
    dominant = max(STAGES, key=lambda stage: mn04[stage]["cpu_ms_per_clip"])
    # The floor if the network ran at the matrix-product peak and every other stage stayed as measured; and the
    # floor of the path's stages that are not the network (decode and resample, front end, pooling) alone.
    others = whole - mn04["network"]["cpu_ms_per_clip"]
    floor = others + mn04["network"]["ms_at_peak"]
    return [
        {
            "target": f"mn04 extraction <= {GOAL_MS:g} CPU ms per clip (one thread)",
            "measured": f"{whole:.1f} ms",
            "met": "yes" if whole <= GOAL_MS else "NO",
        },
        {
            "target": "dominant stage (reported)",
            "measured": f"{dominant} {mn04[dominant]['cpu_ms_per_clip']:.1f} ms ({mn04[dominant]['share']:.0%})",
            "met": "-",
        },
        {
            "target": f"roofline floor: network at {peak_1thread:.0f} GFLOP/s, other stages as measured",
            "measured": f"{floor:.1f} ms (network {mn04['network']['ms_at_peak']:.2f} ms + others {others:.1f} ms)",
            "met": "goal reachable" if floor <= GOAL_MS else "goal below the floor",
        },
    ]


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=3)
    add_sprsound_clip_arguments(parser, 64, "recordings spread over the corpus (0: all)", ENCODERS)
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matrices of the peak")
    args = parser.parse_args()
    setup_threads(args.threads)
    count, repeats = (8, 1) if args.quick else (args.clips or None, args.repeats)
    load_at_start = load_average()
    root, paths = sprsound_paths(args.sprsound, count)
    labels = encoder_labels(args.encoders, ENCODERS)

    size = 1024 if args.quick else args.matmul_size
    peaks = {"1 thread": matmul_peak_gflops(1, size), f"{os.cpu_count()} threads": matmul_peak_gflops(os.cpu_count(), size)}
    peak_1thread = peaks["1 thread"]
    print_table(
        f"Float32 matrix product {size} x {size} (torch.mm), best of 10",
        [{"threads": key, "gflops": value} for key, value in peaks.items()],
        ["threads", "gflops"],
    )
    rows, summaries = [], {}
    for label in labels:
        encoder_rows, summaries[label] = breakdown(label, paths, repeats, peak_1thread)
        rows.extend(encoder_rows)
    settings = {
        "sprsound": str(root),
        "clips": len(paths),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "matmul_size": size,
        "matmul_peak_gflops": peaks,
        "load_average_start": load_at_start,
        "load_average_end": load_average(),
        "encoders": summaries,
    }
    targets = goal_rows(rows, peak_1thread) if "efficientat-mn04-as" in summaries else []
    columns = ["encoder", "stage", "cpu_ms_per_clip", "share", "gflop_per_clip", "gflops", "fraction_of_peak", "ms_at_peak"]
    title = (
        f"CPU time per SPRSound clip by stage, one thread, {len(paths)} recordings (mean "
        f"{np.mean([s['mean_clip_seconds'] for s in summaries.values()]):.1f} s), peak {peak_1thread:.0f} GFLOP/s"
    )
    finish(NAME, args, settings, rows, title, columns, targets)


if __name__ == "__main__":
    main()
