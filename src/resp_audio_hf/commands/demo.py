"""`resp-audio-hf demo`: label real coughs with the shipped AudioSet model and count the coughs of a recording
assembled from them, offline (`resp_audio_hf.benchmark.demo` does the work)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import ModelLoadError

EXAMPLES = """\
examples:
  resp-audio-hf demo
  resp-audio-hf demo --output-dir outputs/demo
"""


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


def run_demo(args: argparse.Namespace) -> int:
    from ..benchmark.demo import OUTPUT_FILES, DemoConfig, run_demo

    try:
        run_demo(args.output_dir, DemoConfig(model=args.model, data_root=args.data_root), progress=not args.quiet)
    except FileNotFoundError as error:
        raise ModelLoadError(error) from error
    print((args.output_dir / "results.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(args.output_dir / name) for name in OUTPUT_FILES))
    return 0
