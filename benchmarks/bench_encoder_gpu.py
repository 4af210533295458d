"""Encoder forward on a GPU: `RespAudioModel` (resp-passt) vs hear21passt's PaSST, bf16 autocast, with torch.compile.

The same comparison as `bench_encoder.py` (same random weights, converted with `convert_passt`) at GPU sizes: batch
64 x 10 s under `torch.autocast("cuda", dtype=torch.bfloat16)` and `torch.inference_mode`. Each candidate is timed
with CUDA synchronisation, the repeats interleaved; the table gives clips/s, the speed-up over hear21passt, the peak
GPU memory of one forward (`torch.cuda.max_memory_allocated` above the weights) and whether `torch.compile` helps.
Without CUDA it prints one "skipped: no CUDA" row (and records it in the JSON) instead of failing.

ONNX rows: ours exported by `resp_audio_hf.export.export_onnx` (float32: ONNX Runtime has no autocast) and run by
`OnnxAudioModel` on ONNX Runtime's `CUDAExecutionProvider` (the `onnxruntime-gpu` package), the input handed over from
host memory as numpy, as `OnnxAudioModel` takes it (so the copy to the device is in its time). Its `max_abs_diff` is
against our eager float32 `pooler_output`, not hear21passt's tokens. Where the provider is absent the row says so and
is skipped; `--device cpu` runs every row on the CPU (CPUExecutionProvider), to check the script itself.

    python benchmarks/bench_encoder_gpu.py                 # batch 64 x 10 s, 10 repeats, eager and compiled
    python benchmarks/bench_encoder_gpu.py --quick         # batch 8 x 2 s, 3 repeats
    python benchmarks/bench_encoder_gpu.py --no-compile    # no torch.compile rows
    python benchmarks/bench_encoder_gpu.py --no-onnx       # no ONNX Runtime row
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import (
    finish,
    make_parser,
    median,
    median_ratio,
    spread,
    target_row,
    time_interleaved,
)
from bench_encoder import (
    PASST_ARCH,
    build_models,
    forward_ours,
    forward_reference,
    spectrograms,
)

NAME = "encoder_gpu"
ONNX_ROW = ("RespAudioModel (SDPA)", "onnxruntime fp32")


def onnx_runner(ours, spectrogram: torch.Tensor, device: torch.device, folder: Path):
    """`(run, None)`: a callable returning ONNX Runtime's `pooler_output` for `spectrogram` from ours exported to
    `folder`, on CUDAExecutionProvider (CPUExecutionProvider for a CPU device); or `(None, why not)`."""
    try:
        import onnxruntime
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnxruntime-gpu)"
    provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        return None, f"ONNX Runtime has no {provider} (it has {', '.join(onnxruntime.get_available_providers())})"
    from resp_audio_hf import RespAudioFeatureExtractor
    from resp_audio_hf.export.onnx import export_onnx
    from resp_audio_hf.export.onnx_runtime import OnnxAudioModel

    export_onnx(ours.to("cpu"), RespAudioFeatureExtractor.from_model_config(ours.config), folder)
    ours.to(device)
    runtime = OnnxAudioModel(folder, providers=[provider])
    values = spectrogram.float().cpu().numpy()
    mask = np.ones(values.shape[:2], dtype=np.int64)
    return (lambda: runtime(values, mask)["pooler_output"]), None


def synchronised(function, device: torch.device):
    def run():
        output = function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return output

    return run


def peak_memory_mb(function, device: torch.device) -> float:
    """Peak memory allocated on `device` during one call, above what was allocated before it (MiB)."""
    if device.type != "cuda":
        return float("nan")
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    function()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cuda", help="torch device (cpu only to check the script itself)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidates")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime candidate")
    args = parser.parse_args()
    batch, seconds, repeats = (8, 2.0, min(args.repeats, 3)) if args.quick else (args.batch, args.seconds, args.repeats)
    columns = ["model", "mode", "clips_per_s", "speedup", "seconds", "gpu_peak_mb", "max_abs_diff", "note"]
    settings = {
        "arch": PASST_ARCH,
        "batch": batch,
        "seconds": seconds,
        "repeats": repeats,
        "dtype": "bfloat16 autocast",
    }

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        rows = [
            {
                "model": "skipped: no CUDA",
                "mode": "-",
                "clips_per_s": None,
                "speedup": None,
                "seconds": None,
                "gpu_peak_mb": None,
                "max_abs_diff": None,
                "note": None,
            }
        ]
        settings["skipped"] = "no CUDA device"
        finish(NAME, args, settings, rows, "Encoder forward on GPU", columns)
        return

    torch.backends.cuda.matmul.allow_tf32 = True  # only matters outside autocast regions (none here)
    reference, ours = build_models()
    reference, ours = reference.to(device), ours.to(device)
    spectrogram = spectrograms(batch, seconds).to(device)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def run_reference(features=reference.forward_features):
        # hear21passt's encoder is its `forward_features` (its `forward` adds the AudioSet head), so that is what
        # gets compiled; the tokens are those of `bench_encoder.forward_reference`.
        with autocast(), torch.inference_mode():
            cls, distillation = features(spectrogram.transpose(1, 2).unsqueeze(1))
        return torch.stack([cls, distillation], dim=1)

    def run_ours(model=ours):
        with autocast():
            return forward_ours(model, spectrogram)

    candidates = {("hear21passt PaSST", "eager"): run_reference, ("RespAudioModel (SDPA)", "eager"): run_ours}
    if not args.no_compile:
        compiled_reference, compiled_ours = torch.compile(reference.forward_features), torch.compile(ours)
        candidates[("hear21passt PaSST", "torch.compile")] = lambda: run_reference(compiled_reference)
        candidates[("RespAudioModel (SDPA)", "torch.compile")] = lambda: run_ours(compiled_ours)
    notes = {}
    workdir = tempfile.TemporaryDirectory(prefix="bench-encoder-gpu-onnx-")
    if args.no_onnx:
        notes[ONNX_ROW] = "skipped: --no-onnx"
    else:
        run_onnx, why_not = onnx_runner(ours, spectrogram, device, Path(workdir.name))
        if run_onnx is None:
            notes[ONNX_ROW] = f"skipped: {why_not}"
        else:
            candidates[ONNX_ROW] = run_onnx
            notes[ONNX_ROW] = "max_abs_diff vs ours eager fp32 pooler_output; GPU memory not seen by torch"

    forward_reference(reference, spectrogram[:1, :100])  # silences hear21passt's first-call shape printing
    expected = run_reference().float()
    differences, memory = {}, {}
    for key, function in candidates.items():
        if key == ONNX_ROW:
            with torch.inference_mode():
                eager_pooled = ours(spectrogram).pooler_output.float().cpu().numpy()
            differences[key] = float(np.abs(function() - eager_pooled).max())
            memory[key] = float("nan")
            continue
        # The first call compiles; its output is also the one compared with hear21passt's eager output.
        differences[key] = float((function().float() - expected).abs().max())
        memory[key] = peak_memory_mb(function, device)
    timings = time_interleaved(
        {key: synchronised(function, device) for key, function in candidates.items()}, repeats, warmup=2
    )

    baseline = ("hear21passt PaSST", "eager")
    rows = [
        {
            "model": model,
            "mode": mode,
            "clips_per_s": batch / median(timings.wall[(model, mode)]),
            "speedup": median_ratio(timings.wall[baseline], timings.wall[(model, mode)]),
            "seconds": spread(timings.wall[(model, mode)]),
            "gpu_peak_mb": memory[(model, mode)],
            "max_abs_diff": differences[(model, mode)],
            "note": notes.get((model, mode)),
            "times": timings.wall[(model, mode)],
        }
        for model, mode in candidates
    ]
    rows += [{"model": model, "mode": mode, "note": note} for (model, mode), note in notes.items() if (model, mode) not in candidates]
    workdir.cleanup()
    targets = [target_row("ours eager >= 1.3x hear21passt eager (reported)", rows[1]["speedup"], 1.3)]
    if not args.no_compile:
        gain = median_ratio(
            timings.wall[("RespAudioModel (SDPA)", "eager")], timings.wall[("RespAudioModel (SDPA)", "torch.compile")]
        )
        targets.append(
            {
                "target": "torch.compile speed-up of ours (reported)",
                "measured": f"{gain:.2f}x",
                "met": "helps" if gain > 1.05 else "does not help",
            }
        )
    if ONNX_ROW in candidates:
        gain = median_ratio(timings.wall[("RespAudioModel (SDPA)", "eager")], timings.wall[ONNX_ROW])
        targets.append(
            {
                "target": "ONNX Runtime fp32 vs ours eager bf16 (reported)",
                "measured": f"{gain:.2f}x",
                "met": "faster" if gain > 1.05 else "not faster",
            }
        )
    settings["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    device_name = settings["device_name"]
    title = f"Encoder forward, PaSST-base, batch {batch} x {seconds:g} s, bf16 on {device_name} (median of {repeats})"
    finish(NAME, args, settings, rows, title, columns, targets)


if __name__ == "__main__":
    main()
