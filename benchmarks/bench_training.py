"""Training throughput (clips/s) and peak memory of M2D pre-training, tiny and base sizes.

Two measurements per size, each in a fresh process so one configuration's memory never inflates another's:

- `step`: the optimisation step alone (online encoder on the visible 30%, EMA target on the masked 70%, predictor,
  backward, AdamW, EMA update) on log-mel batches already in memory: what the model costs.
- `train`: `training/pretrain.py`'s loop end to end on real SPRSound and cough recordings (decoding, resampling,
  random crops, log-mel, the step, logging): what a run sees. Its clips/s comes from the run's own metrics log.

    python benchmarks/bench_training.py            # tiny and base, CPU or the GPU if there is one
    python benchmarks/bench_training.py --quick    # fewer steps
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import SHARED_DATA, PeakMemory, finish, make_parser, run_in_subprocess, setup_threads

# M2D's published sizes: ViT-Base encoder with a 512-wide, 8-layer predictor; the tiny test model with a 1-layer one.
SIZES = {
    "tiny": {
        "preset": "tiny-m2d",
        "objective": {"predictor_hidden_size": 32, "predictor_num_layers": 1, "predictor_num_heads": 2},
        "batch_size": 8,
    },
    "base": {"preset": "resp-m2d", "objective": {}, "batch_size": 4},
}


def measure_step(
    size: str, batch_size: int, steps: int, warmup: int, mixed_precision: str, threads: int | None
) -> dict:
    import contextlib

    import torch

    from resp_audio_hf import RespAudioConfig, RespAudioModel
    from resp_audio_hf.training.config import OptimizerConfig
    from resp_audio_hf.training.m2d_objective import M2DObjective, M2DObjectiveConfig, ema_decay_at
    from resp_audio_hf.training.pretrain import build_optimizer

    setup_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec = SIZES[size]
    torch.manual_seed(0)
    objective = M2DObjective(
        RespAudioModel(RespAudioConfig.from_preset(spec["preset"])), M2DObjectiveConfig(**spec["objective"])
    )
    objective.to(device).train()
    optimizer = build_optimizer(objective, OptimizerConfig(lr=1e-4))
    config = objective.encoder_model.config
    inputs = torch.randn(batch_size, config.window_frames, config.num_mel_bins, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    generator = torch.Generator().manual_seed(0)

    def step(index: int) -> float:
        start = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = objective(inputs, generator=generator).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 3.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        objective.update_target(ema_decay_at(index, warmup + steps, objective.config))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for index in range(warmup):
        step(index)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory() as memory:
        seconds = [step(warmup + index) for index in range(steps)]
    return {
        "size": size,
        "mode": "step",
        "device": device.type,
        "precision": mixed_precision,
        "batch": batch_size,
        "frames": config.window_frames,
        "parameters_m": sum(p.numel() for p in objective.encoder_model.parameters()) / 1e6,
        "clips_per_s": batch_size / statistics.median(seconds),
        "s_per_step": statistics.median(seconds),
        "peak_rss_mb": memory.peak_mb,
        "rss_increase_mb": memory.increase_mb,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def measure_train(
    size: str, batch_size: int, steps: int, warmup: int, mixed_precision: str, threads: int | None, num_workers: int
) -> dict:
    import torch
    from _common import children_peak_rss_mb, peak_rss_mb

    from resp_audio_hf import RespAudioConfig
    from resp_audio_hf.training.config import PretrainConfig, build_dataclass
    from resp_audio_hf.training.pretrain import METRICS_NAME, train

    setup_threads(threads)
    spec = SIZES[size]
    with tempfile.TemporaryDirectory() as output_dir:
        config = build_dataclass(
            PretrainConfig,
            {
                "model": {"preset": spec["preset"]},
                "objective": spec["objective"],
                "data": {
                    "batch_size": batch_size,
                    "num_workers": num_workers,
                    "corpora": [
                        {"name": "sprsound", "path": str(SHARED_DATA / "sprsound" / "test_wav")},
                        {"name": "cough", "path": str(SHARED_DATA / "covid19-cough" / "raw")},
                    ],
                },
                "optimizer": {"lr": 1e-4, "warmup_steps": 1},
                "train": {
                    "output_dir": output_dir,
                    "max_steps": warmup + steps,
                    "save_every_steps": 10**9,  # only the final checkpoint
                    "log_every_steps": 1,
                    "mixed_precision": mixed_precision,
                },
            },
        )
        train(config)
        records = [json.loads(line) for line in (Path(output_dir) / METRICS_NAME).read_text().splitlines()]
    timed = [r["clips_per_second"] for r in records[warmup:]]
    return {
        "size": size,
        "mode": f"train ({num_workers} workers)",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": mixed_precision,
        "batch": batch_size,
        "frames": RespAudioConfig.from_preset(spec["preset"]).window_frames,
        "clips_per_s": statistics.median(timed),
        "s_per_step": batch_size / statistics.median(timed),
        "peak_rss_mb": peak_rss_mb(),
        "workers_peak_rss_mb": children_peak_rss_mb() if num_workers else None,
        "peak_gpu_mb": records[-1].get("peak_gpu_mb"),
        "final_loss": records[-1]["loss"],
    }


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0], repeats=5)
    parser.add_argument("--sizes", default="tiny,base", help="comma-separated subset of tiny,base")
    parser.add_argument("--precision", default="no", choices=("no", "bf16", "fp16"), help="mixed precision")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the train measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"Real recordings not found at {SHARED_DATA}; the train measurement needs them.")
    steps = 2 if args.quick else args.repeats
    # The same for every size; each size brings its own batch size.
    fixed = dict(steps=steps, warmup=args.warmup, mixed_precision=args.precision, threads=args.threads)
    rows = []
    for size in args.sizes.split(","):
        common = dict(size=size, batch_size=SIZES[size]["batch_size"], **fixed)
        rows.append(run_in_subprocess(measure_step, **common))
        rows.append(run_in_subprocess(measure_train, num_workers=args.num_workers, **common))
        for row in rows[-2:]:
            print(json.dumps(row))
    settings = {
        "steps": steps,
        "warmup": args.warmup,
        "precision": args.precision,
        "num_workers": args.num_workers,
        "sizes": SIZES,
    }
    columns = [
        "size",
        "mode",
        "device",
        "precision",
        "batch",
        "clips_per_s",
        "s_per_step",
        "peak_rss_mb",
        "rss_increase_mb",
        "peak_gpu_mb",
    ]
    finish("bench_training", args, settings, rows, "M2D pre-training throughput and peak memory", columns)


if __name__ == "__main__":
    main()
