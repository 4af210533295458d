"""Embedding extraction over the whole SPRSound 2022 corpus (2,683 recordings) with each encoder of the results table.

For every encoder, a fresh process runs `resp_audio_hf.extraction.extract_embeddings` on every recording of SPRSound's
train and test parts (whole recordings, decoded and resampled by FFmpeg, featurised, encoded, written to a fresh
sharded cache), and reports clips/s, seconds of audio per second, wall and CPU time and the peak RSS of that process
(from just before extraction, the encoder already built, and in total):

    python benchmarks/bench_extraction_sprsound.py --sprsound /work/data/ext/SPRSound
    python benchmarks/bench_extraction_sprsound.py --sprsound /work/data/ext/SPRSound --quick   # first 64 recordings

Encoders: `pretrained/efficientat-mn04-as` (AudioSet), the small M2D ViT (`pretrained/small-m2d-resp`, or the
`small-m2d` preset at random initialisation where that folder is absent: the same architecture and cost), and the
log-mel statistics and clip-duration baselines. There is no reference implementation to run beside them, so the
figures are absolute: on a machine shared with other jobs the wall-clock numbers depend on the load (recorded), the
CPU time per clip much less.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    PeakMemory,
    finish,
    make_parser,
    peak_rss_mb,
    run_in_subprocess,
    setup_threads,
)

NAME = "extraction_sprsound"
ENCODERS = ("efficientat-mn04-as", "small-m2d-resp", "log-mel-stats", "duration")


def recordings(sprsound: Path) -> list[Path]:
    paths = sorted(list((sprsound / "train_wav").glob("*.wav")) + list((sprsound / "test_wav").glob("*.wav")))
    if not paths:
        raise SystemExit(f"no recordings in {sprsound}/train_wav or {sprsound}/test_wav")
    return paths


def build(name: str):
    from resp_audio_hf.benchmark.nonlearned import nonlearned_encoder
    from resp_audio_hf.extraction import AudioEncoder

    if name in ("log-mel-stats", "duration"):
        return nonlearned_encoder(name), name
    folder = REPO / "pretrained" / name
    if folder.is_dir():
        return AudioEncoder.from_pretrained(str(folder), pooling="freq_preserving"), str(folder.relative_to(REPO))
    if name == "small-m2d-resp":
        return AudioEncoder.from_preset("small-m2d", seed=0), "small-m2d preset (random weights, same cost)"
    raise SystemExit(f"{folder} is absent")


def extract(name: str, paths: list[str], batch_size: int, threads: int | None) -> dict:
    import soundfile

    from resp_audio_hf.extraction import FileClipDataset, extract_embeddings

    setup_threads(threads)
    encoder, source = build(name)
    dataset = FileClipDataset(paths, encoder.sampling_rate)
    audio_seconds = sum(soundfile.info(p).duration for p in paths)
    cache = Path(tempfile.mkdtemp(prefix="bench-extraction-"))
    try:
        with PeakMemory() as memory:
            cpu, wall = time.process_time(), time.perf_counter()
            features, failures = extract_embeddings(
                encoder, dataset, cache_dir=cache, batch_size=batch_size, progress=False, return_failures=True
            )
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {
        "encoder": name,
        "weights": source,
        "clips": len(paths),
        "failed": len(failures),
        "dim": int(features.shape[1]),
        "audio_h": audio_seconds / 3600,
        "wall_s": wall,
        "cpu_s": cpu,
        "clips_per_s": len(paths) / wall,
        "x_realtime": audio_seconds / wall,
        "cpu_ms_per_clip": 1000 * cpu / len(paths),
        "peak_rss_mb": peak_rss_mb(),
        "extraction_peak_increase_mb": memory.increase_mb,
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=1)
    parser.add_argument("--sprsound", type=Path, required=True, help="the SPRSound folder (train_wav/, test_wav/)")
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    paths = [str(p) for p in recordings(args.sprsound)]
    if args.quick:
        paths = paths[:64]
    rows = []
    for name in [e.strip() for e in args.encoders.split(",") if e.strip()]:
        row = run_in_subprocess(extract, name=name, paths=paths, batch_size=args.batch_size, threads=args.threads)
        print(row, flush=True)
        rows.append(row)
    finish(
        NAME,
        args,
        {
            "recordings": len(paths),
            "batch_size": args.batch_size,
            "threads": args.threads,
            "sprsound": str(args.sprsound),
        },
        rows,
        f"Extraction over {len(paths)} SPRSound recordings (one fresh process per encoder)",
        [
            "encoder",
            "weights",
            "clips",
            "failed",
            "dim",
            "audio_h",
            "wall_s",
            "cpu_s",
            "clips_per_s",
            "x_realtime",
            "cpu_ms_per_clip",
            "peak_rss_mb",
            "extraction_peak_increase_mb",
        ],
    )


if __name__ == "__main__":
    main()
