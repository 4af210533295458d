"""Front end: batched `RespAudioFeatureExtractor` vs transformers' `ASTFeatureExtractor` and hear21passt's mel module.

Both sides featurise the same ten-second clips in this process; the table gives clips/s (median of the repeats), the
speed-up (median of the per-repeat ratios) and the largest absolute difference between the two spectrograms.

For AST a third timing, `fft_and_mel_s`, is the arithmetic every Kaldi-fbank implementation does, done our fastest
way: only the 512-point real FFT of every frame (frames already cut and windowed outside the timer, and hot in the
cache), its power and the mel product, in the same chunks as ours. `ref / fft_and_mel` bounds the speed-up that any
implementation in eager PyTorch on this machine could reach, before it has even cut a frame or taken a logarithm.

    python benchmarks/bench_frontend.py            # 64 clips, 7 repeats
    python benchmarks/bench_frontend.py --quick    # 16 clips, 3 repeats
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch
from _common import finish, make_parser, median, median_ratio, setup_threads, spread, target_row, time_interleaved

NAME = "frontend"
CLIP_SECONDS = 10.0


def synthetic_clips(count: int, sampling_rate: int, seconds: float = CLIP_SECONDS, seed: int = 0) -> list[np.ndarray]:
    """Breath-like test audio: band-limited noise under a slow envelope plus a weak tone, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    samples = int(seconds * sampling_rate)
    t = np.arange(samples) / sampling_rate
    clips = []
    for _ in range(count):
        noise = np.convolve(rng.standard_normal(samples), np.ones(4) / 4, mode="same")
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 2 * np.pi))
        tone = 0.05 * np.sin(2 * np.pi * rng.uniform(100, 600) * t)
        clips.append((0.2 * noise * envelope + tone).astype(np.float32))
    return clips


def hear21passt_mel() -> torch.nn.Module:
    """The mel module of hear21passt's `get_basic_model` (eval mode: no frequency/time masking, fixed f_min/f_max)."""
    from hear21passt.models.preprocess import AugmentMelSTFT

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the f_max it derives
        mel = AugmentMelSTFT(
            n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192, htk=False,
            fmin=0.0, fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000,
        )
    return mel.eval()


def bench_ast(clips: list[np.ndarray], repeats: int) -> dict:
    from transformers import ASTFeatureExtractor

    from resp_audio_hf import RespAudioFeatureExtractor

    reference = ASTFeatureExtractor()
    ours = RespAudioFeatureExtractor(frontend="ast")
    rate = reference.sampling_rate
    fft_and_mel = fft_and_mel_only(ours, clips)
    times = time_interleaved(
        {
            "reference": lambda: reference(clips, sampling_rate=rate, return_tensors="pt"),
            "ours": lambda: ours(clips, sampling_rate=rate, return_tensors="pt"),
            "fft_and_mel": fft_and_mel,
        },
        repeats,
    )
    # ASTFeatureExtractor always pads to 1024 frames; ask ours for the same to compare every frame.
    expected = reference(clips, sampling_rate=rate, return_tensors="pt")["input_values"]
    got = ours(clips, sampling_rate=rate, return_tensors="pt", padding="max_length", max_length=expected.shape[1])
    row = _row("AST: ASTFeatureExtractor (transformers)", len(clips), times, got["input_values"], expected)
    row["fft_and_mel_s"] = median(times.wall["fft_and_mel"])
    row["max_possible_speedup"] = median_ratio(times.wall["reference"], times.wall["fft_and_mel"])
    row["times_fft_and_mel"] = times.wall["fft_and_mel"]
    return row


def fft_and_mel_only(extractor, clips: list[np.ndarray]):
    """
    A callable doing only the FFT, the power and the mel product of as many Kaldi frames as `clips` have. The frames of
    one chunk are cut once, outside the timer, and transformed again for every chunk, so they come from the cache as
    the freshly cut frames of a real front end do.
    """
    from resp_audio_hf.feature_extraction_resp_audio import (
        CPU_CHUNK_BINS,
        MEL_BLOCK_SIZE,
        _apply_mel_filter_blocks,
        _mel_filter_blocks,
        _power,
    )

    bins = extractor.n_fft // 2 + 1
    num_frames = extractor.num_frames(len(clips[0]))
    rows = max(1, min(len(clips), CPU_CHUNK_BINS // (num_frames * bins)))
    frames = torch.from_numpy(np.stack(clips[:rows])).unfold(-1, extractor.win_length, extractor.hop_length)
    framed = torch.nn.functional.pad(frames * extractor.window, (0, extractor.n_fft - extractor.win_length))
    blocks = _mel_filter_blocks(extractor.mel_filters, MEL_BLOCK_SIZE)
    mel = torch.empty(len(clips) * num_frames, extractor.num_mel_bins)

    def run():
        for start in range(0, len(clips), rows):
            chunk = framed[: min(rows, len(clips) - start)]
            spectrum = torch.fft.rfft(chunk).reshape(-1, bins)
            power = _power(spectrum)
            _apply_mel_filter_blocks(power, blocks, out=mel[start * num_frames : start * num_frames + power.shape[0]])

    return run


def bench_passt(clips: list[np.ndarray], repeats: int) -> dict:
    from resp_audio_hf import RespAudioFeatureExtractor

    reference = hear21passt_mel()
    ours = RespAudioFeatureExtractor(frontend="passt")
    # hear21passt takes one pre-stacked tensor; ours takes the list of clips (and validates, stacks and masks them).
    stacked = torch.from_numpy(np.stack(clips))

    def run_reference():
        with torch.inference_mode():
            return reference(stacked)

    times = time_interleaved(
        {"reference": run_reference, "ours": lambda: ours(clips, sampling_rate=32000, return_tensors="pt")}, repeats
    )
    expected = run_reference().transpose(1, 2)
    got = ours(clips, sampling_rate=32000, return_tensors="pt")["input_values"]
    return _row("PaSST: hear21passt AugmentMelSTFT", len(clips), times, got, expected)


def _row(reference: str, count: int, timings, got: torch.Tensor, expected: torch.Tensor) -> dict:
    if got.shape != expected.shape:
        raise RuntimeError(f"Spectrogram shapes differ: ours {tuple(got.shape)}, reference {tuple(expected.shape)}.")
    times = timings.wall
    return {
        "reference": reference,
        "clips": count,
        "ref_clips_per_s": count / median(times["reference"]),
        "ours_clips_per_s": count / median(times["ours"]),
        "speedup": median_ratio(times["reference"], times["ours"]),
        "cpu_speedup": median_ratio(timings.cpu["reference"], timings.cpu["ours"]),
        "max_abs_diff": float((got - expected).abs().max()),
        "ref_s": spread(times["reference"]),
        "ours_s": spread(times["ours"]),
        "times_reference": times["reference"],
        "times_ours": times["ours"],
        "cpu_times_reference": timings.cpu["reference"],
        "cpu_times_ours": timings.cpu["ours"],
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=7)
    parser.add_argument("--clips", type=int, default=64, help="ten-second clips per batch (default 64)")
    args = parser.parse_args()
    setup_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    count, repeats = (16, min(args.repeats, 3)) if args.quick else (args.clips, args.repeats)

    rows = [
        bench_ast(synthetic_clips(count, 16000), repeats),
        bench_passt(synthetic_clips(count, 32000), repeats),
    ]
    ast_target = target_row("AST front end >= 5x ASTFeatureExtractor", rows[0]["speedup"], 5.0)
    ast_target["measured"] += f" (FFT and mel alone: {rows[0]['max_possible_speedup']:.1f}x)"
    targets = [ast_target, target_row("PaSST front end >= 1x hear21passt", rows[1]["speedup"], 1.0)]
    columns = [
        "reference",
        "clips",
        "ref_clips_per_s",
        "ours_clips_per_s",
        "speedup",
        "cpu_speedup",
        "max_abs_diff",
        "fft_and_mel_s",
        "max_possible_speedup",
        "ref_s",
        "ours_s",
    ]
    settings = {"clips": count, "clip_seconds": CLIP_SECONDS, "repeats": repeats, "warmup": 1}
    finish(
        NAME,
        args,
        settings,
        rows,
        f"Front end, {count} x {CLIP_SECONDS:.0f} s clips (median of {repeats})",
        columns,
        targets,
    )


if __name__ == "__main__":
    main()
