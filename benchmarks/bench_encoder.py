"""Encoder forward: `RespAudioModel` (resp-passt, SDPA) vs hear21passt's PaSST, same random weights, on CPU.

hear21passt's `passt_s_swa_p16_128_ap476` is built with random weights and converted into a `RespAudioModel` by
`resp_audio_hf.convert.convert_passt`, so both compute the same function; both encode the same batch of ten-second
log-mel spectrograms under `torch.inference_mode`. Every forward pass runs alone in a fresh process (alternating
which model goes first), which gives its time and its own peak memory. The table gives clips/s, the speed-up (median
of the per-repeat ratios), the peak RSS, and the largest difference of the CLS and distillation tokens.

    python benchmarks/bench_encoder.py            # batch 8 x 10 s, 2 repeats (about 1-2 min per forward on 2 cores)
    python benchmarks/bench_encoder.py --quick    # batch 2 x 2 s, 1 repeat
"""

from __future__ import annotations

import contextlib
import io
import time
import warnings

import torch
from _common import (
    PeakMemory,
    finish,
    make_parser,
    median,
    median_ratio,
    run_in_subprocess,
    setup_threads,
    spread,
    target_row,
)

NAME = "encoder"
PASST_ARCH = "passt_s_swa_p16_128_ap476"
FRAMES_PER_SECOND = 100  # PaSST's 10 ms hop


def build_models(seed: int = 0):
    """hear21passt's PaSST with random weights (eval) and the same weights converted into a `RespAudioModel`."""
    from hear21passt.models.passt import get_model

    from resp_audio_hf.convert import convert_passt

    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = get_model(arch=PASST_ARCH, pretrained=False).eval()
    ours = convert_passt(reference.state_dict(), with_head=False).model.eval()
    return reference, ours


def spectrograms(batch: int, seconds: float, seed: int = 0) -> torch.Tensor:
    """Normalised log-mel input `[batch, frames, 128]` (PaSST's 998 frames for ten seconds)."""
    frames = min(998, int(seconds * FRAMES_PER_SECOND))
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 128, generator=generator)


def forward_reference(model, spectrogram: torch.Tensor):
    """hear21passt's encoder: `[batch, 1, mel, frames]` in, the normed CLS and distillation tokens out."""
    import hear21passt.models.passt as passt_module

    passt_module.first_RUN = False  # silence its shape printing
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns when the clip is shorter than its 998 training frames
        cls, distillation = model.forward_features(spectrogram.transpose(1, 2).unsqueeze(1))
    return torch.stack([cls, distillation], dim=1)


def forward_ours(model, spectrogram: torch.Tensor):
    with torch.inference_mode():
        hidden = model(spectrogram).last_hidden_state
    return hidden[:, :2]


def one_forward(which: str, batch: int, seconds: float, threads: int | None) -> dict:
    """
    Child process: build one model, warm it up on a tiny input, then time one forward pass over the batch and measure
    its peak RSS. Returns the seconds, the memory and the CLS/distillation tokens (to compare the two models).
    """
    setup_threads(threads)
    reference, ours = build_models()
    model, forward = (reference, forward_reference) if which == "reference" else (ours, forward_ours)
    del reference, ours
    spectrogram = spectrograms(batch, seconds)
    forward(model, spectrogram[:1, :100])  # first-call costs (thread pools, kernel selection) are not the forward's
    with PeakMemory() as memory:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        tokens = forward(model, spectrogram)
        wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mb": memory.peak_mb,
        "forward_increase_mb": memory.increase_mb,
        "tokens": tokens.float().numpy(),  # numpy pickles by value; a tensor would go through shared memory
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    setup_threads(args.threads)
    batch, seconds, repeats = (2, 2.0, 1) if args.quick else (args.batch, args.seconds, args.repeats)

    # Each forward runs in its own fresh process (so its peak memory is its own), alternating which model goes first.
    runs: dict[str, list[dict]] = {"reference": [], "ours": []}
    for repeat in range(repeats):
        for which in ("reference", "ours") if repeat % 2 == 0 else ("ours", "reference"):
            runs[which].append(
                run_in_subprocess(one_forward, which=which, batch=batch, seconds=seconds, threads=args.threads)
            )
    difference = float(abs(runs["ours"][0]["tokens"] - runs["reference"][0]["tokens"]).max())
    wall = {key: [run["wall"] for run in value] for key, value in runs.items()}
    cpu = {key: [run["cpu"] for run in value] for key, value in runs.items()}
    rows = [
        {
            "model": name,
            "clips_per_s": batch / median(wall[key]),
            "speedup": median_ratio(wall["reference"], wall[key]),
            "cpu_speedup": median_ratio(cpu["reference"], cpu[key]),
            "seconds": spread(wall[key]),
            "peak_rss_mb": median([run["peak_rss_mb"] for run in runs[key]]),
            "forward_increase_mb": median([run["forward_increase_mb"] for run in runs[key]]),
            "max_abs_diff": 0.0 if key == "reference" else difference,
            "times": wall[key],
            "cpu_times": cpu[key],
        }
        for key, name in (("reference", "hear21passt PaSST"), ("ours", "RespAudioModel (SDPA)"))
    ]
    targets = [target_row("encoder >= 1.3x hear21passt clips/s", rows[1]["speedup"], 1.3)]
    columns = [
        "model",
        "clips_per_s",
        "speedup",
        "cpu_speedup",
        "seconds",
        "peak_rss_mb",
        "forward_increase_mb",
        "max_abs_diff",
    ]
    settings = {
        "arch": PASST_ARCH,
        "batch": batch,
        "seconds": seconds,
        "frames": spectrograms(1, seconds).shape[1],
        "repeats": repeats,
    }
    title = f"Encoder forward, PaSST-base, batch {batch} x {seconds:g} s on CPU (median of {repeats})"
    finish(NAME, args, settings, rows, title, columns, targets)


if __name__ == "__main__":
    main()
