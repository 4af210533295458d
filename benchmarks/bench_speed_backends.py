"""The network stage of one SPRSound clip, side by side: eager PyTorch, torch.compile, ONNX Runtime, EfficientAT's code.

The same real recordings (spread over SPRSound, decoded and featurised once beforehand, so only the network and its
pooling or head are timed) go one at a time, as extraction sends them, through:

* `eager`: the model in PyTorch (`pretrained/efficientat-mn04-as` as `EfficientATForAudioClassification`, returning
  its 527 logits; the `small-m2d` preset ViT at random initialisation, returning its frequency-preserving embedding);
* `torch.compile`: the same model through `torch.compile(dynamic=True)` (inductor; a failure is recorded, not
  raised); its first pass over the clips, which compiles, is reported apart as `first_pass_s`;
* `onnxruntime`: the package's export (`resp_audio_hf.export.export_onnx`, pooling and head inside the graph) run by
  `OnnxAudioModel` on the CPU execution provider with `--threads` intra-op threads;
* `EfficientAT's own code` (mn04 only): its `get_model(width_mult=0.4)` with the original `mn04_as_mAP_432.pt`,
  imported from a checkout as `bench_efficientat.py` does (`--efficientat-dir`, env EFFICIENTAT_DIR), on the same
  log-mel input (EfficientAT's front end gives it within 2e-5, see `bench_efficientat.py`).

The repeats are interleaved (`_common.time_interleaved`), so the ratios are measured under the same load; `speedup` is
eager's CPU time over the candidate's (per-repeat median). `max_abs_diff` compares the outputs with eager's.

    python benchmarks/bench_speed_backends.py --efficientat-dir /work/data/ext/efficientat   # 32 clips, 5 repeats
    python benchmarks/bench_speed_backends.py --quick                                      # 6 clips, 2 repeats
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    REPO,
    finish,
    make_parser,
    median,
    median_ratio,
    setup_threads,
    time_interleaved,
)
from _speed import add_sprsound_clip_arguments, encoder_labels, load_average, sprsound_paths

NAME = "speed_backends"
MODEL_DIR = REPO / "pretrained" / "efficientat-mn04-as"
ENCODERS = ("efficientat-mn04-as", "small-m2d")


def load_encoder(label: str):
    """`(model, feature_extractor, output name)`: the mn04 classifier (logits) or the small ViT (embedding)."""
    from resp_audio_hf.export.onnx import load_model_for_export

    if label == "efficientat-mn04-as":
        model, feature_extractor = load_model_for_export(str(MODEL_DIR))
        return model, feature_extractor, "logits"
    if label == "small-m2d":
        model, feature_extractor = load_model_for_export(preset="small-m2d", seed=0)
        return model, feature_extractor, "pooler_output"
    raise SystemExit(f"error: unknown encoder {label!r}; choose from {', '.join(ENCODERS)}.")


def featurised_clips(paths: list[Path], feature_extractor) -> list[dict[str, torch.Tensor]]:
    """Every clip decoded and resampled by the extraction path's `load_audio`, then featurised alone."""
    from resp_audio_hf.data.audio import load_audio

    rate = feature_extractor.sampling_rate
    return [
        feature_extractor([load_audio(path, rate)[0]], sampling_rate=rate, return_tensors="pt") for path in paths
    ]


def candidates_for(label: str, model, feature_extractor, output: str, args, workdir: Path) -> tuple[dict, dict]:
    """`{backend: callable(inputs) -> output array}` and `{backend: why it is missing}`."""
    from resp_audio_hf.export.onnx import export_onnx
    from resp_audio_hf.export.onnx_runtime import OnnxAudioModel

    def eager(inputs, module=model):
        with torch.inference_mode():
            return getattr(module(**inputs), output).numpy()

    candidates, missing = {"eager": eager}, {}
    if args.no_compile:
        missing["torch.compile"] = "--no-compile"
    else:
        compiled = torch.compile(model, dynamic=True)
        candidates["torch.compile"] = lambda inputs: eager(inputs, compiled)
    try:
        folder = workdir / label
        start = time.perf_counter()
        export_onnx(model, feature_extractor, folder)
        print(f"{label}: exported to ONNX in {time.perf_counter() - start:.0f} s", flush=True)
        runtime = OnnxAudioModel(folder, intra_op_num_threads=torch.get_num_threads())
        candidates["onnxruntime"] = lambda inputs: runtime(
            inputs["input_values"].numpy(), inputs["attention_mask"].numpy()
        )[output]
    except Exception as error:  # noqa: BLE001  onnx / onnxruntime absent or the export failing: recorded, the others still run
        missing["onnxruntime"] = f"{type(error).__name__}: {error}"
    if label == "efficientat-mn04-as":
        efficientat_dir = args.efficientat_dir.resolve()
        try:
            from bench_efficientat import load_reference

            _, reference = load_reference(efficientat_dir)
        except (SystemExit, Exception) as error:  # noqa: BLE001  no checkout: the row says so
            missing["EfficientAT's own code"] = str(error)
        else:

            def own_code(inputs):
                with torch.inference_mode(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    logits, _ = reference(inputs["input_values"].transpose(1, 2).unsqueeze(1))
                return logits.reshape(1, -1).numpy()

            candidates["EfficientAT's own code"] = own_code
    return candidates, missing


def compare(label: str, paths: list[Path], repeats: int, args, workdir: Path) -> list[dict]:
    model, feature_extractor, output = load_encoder(label)
    clips = featurised_clips(paths, feature_extractor)
    candidates, missing = candidates_for(label, model, feature_extractor, output, args, workdir)
    expected = [candidates["eager"](inputs) for inputs in clips]
    first_pass, differences = {}, {}
    for backend in list(candidates):
        start = time.perf_counter()
        try:
            outputs = [candidates[backend](inputs) for inputs in clips]
        except Exception as error:  # noqa: BLE001  torch.compile without a working toolchain, for one: record why, drop the row
            missing[backend] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            traceback.print_exc()
            del candidates[backend]
            continue
        first_pass[backend] = time.perf_counter() - start
        differences[backend] = max(float(np.abs(a - b).max()) for a, b in zip(expected, outputs))
    runs = {backend: (lambda function=function: [function(inputs) for inputs in clips]) for backend, function in candidates.items()}
    timings = time_interleaved(runs, repeats, warmup=1)
    rows = [
        {
            "encoder": label,
            "backend": backend,
            "output": output,
            "cpu_ms_per_clip": 1000 * median(timings.cpu[backend]) / len(clips),
            "wall_ms_per_clip": 1000 * median(timings.wall[backend]) / len(clips),
            "speedup": median_ratio(timings.cpu["eager"], timings.cpu[backend]),
            "wall_speedup": median_ratio(timings.wall["eager"], timings.wall[backend]),
            "first_pass_s": first_pass[backend],
            "max_abs_diff": differences[backend],
            "cpu_times": timings.cpu[backend],
            "times": timings.wall[backend],
        }
        for backend in candidates
    ]
    rows += [{"encoder": label, "backend": backend, "output": output, "note": why} for backend, why in missing.items()]
    return rows


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=5)
    add_sprsound_clip_arguments(parser, 32, "recordings spread over the corpus", ENCODERS)
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile")
    parser.add_argument(
        "--efficientat-dir",
        type=Path,
        default=Path(os.environ.get("EFFICIENTAT_DIR", "/work/data/ext/efficientat")),
        help="checkout with EfficientAT's src/models and resources/mn04_as_mAP_432.pt (env EFFICIENTAT_DIR)",
    )
    args = parser.parse_args()
    setup_threads(args.threads)
    count, repeats = (6, 2) if args.quick else (args.clips, args.repeats)
    load_at_start = load_average()
    root, paths = sprsound_paths(args.sprsound, count)
    labels = encoder_labels(args.encoders, ENCODERS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-backends-") as workdir:
        for label in labels:
            rows.extend(compare(label, paths, repeats, args, Path(workdir)))
    settings = {
        "sprsound": str(root),
        "clips": [path.name for path in paths],
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "efficientat_dir": str(args.efficientat_dir),
        "load_average_start": load_at_start,
        "load_average_end": load_average(),
    }
    columns = [
        "encoder", "backend", "output", "cpu_ms_per_clip", "speedup", "wall_speedup", "first_pass_s", "max_abs_diff",
        "note",
    ]
    title = f"Network (+ pooling or head) per SPRSound clip, {len(paths)} recordings one by one, {torch.get_num_threads()} thread(s)"
    finish(NAME, args, settings, rows, title, columns)


if __name__ == "__main__":
    main()
