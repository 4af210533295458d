"""``bench`` and ``demo`` subcommands of ``resp-audio-hf`` (handlers; ``bench``'s options are the fields of
:class:`~resp_audio_hf.benchmark.arguments.BenchmarkArguments`, the ``demo``'s are defined here).

Heavy imports (torch models, datasets, scikit-learn, matplotlib) happen inside the handlers, so
building the command-line parser stays cheap.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

from .arguments import BenchmarkArguments, default_cache_dir


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


BENCH_EXAMPLES = """\
examples:
  resp-audio-hf bench --model org/resp-passt --tasks T7,T10,T11 --data-root DIR
  resp-audio-hf bench --model org/resp-passt --tasks opera --data-root DIR --compare-opera
  resp-audio-hf bench --model my-resp-passt --tasks S1,S2 --data-root ../shared/data
  resp-audio-hf bench --preset tiny-m2d --tasks S1 --data-root ../shared/data --max-duration 2 --epochs 8
"""

DEMO_EXAMPLES = """\
examples:
  resp-audio-hf demo
  resp-audio-hf demo --output-dir outputs/demo
"""


def run_bench(args: BenchmarkArguments) -> int:
    from ..data.tasks import resolve_task_ids
    from ..extraction.encoder import load_encoder
    from .report import write_reports
    from .runner import run_benchmark

    try:
        resolve_task_ids(args.tasks)
    except (KeyError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    if not args.data_root.is_dir():
        print(f"error: --data-root {args.data_root} is not a directory", file=sys.stderr)
        return 2
    try:
        if args.baseline:
            if args.pooling:
                raise ValueError(f"--pooling does not apply to the non-learned baseline {args.baseline}")
            from .nonlearned import nonlearned_encoder

            encoder = nonlearned_encoder(args.baseline, device=args.device)
        else:
            encoder = load_encoder(
                args.model,
                preset=args.preset,
                device=args.device,
                revision=args.revision,
                trust_remote_code=args.trust_remote_code,
                pooling=args.pooling,
            )
    except (OSError, ValueError, KeyError) as error:
        print(f"error: could not load the model: {error}", file=sys.stderr)
        return 2
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
    explicit = args.tasks.strip().lower() not in {"all", "opera"}
    if result.failed:
        return 1
    if not result.tasks:
        print("error: no task could be scored (see the reasons above)", file=sys.stderr)
        return 1
    if explicit and result.unavailable:
        return 2
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-dir", type=Path, default=Path("outputs") / "demo", help="where results.json/.md/.png and cough_timeline.wav/.csv/.png go"
    )
    parser.add_argument(
        "--model",
        help="folder of the EfficientAT AudioSet tagger (default: the one shipped in the package, pretrained/efficientat-mn04-as)",
    )
    parser.add_argument(
        "--data-root",
        help="folder holding covid19-cough/ (metadata.json, raw/) instead of the 96 coughs bundled with the package",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_demo_command(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo

    try:
        run_demo(args.output_dir, DemoConfig(model=args.model, data_root=args.data_root), progress=not args.quiet)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((args.output_dir / "results.md").read_text(encoding="utf-8"))
    from .demo import OUTPUT_FILES

    print("wrote " + ", ".join(str(args.output_dir / name) for name in OUTPUT_FILES))
    return 0
