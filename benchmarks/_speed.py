"""Helpers of the speed-against-the-limit benchmarks (`bench_speed_breakdown.py`, `bench_speed_backends.py`).

* [`StageClock`]: CPU-time marks between the stages of one clip's extraction, so that the stages partition the
  clip's time exactly (the split sums to the whole by construction, whatever the clock).
* [`network_macs`], [`frontend_flops`]: the work of the network (counted by `torch.utils.flop_counter` on the real
  input) and of the log-mel front end (counted analytically from the feature extractor's settings).
* [`matmul_peak_gflops`]: the machine's measured limit, a plain float32 matrix product.
* [`sprsound_paths`]: real SPRSound recordings, spread evenly over the sorted list so that short and long ones alike
  are in a small sample.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import SHARED_DATA

# Where the complete SPRSound 2022 is (train_wav/, test_wav/); the team's test part is the fall-back.
SPRSOUND_FULL = Path("/work/data/ext/SPRSound")
SPRSOUND_SHARED = SHARED_DATA / "sprsound"
# Stages of one clip, in the order of the extraction path. `resample` is not a step of its own there: FFmpeg decodes
# and resamples in one call (`load_audio(path, rate)`), so it is that call's time minus a decode at the file's own rate.
STAGES = ("decode", "resample", "front_end", "network", "pooling")


# ---------------------------------------------------------------------------------------------------- clips


def add_sprsound_clip_arguments(parser, clips: int, clips_help: str, encoders) -> None:
    """The options both speed benchmarks take: where SPRSound is, how many of its recordings, which encoders; and one
    thread unless `--threads` says otherwise."""
    parser.set_defaults(threads=1)
    parser.add_argument("--sprsound", type=Path, default=None,
                        help=f"SPRSound folder (default: {SPRSOUND_FULL}, else ../shared/data/sprsound)")
    parser.add_argument("--clips", type=int, default=clips, help=clips_help)
    parser.add_argument("--encoders", default=",".join(encoders), help=f"comma-separated, of {', '.join(encoders)}")


def encoder_labels(argument: str, encoders) -> list[str]:
    """The `--encoders` list, each checked against `encoders`."""
    labels = [name.strip() for name in argument.split(",") if name.strip()]
    for label in labels:
        if label not in encoders:
            raise SystemExit(f"error: unknown encoder {label!r}; choose from {', '.join(encoders)}.")
    return labels


def sprsound_paths(root: Path | None, count: int | None) -> tuple[Path, list[Path]]:
    """`count` SPRSound recordings (all when `None`) from `root` (default: the complete corpus, else the shared test
    part), taken at even steps through the sorted train + test list."""
    candidates = [root] if root is not None else [SPRSOUND_FULL, SPRSOUND_SHARED]
    for folder in candidates:
        paths = sorted(list((folder / "train_wav").glob("*.wav")) + list((folder / "test_wav").glob("*.wav")))
        if paths:
            break
    else:
        raise SystemExit(f"error: no SPRSound recordings under {' or '.join(map(str, candidates))} (train_wav/, test_wav/).")
    if count is None or count >= len(paths):
        return folder, paths
    step = len(paths) / count
    return folder, [paths[int(i * step)] for i in range(count)]


# ---------------------------------------------------------------------------------------------------- stage timing


class StageClock:
    """
    Marks taken between the steps of one clip's extraction; a stage is the time between its mark and the one
    before. The steps run are: decode at the file's own rate (`decode`), decode and resample at the model's rate (the
    extraction path's one FFmpeg call: `decode_and_resample`), `front_end`, `network`, `pooling`. The reported
    `resample` is `decode_and_resample - decode`, so the reported stages sum to the extraction path's own time
    (`whole`: `decode_and_resample + front_end + network + pooling`), the native-rate decode being the reference the
    resampling is measured against, not part of the path.
    """

    STEPS = ("decode", "decode_and_resample", "front_end", "network", "pooling")

    def __init__(self, clock: Callable[[], float] = time.process_time):
        self.clock = clock
        self.marks: list[tuple[str, float]] = []

    def start(self) -> None:
        self.marks = [("start", self.clock())]

    def mark(self, step: str, at: float | None = None) -> None:
        """Mark the end of `step` now (or at the clock reading `at`, taken earlier by a [`NetworkEndMark`])."""
        if not self.marks:
            raise RuntimeError("StageClock.start() first.")
        self.marks.append((step, self.clock() if at is None else at))

    def steps(self) -> dict[str, float]:
        """Seconds of every step (the time since the mark before it)."""
        names = [name for name, _ in self.marks[1:]]
        if names != list(self.STEPS):
            raise RuntimeError(f"Marks taken {names}, expected {list(self.STEPS)}.")
        return {name: t - self.marks[i][1] for i, (name, t) in enumerate(self.marks[1:])}

    def stages(self) -> dict[str, float]:
        """Seconds of every reported stage (`STAGES`) and of the `whole` extraction path."""
        steps = self.steps()
        stages = {
            "decode": steps["decode"],
            "resample": steps["decode_and_resample"] - steps["decode"],
            "front_end": steps["front_end"],
            "network": steps["network"],
            "pooling": steps["pooling"],
        }
        stages["whole"] = steps["decode_and_resample"] + steps["front_end"] + steps["network"] + steps["pooling"]
        return stages


class NetworkEndMark:
    """
    Forward hook on the network's last module (EfficientAT's `last_layer`, the ViT's final `layernorm`): records the
    clock when it returns, so that a forward's time splits into the network (up to then) and the pooling (after).
    The ViT encodes long clips in groups of windows and calls its layer norm once per group: the last call counts.
    """

    def __init__(self, module: torch.nn.Module, clock: Callable[[], float] = time.process_time):
        self.clock = clock
        self.time: float | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.time = self.clock()

    def remove(self) -> None:
        self.handle.remove()


def last_network_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module after which only pooling remains: `last_layer` (EfficientAT) or `layernorm` (`RespAudioModel`)."""
    for name in ("last_layer", "layernorm"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ValueError(f"{type(model).__name__} has neither last_layer nor layernorm; no network/pooling split known.")


def staged_embedding(encoder, path: str | os.PathLike, clock: StageClock, network_end: NetworkEndMark):
    """
    One clip through the extraction path of `encoder` (a `resp_audio_hf.extraction.AudioEncoder`), step by
    step, with `clock`'s marks between the steps: FFmpeg decode at the file's rate, FFmpeg decode and resample at the
    model's rate (`load_audio`, what `FileClipDataset` calls), the feature extractor (`AudioEncoder.featurize`), the
    model's forward up to `network_end`'s module, and the rest of the forward (pooling). Returns the `[dim]` float32
    embedding, the same as `extract_embeddings` gives the file (a ViT clip longer than one window is encoded in one
    forward here where extraction streams it window by window: the same windows and the same result).
    """
    from resp_audio_hf.data.audio import load_audio

    clock.start()
    load_audio(path)
    clock.mark("decode")
    audio, _ = load_audio(path, encoder.sampling_rate)
    clock.mark("decode_and_resample")
    inputs = encoder.featurize([audio])
    clock.mark("front_end")
    network_end.time = None
    with torch.inference_mode():
        pooled = encoder.model(**inputs).pooler_output
    if network_end.time is None:
        raise RuntimeError("The network's last module never ran: the hook is on the wrong module.")
    clock.mark("network", at=network_end.time)
    clock.mark("pooling")
    return pooled[0].float().numpy(), inputs


# ---------------------------------------------------------------------------------------------------- work counted


def network_macs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    """Multiply-accumulates of one forward of `model` on `inputs` (convolutions, matrix products, attention), as
    `torch.utils.flop_counter.FlopCounterMode` counts them (it counts 2 FLOPs per MAC; element-wise work is left
    out)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops() / 2


def frontend_flops(feature_extractor, num_frames: int) -> float:
    """
    Estimated FLOPs of the log-mel front end for `num_frames` frames: a real FFT of `n_fft` points per frame
    (2.5 n log2 n, half a complex radix-2 FFT's 5 n log2 n), the power spectrum (3 per bin) and the mel product
    (2 per bin and mel band; the filterbank is applied as a dense matrix). Windowing, logarithm and normalisation
    (a few per value) are left out, so this is a lower bound of the work.
    """
    n_fft = int(feature_extractor.n_fft)
    bins = n_fft // 2 + 1
    mels = int(feature_extractor.num_mel_bins)
    per_frame = 2.5 * n_fft * math.log2(n_fft) + 3 * bins + 2 * bins * mels
    return float(num_frames) * per_frame


# ---------------------------------------------------------------------------------------------------- the limit


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 10) -> float:
    """Best GFLOP/s of a `size` x `size` float32 matrix product over `repeats` timed calls on `threads` torch threads
    (CPU time would hide the threads, so this is wall clock; the best call is the one least slowed by other jobs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        out = torch.empty(size, size)
        for _ in range(2):
            torch.mm(a, b, out=out)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 / best / 1e9


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (the machine is shared: every result records them)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None
