"""Embedding extraction over a dataset: peak memory as the dataset grows 10x, and throughput with DataLoader workers.

`resp_audio_hf.extraction.extract_embeddings` embeds every clip of a dataset of real SPRSound recordings (decoded and
resampled by FFmpeg, featurised, encoded, written to a sharded cache), once for N clips and once for 10 N, with and
without DataLoader worker processes. The 10 N dataset is the N recordings ten times over, so that only the dataset's
size changes and not its longest clip (the peak legitimately follows the largest batch). Each run is a fresh process,
so the peak RSS is that run's own: the main process's peak is measured from just before extraction (model already
built), the workers' from their start.

    python benchmarks/bench_extraction.py            # N = 32 clips (and 320), tiny-passt encoder
    python benchmarks/bench_extraction.py --quick    # N = 8 (and 80)
    python benchmarks/bench_extraction.py --preset resp-passt --clips 16

The encoder defaults to `tiny-passt` (PaSST's full 32 kHz front end, a two-layer encoder): this benchmark is about the
pipeline around the model, whose cost per clip would otherwise dwarf it on a 2-core CPU.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    SHARED_DATA,
    PeakMemory,
    children_peak_rss_mb,
    current_rss_mb,
    finish,
    make_parser,
    median,
    run_in_subprocess,
    setup_threads,
)

NAME = "extraction"
SPRSOUND_WAVS = SHARED_DATA / "sprsound" / "test_wav"
SYNTHETIC_RATE = 8000


class SyntheticClipDataset(torch.utils.data.Dataset):
    """
    Stand-in when the SPRSound recordings are absent: `distinct` clips of 8-15 s of noise, `copies` times over, each
    generated from its seed on access, so that the dataset itself holds nothing in memory, like a dataset of files.
    """

    def __init__(self, distinct: int, copies: int, sampling_rate: int):
        self.distinct = distinct
        self.copies = copies
        self.sampling_rate = sampling_rate

    def __len__(self) -> int:
        return self.distinct * self.copies

    def describe(self, index: int) -> str:
        return f"synthetic clip {index % self.distinct}"

    def signature(self) -> dict:
        return {
            "items": f"synthetic-{self.distinct}x{self.copies}",
            "n": len(self),
            "sampling_rate": self.sampling_rate,
        }

    def __getitem__(self, index: int) -> dict:
        import torchaudio.functional as audio_functional

        rng = np.random.default_rng(index % self.distinct)
        seconds = rng.uniform(8.0, 15.0)
        clip = torch.from_numpy((0.1 * rng.standard_normal(int(seconds * SYNTHETIC_RATE))).astype(np.float32))
        clip = audio_functional.resample(clip, SYNTHETIC_RATE, self.sampling_rate)
        return {"index": index, "audio": clip.numpy(), "sampling_rate": self.sampling_rate}


def make_dataset(distinct: int, copies: int, sampling_rate: int):
    """
    `distinct` SPRSound recordings spread over the corpus, `copies` times over, as a `FileClipDataset` (synthetic
    clips when the corpus is absent).
    """
    from resp_audio_hf.extraction import FileClipDataset

    paths = sorted(SPRSOUND_WAVS.glob("*.wav")) if SPRSOUND_WAVS.is_dir() else []
    if not paths:
        return SyntheticClipDataset(distinct, copies, sampling_rate), "synthetic (SPRSound not found)"
    step = max(1, len(paths) // distinct)
    chosen = [paths[(i * step) % len(paths)] for i in range(distinct)]
    return FileClipDataset(chosen * copies, sampling_rate), f"SPRSound wav ({len(paths)} files available)"


def extract(preset: str, distinct: int, copies: int, workers: int, batch_size: int, threads: int | None) -> dict:
    """Child process: embed `distinct * copies` clips with `workers` DataLoader workers; time, peak RSS, checks."""
    setup_threads(threads)
    warnings.filterwarnings("ignore")
    from resp_audio_hf.extraction import AudioEncoder, extract_embeddings

    encoder = AudioEncoder.from_preset(preset, seed=0)
    dataset, source = make_dataset(distinct, copies, encoder.sampling_rate)
    count = len(dataset)
    cache_dir = Path(tempfile.mkdtemp(prefix="bench-extraction-"))
    try:
        # Warm-up on two clips outside the measurement: first-call costs are not per-dataset costs.
        encoder.embed(encoder.featurize([dataset[0]["audio"], dataset[1]["audio"]]))
        with PeakMemory() as memory:
            start = time.perf_counter()
            embeddings = extract_embeddings(
                encoder, dataset, cache_dir=cache_dir, batch_size=batch_size, num_workers=workers, progress=False
            )
            seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return {
        "source": source,
        "seconds": seconds,
        "clips_per_s": count / seconds,
        "rss_before_mb": memory.start_mb,
        "peak_rss_mb": memory.peak_mb,
        "increase_mb": memory.increase_mb,
        "workers_peak_rss_mb": children_peak_rss_mb() if workers else None,
        "rss_after_mb": current_rss_mb(),
        "shape": list(embeddings.shape),
        "finite": bool(np.isfinite(embeddings).all()),
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=2)
    parser.add_argument("--clips", type=int, default=32, help="N: the small dataset size (the large one is 10 N)")
    parser.add_argument("--preset", default="tiny-passt", help="RespAudio preset of the (random) encoder")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the runs with workers")
    args = parser.parse_args()
    setup_threads(args.threads)
    small = 8 if args.quick else args.clips
    repeats = 1 if args.quick else args.repeats

    rows = []
    for copies in (1, 10):
        count = small * copies
        for workers in (0, args.workers):
            results = [
                run_in_subprocess(
                    extract,
                    preset=args.preset,
                    distinct=small,
                    copies=copies,
                    workers=workers,
                    batch_size=args.batch_size,
                    threads=args.threads,
                )
                for _ in range(repeats)
            ]
            if not all(result["finite"] for result in results):
                raise RuntimeError("Extraction returned non-finite embeddings.")
            rows.append(
                {
                    "clips": count,
                    "workers": workers,
                    "clips_per_s": median([r["clips_per_s"] for r in results]),
                    "seconds": median([r["seconds"] for r in results]),
                    "rss_before_mb": median([r["rss_before_mb"] for r in results]),
                    "peak_rss_mb": median([r["peak_rss_mb"] for r in results]),
                    "increase_mb": median([r["increase_mb"] for r in results]),
                    "workers_peak_rss_mb": results[0]["workers_peak_rss_mb"],
                    "embedding_shape": "x".join(map(str, results[0]["shape"])),
                    "source": results[0]["source"],
                }
            )
    by_key = {(row["clips"], row["workers"]): row for row in rows}
    targets = []
    for workers in (0, args.workers):
        growth = by_key[(10 * small, workers)]["peak_rss_mb"] / by_key[(small, workers)]["peak_rss_mb"]
        # Met when the peak grows by at most 10%: report 1.10 / growth so that ">= 1" reads as met.
        targets.append(
            {
                "target": f"peak RSS x{10}: dataset {small} -> {10 * small} clips, {workers} workers (<= 1.10)",
                "measured": f"{growth:.3f}",
                "met": "yes" if growth <= 1.10 else "NO",
            }
        )
    speedup = by_key[(10 * small, args.workers)]["clips_per_s"] / by_key[(10 * small, 0)]["clips_per_s"]
    targets.append(
        {
            "target": f"throughput with {args.workers} DataLoader workers vs none, {10 * small} clips",
            "measured": f"{speedup:.2f}x",
            "met": "(reported)",
        }
    )
    columns = [
        "clips",
        "workers",
        "clips_per_s",
        "seconds",
        "rss_before_mb",
        "peak_rss_mb",
        "increase_mb",
        "workers_peak_rss_mb",
        "embedding_shape",
    ]
    settings = {
        "preset": args.preset,
        "small": small,
        "large": 10 * small,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "repeats": repeats,
        "source": rows[0]["source"],
    }
    title = f"Embedding extraction, {args.preset}, {rows[0]['source']} (median of {repeats})"
    finish(NAME, args, settings, rows, title, columns, targets)


if __name__ == "__main__":
    main()
