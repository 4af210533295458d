"""`resp-audio-hf bench`: score a model on the OPERA benchmark (and SPRSound) with linear probes. Its options are the
fields of [`~resp_audio_hf.benchmark.arguments.BenchmarkArguments`].

Heavy imports (torch models, datasets, scikit-learn, matplotlib) happen inside the handler, so building the
command-line parser stays cheap.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ..benchmark.arguments import BenchmarkArguments, default_cache_dir
from .errors import CommandFailed, ModelLoadError, UsageError

EXAMPLES = """\
examples:
  resp-audio-hf bench --model org/resp-passt --tasks T7,T10,T11 --data-root DIR
  resp-audio-hf bench --model org/resp-passt --tasks opera --data-root DIR --compare-opera
  resp-audio-hf bench --model my-resp-passt --tasks S1,S2 --data-root ../shared/data
  resp-audio-hf bench --preset tiny-m2d --tasks S1 --data-root ../shared/data --max-duration 2 --epochs 8
"""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _load_encoder(args: BenchmarkArguments):
    """The encoder `bench` scores: a non-learned baseline, a random-weight preset or a model folder / Hub id."""
    from ..extraction.encoder import load_encoder

    try:
        if args.baseline:
            if args.pooling:
                raise ValueError(f"--pooling does not apply to the non-learned baseline {args.baseline}")
            from ..benchmark.nonlearned import nonlearned_encoder

            return nonlearned_encoder(args.baseline, device=args.device)
        return load_encoder(
            args.model,
            preset=args.preset,
            device=args.device,
            revision=args.revision,
            trust_remote_code=args.trust_remote_code,
            pooling=args.pooling,
        )
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(error) from error


def run_bench(args: BenchmarkArguments) -> int:
    from ..benchmark.report import write_reports
    from ..benchmark.runner import run_benchmark
    from ..data.tasks import resolve_task_ids

    try:
        resolve_task_ids(args.tasks)
    except (KeyError, ValueError) as error:
        raise UsageError(error.args[0] if error.args else error) from error
    if not args.data_root.is_dir():
        raise UsageError(f"--data-root {args.data_root} is not a directory")
    encoder = _load_encoder(args)
    # The defaults are filled in here, so results.json records the folders actually used.
    args = replace(
        args,
        cache_dir=args.cache_dir or default_cache_dir(),
        output_dir=args.output_dir or Path("outputs") / "bench" / _slug(args.run_name),
    )
    result = run_benchmark(encoder, args)
    paths = write_reports(result, args.output_dir, baselines=args.compare_opera)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if result.failed:
        raise CommandFailed(f"tasks failed: {', '.join(sorted(result.failed))} (see the reasons above)")
    if not result.tasks:
        raise CommandFailed("no task could be scored (see the reasons above)")
    if args.tasks.strip().lower() not in {"all", "opera"} and result.unavailable:
        raise UsageError(
            f"tasks asked for by name have no data here: {', '.join(sorted(result.unavailable))} (see the reasons above)"
        )
    return 0
