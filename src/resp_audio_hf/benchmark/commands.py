"""``bench`` and ``demo`` subcommands of ``resp-audio-hf`` (argument definitions and handlers).

Heavy imports (torch models, datasets, scikit-learn, matplotlib) happen inside the handlers, so
building the command-line parser stays cheap.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..data._io import cache_root


def _default_cache_dir() -> Path:
    return cache_root() / "embeddings"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


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


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", help="local folder or Hub id of a transformers audio model (resp_audio or any AutoModel)"
    )
    source.add_argument(
        "--preset", help="randomly initialised RespAudioConfig preset instead of a checkpoint (smoke tests)"
    )
    source.add_argument(
        "--baseline",
        choices=("log-mel-stats", "duration"),
        help="a non-learned baseline instead of a model: per-band log-mel statistics, or the clip duration alone",
    )
    parser.add_argument(
        "--tasks",
        default="all",
        help="comma-separated task ids (T1-T19, T8-random, T9-random, T10-subject, ICBHI-cycle, S1, S2, "
        "COVID-cough), 'opera' (T1-T19) or 'all' (default: every one of them except the variants)",
    )
    parser.add_argument(
        "--data-root",
        required=True,
        type=Path,
        help="folder holding the corpus folders (icbhi/, KAUH/, copd/, sprsound/, ...)",
    )
    parser.add_argument(
        "--opera-dir",
        type=Path,
        help="local copy of the OPERA repository's split files (default: <data-root>/opera, then the cache, then download)",
    )
    parser.add_argument(
        "--output-dir", type=Path, help="where results.json/.md/.png go (default: outputs/bench/<model>)"
    )
    parser.add_argument("--cache-dir", type=Path, help=f"embedding cache (default: {_default_cache_dir()})")
    parser.add_argument("--batch-size", type=_positive_int, default=16)
    parser.add_argument(
        "--num-workers", type=int, default=0, help="DataLoader worker processes for decoding/featurising"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--pooling",
        help="replace the model's config.pooling: freq_preserving, mean or cls for resp_audio, freq_preserving or "
        "mean for efficientat (the pooling ablation; recorded in the results, and part of the embedding cache key)",
    )
    parser.add_argument(
        "--max-duration",
        type=_positive_float,
        help="keep only the first N seconds of each clip (off by default; recorded in the results)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        help="override the probe epochs of every task (quick checks; the OPERA protocol uses 64, KAUH 50)",
    )
    parser.add_argument("--seeds", type=_seeds, help="override the probe seeds, e.g. 0,1,2 (OPERA: 0,1,2,3,4)")
    parser.add_argument(
        "--standardize-features",
        action="store_true",
        help="z-score the embeddings with each probe's training rows' mean and std before the probe (OPERA's probe "
        "does not; recorded in the results)",
    )
    parser.add_argument(
        "--compare-opera",
        action="store_true",
        help="show OPERA's published baselines and the mean reciprocal rank beside our scores",
    )
    parser.add_argument(
        "--no-verify-audio", action="store_true", help="skip the decode check of every file before extraction"
    )
    parser.add_argument("--revision", help="model revision on the Hub")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_bench(args: argparse.Namespace) -> int:
    from ..data.tasks import resolve_task_ids
    from .embeddings import AudioEncoder
    from .report import write_reports
    from .runner import run_benchmark

    try:
        task_ids = resolve_task_ids(args.tasks)
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
        elif args.preset:
            overrides = {"pooling": args.pooling} if args.pooling else {}
            encoder = AudioEncoder.from_preset(args.preset, device=args.device, **overrides)
        else:
            encoder = AudioEncoder.from_pretrained(
                args.model,
                device=args.device,
                revision=args.revision,
                trust_remote_code=args.trust_remote_code,
                pooling=args.pooling,
            )
    except (OSError, ValueError, KeyError) as error:
        print(f"error: could not load the model: {error}", file=sys.stderr)
        return 2
    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.standardize_features:
        overrides["standardize_features"] = True
    # An ablation run gets its own default folder instead of overwriting the model's own results.
    run_name = (args.model or (f"baseline-{args.baseline}" if args.baseline else f"preset-{args.preset}")) + (f"-pooling-{args.pooling}" if args.pooling else "")
    output_dir = args.output_dir or Path("outputs") / "bench" / _slug(run_name)
    result = run_benchmark(
        encoder,
        task_ids,
        args.data_root,
        opera_dir=args.opera_dir,
        cache_dir=args.cache_dir or _default_cache_dir(),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        max_duration=args.max_duration,
        protocol_overrides=overrides or None,
        verify_audio=not args.no_verify_audio,
        progress=not args.quiet,
    )
    paths = write_reports(result.to_dict(), output_dir, baselines=args.compare_opera)
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
        "--output-dir", type=Path, default=Path("outputs") / "demo", help="where results.json/.md/.png go"
    )
    parser.add_argument(
        "--model",
        help="folder of the EfficientAT AudioSet tagger (default: the repository's pretrained/efficientat-mn04-as)",
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
    print(
        f"wrote {args.output_dir / 'results.json'}, {args.output_dir / 'results.md'}, {args.output_dir / 'results.png'}"
    )
    return 0
