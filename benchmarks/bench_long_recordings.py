"""Long recordings: peak memory and time of embedding one clip of 10 min, 1 h and 3 h at 8 kHz, per model family.

Three paths embed the same synthetic 8 kHz recording with the same (random, seeded) encoder:

* `one_pass` (the old path): `feature_extractor([audio], sampling_rate=8000)` resamples the whole clip and takes one
  STFT over it, then `model(**inputs)` encodes the whole spectrogram in windows.
* `streamed` (the new path): `model.pool_frame_stream(feature_extractor.frame_blocks(audio, 8000), windows_at_once)`
  resamples and featurises block by block and encodes `windows_at_once` windows at a time into running pooling sums;
  the 8 kHz waveform is in memory.
* `streamed_file`: the same, reading the recording (a float WAV file) block by block, so not even the waveform is held.

Each case runs alone in a fresh process; `peak_rss_mb` is that process's peak during the embedding (it includes what
was alive before: Python, torch and transformers, about 0.8 GB, the model, the waveform), `increase_mb` its growth
over `rss_before_mb`. The one-pass path is only run up to `--one-pass-max-minutes` (its 3 h peak is many GB);
`max_abs_diff` compares each path's embedding with the first path's.

    python benchmarks/bench_long_recordings.py                      # 10, 60, 180 min; each family's published preset
    python benchmarks/bench_long_recordings.py --minutes 3 --one-pass-max-minutes 3
    python benchmarks/bench_long_recordings.py --quick              # 1 and 3 min, tiny presets

`efficientat-mn04` (EfficientAT's MobileNetV3 at PaSST's front end, random weights) is one of the presets: its
streamed paths encode windows of 2 minutes (`EfficientATModel.pool_frame_stream`), its one-pass path the whole
spectrogram at once.

`--rate-sweep` measures something else: the peak of featurising `--rate-seconds` (10) of audio given as an array at
each rate of `--rates` (1 kHz to 384 kHz, awkward ones such as 22,051 and 44,101 Hz included), one fresh process per
rate and front end, against a 1 GiB target:

    python benchmarks/bench_long_recordings.py --rate-sweep

`--layers N` cuts the encoder to its first N layers (a ViT-B window costs about 10 s of wall time on a busy 2-core CPU,
so three hours of PaSST or AST take hours at full depth): the rows say so, and the weights and activations of the
missing layers are then missing from the peak too.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import PeakMemory, current_rss_mb, finish, make_parser, run_in_subprocess, setup_threads

from resp_audio_hf import MODEL_FAMILIES

NAME = "long_recordings"
RATE = 8000
TARGET_MB = 1536
# Each family's published encoder (its first preset: `resp-passt`, ...) and its tiny preset (`--quick`).
# EfficientAT mn04 (no RespAudio preset: built from `EfficientATConfig()`, which is mn04) runs beside them.
MN04 = "efficientat-mn04"
PRESETS = tuple(next(iter(family.presets)) for family in MODEL_FAMILIES.values() if family.presets) + (MN04,)
TINY_PRESETS = tuple(
    preset for family in MODEL_FAMILIES.values() for preset in family.presets if preset.startswith("tiny-")
) + (MN04,)
RATE_TARGET_MB = 1024
# Common rates, and awkward ones (sharing almost no factor with 16 or 32 kHz), from 1 kHz to the 384 kHz limit.
SWEEP_RATES = "1000,1009,8000,11025,16000,22050,22051,44100,44101,48000,96000,176400,192000,352800,383999,384000"


def build_encoder(preset: str, layers: int | None):
    """`(model, feature extractor)` of a RespAudio preset (random, seeded) or of EfficientAT mn04."""
    from resp_audio_hf import (
        EfficientATConfig,
        EfficientATModel,
        RespAudioConfig,
        RespAudioFeatureExtractor,
        RespAudioModel,
    )

    torch.manual_seed(0)
    if preset == MN04:
        return EfficientATModel(EfficientATConfig()).eval(), RespAudioFeatureExtractor(frontend="passt", max_length=1000)
    config = RespAudioConfig.from_preset(preset, **({} if layers is None else {"num_hidden_layers": layers}))
    return RespAudioModel(config).eval(), RespAudioFeatureExtractor.from_model_config(config)


def featurise_at_rate(frontend: str, rate: int, seconds: float, threads: int | None) -> dict:
    """Child process: featurise `seconds` of noise given as an array at `rate` (resampled to the front end's rate)."""
    setup_threads(threads)
    from resp_audio_hf import RespAudioFeatureExtractor

    extractor = RespAudioFeatureExtractor(frontend=frontend)
    audio = (np.random.default_rng(0).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)
    with PeakMemory() as memory:
        start = time.perf_counter()
        frames = extractor([audio], sampling_rate=rate, return_tensors="pt")["input_values"].shape[1]
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "frames": frames, "rss_before_mb": memory.start_mb, "increase_mb": memory.increase_mb,
            "peak_rss_mb": memory.peak_mb}


def rate_sweep(args) -> None:
    rates = [int(rate) for rate in args.rates.split(",")]
    frontends = sorted({"passt", "ast", "m2d"} if args.frontends == "all" else set(args.frontends.split(",")))
    rows, targets = [], []
    for frontend in frontends:
        for rate in rates:
            result = run_in_subprocess(
                featurise_at_rate, frontend=frontend, rate=rate, seconds=args.rate_seconds, threads=args.threads
            )
            rows.append({"frontend": frontend, "rate": rate, **result})
            targets.append({
                "target": f"{frontend}, {args.rate_seconds:g} s at {rate} Hz: peak RSS < {RATE_TARGET_MB} MiB",
                "measured": f"{result['peak_rss_mb']:.0f} MiB",
                "met": "yes" if result["peak_rss_mb"] < RATE_TARGET_MB else "NO",
            })
    columns = ["frontend", "rate", "seconds", "frames", "rss_before_mb", "increase_mb", "peak_rss_mb"]
    settings = {"rates": rates, "frontends": frontends, "seconds": args.rate_seconds, "target_mb": RATE_TARGET_MB}
    title = f"{args.rate_seconds:g} s of audio as an array at each rate, featurised (fresh process per row)"
    finish(NAME + "_rates" + (f"_{args.tag}" if args.tag else ""), args, settings, rows, title, columns, targets)


def synthetic_minutes(minutes: float, seed: int = 0):
    """Breathing-like float32 audio (noise under a 4 s envelope plus a 400 Hz tone), a minute at a time."""
    samples = int(minutes * 60 * RATE)
    rng = np.random.default_rng(seed)
    step = 60 * RATE
    for start in range(0, samples, step):
        t = np.arange(start, min(start + step, samples)) / RATE
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 0.25 * t)
        yield (0.1 * envelope * rng.standard_normal(t.size) + 0.05 * np.sin(2 * np.pi * 400 * t)).astype(np.float32)


def synthetic_recording(minutes: float, seed: int = 0) -> np.ndarray:
    return np.concatenate(list(synthetic_minutes(minutes, seed)))


def write_recording(path: str, minutes: float, seed: int = 0) -> None:
    """The same recording as a float WAV file, written a minute at a time."""
    import soundfile

    with soundfile.SoundFile(path, "w", samplerate=RATE, channels=1, subtype="FLOAT") as handle:
        for chunk in synthetic_minutes(minutes, seed):
            handle.write(chunk)


def embed_one(
    preset: str, minutes: float, path: str, threads: int | None, layers: int | None, windows_at_once: int
) -> dict:
    """Child process: build the encoder, make the recording (in memory, or as a file), embed it along `path`."""
    import os
    import tempfile

    setup_threads(threads)
    model, extractor = build_encoder(preset, layers)
    with tempfile.TemporaryDirectory(prefix="bench-long-") as folder:
        if path == "streamed_file":
            audio = os.path.join(folder, "recording.wav")
            write_recording(audio, minutes)
            audio_mb = 0.0
        else:
            audio = synthetic_recording(minutes)
            audio_mb = audio.nbytes / 2**20
        with PeakMemory() as memory:
            start = time.perf_counter()
            if path == "one_pass":
                with torch.inference_mode():
                    inputs = extractor([audio], sampling_rate=RATE, return_tensors="pt")
                    embedding = model(**inputs).pooler_output
            else:
                embedding = model.pool_frame_stream(extractor.frame_blocks(audio, RATE), windows_at_once)
            seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rss_before_mb": memory.start_mb,
        "increase_mb": memory.increase_mb,
        "peak_rss_mb": memory.peak_mb,  # VmHWM after the reset: at least everything alive before the embedding
        "rss_after_mb": current_rss_mb(),
        "audio_mb": audio_mb,
        "embedding": embedding[0].float().numpy(),
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=1)
    parser.add_argument("--minutes", default="10,60,180", help="comma-separated clip lengths in minutes")
    parser.add_argument(
        "--presets", default=",".join(PRESETS), help=f"comma-separated RespAudio presets, or {MN04}"
    )
    parser.add_argument("--one-pass-max-minutes", type=float, default=60, help="longest clip the old path runs on")
    parser.add_argument(
        "--layers", type=int, default=None, help="override the presets' encoder depth (default: theirs, 12)"
    )
    parser.add_argument(
        "--windows-at-once", type=int, default=None,
        help="windows the streamed paths encode at a time (default: the model's, one on CPU)"
    )
    parser.add_argument(
        "--paths", default="streamed,streamed_file,one_pass", help="which paths to run (one_pass only up to its limit)"
    )
    parser.add_argument("--tag", default="", help="suffix of the results file, to keep runs of different settings")
    parser.add_argument("--rate-sweep", action="store_true", help="measure featurising at each of --rates instead")
    parser.add_argument("--rates", default=SWEEP_RATES, help="comma-separated rates (Hz) of the rate sweep")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="seconds of audio per rate (default 10)")
    parser.add_argument("--frontends", default="all", help="front ends of the rate sweep: all or e.g. passt,m2d")
    args = parser.parse_args()
    setup_threads(args.threads)
    if args.rate_sweep:
        rate_sweep(args)
        return
    minutes_list = [1.0, 3.0] if args.quick else [float(m) for m in args.minutes.split(",")]
    presets = list(TINY_PRESETS) if args.quick else args.presets.split(",")

    # The same for every run; each run varies the preset, the recording length and the path.
    fixed = dict(threads=args.threads, layers=args.layers, windows_at_once=args.windows_at_once)
    rows, targets = [], []
    for preset in presets:
        for minutes in minutes_list:
            paths = [p for p in args.paths.split(",") if p != "one_pass" or minutes <= args.one_pass_max_minutes]
            results = {
                path: run_in_subprocess(embed_one, preset=preset, minutes=minutes, path=path, **fixed) for path in paths
            }
            reference = results[paths[0]]["embedding"]
            for result in results.values():
                result["max_abs_diff"] = float(np.abs(result["embedding"] - reference).max()) if len(paths) > 1 else None
            for path, result in results.items():
                rows.append(
                    {
                        "preset": preset,
                        "minutes": minutes,
                        "path": path,
                        "layers": "preset" if args.layers is None else args.layers,
                        "seconds": result["seconds"],
                        "audio_mb": result["audio_mb"],
                        "rss_before_mb": result["rss_before_mb"],
                        "increase_mb": result["increase_mb"],
                        "peak_rss_mb": result["peak_rss_mb"],
                        "max_abs_diff": result["max_abs_diff"],
                    }
                )
            for path in (p for p in paths if p != "one_pass"):
                peak = results[path]["peak_rss_mb"]
                targets.append(
                    {
                        "target": f"{preset}, {minutes:g} min, {path}: peak RSS < {TARGET_MB} MiB",
                        "measured": f"{peak:.0f} MiB",
                        "met": "yes" if peak < TARGET_MB else "NO",
                    }
                )
    columns = [
        "preset", "minutes", "path", "layers", "seconds", "audio_mb", "rss_before_mb", "increase_mb", "peak_rss_mb", "max_abs_diff"
    ]
    settings = {
        "rate": RATE,
        "minutes": minutes_list,
        "presets": presets,
        "one_pass_max_minutes": args.one_pass_max_minutes,
        "target_mb": TARGET_MB,
        "layers": args.layers,
        "windows_at_once": args.windows_at_once,
        "paths": args.paths,
    }
    title = f"One {RATE} Hz recording embedded in one pass vs streamed (random weights, fresh process per row)"
    finish(NAME + (f"_{args.tag}" if args.tag else ""), args, settings, rows, title, columns, targets)


if __name__ == "__main__":
    main()
