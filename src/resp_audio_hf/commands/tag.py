"""`resp-audio-hf tag RECORDING`: a timeline of AudioSet labels, a cough count, a CSV of segments and a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import CommandFailed, ModelLoadError, UsageError

EXAMPLES = """\
examples:
  resp-audio-hf tag night.wav
  resp-audio-hf tag night.flac --threshold 0.5 --labels Cough,Sneeze,Speech --output-dir tags/
  resp-audio-hf tag clinic.wav --window-seconds 2 --hop-seconds 0.5 --model my-audioset-tagger
"""


def add_tag_arguments(parser: argparse.ArgumentParser) -> None:
    from ..tagging import TagConfig

    defaults = TagConfig()
    parser.add_argument("recording", type=Path, help="audio file of any length (WAV/FLAC stream in bounded memory)")
    parser.add_argument("--model", help="multi-label audio-classification model folder "
                        "(default: the package's pretrained/efficientat-mn04-as, AudioSet's 527 labels)")
    parser.add_argument("--window-seconds", type=float, default=defaults.window_seconds,
                        help=f"seconds each window the model scores alone (default: {defaults.window_seconds})")
    parser.add_argument("--hop-seconds", type=float, default=defaults.hop_seconds,
                        help=f"seconds between window starts (default: {defaults.hop_seconds})")
    parser.add_argument("--threshold", type=float, default=defaults.threshold,
                        help=f"probability a label other than Cough needs in a window (default: {defaults.threshold})")
    parser.add_argument("--cough-threshold", type=float, default=defaults.cough_threshold,
                        help=f"probability Cough needs in a window (default: {defaults.cough_threshold}, chosen for "
                        "counting coughs; see results/README.md)")
    parser.add_argument("--merge-gap-seconds", type=float, default=defaults.merge_gap_seconds,
                        help="segments of one label at most this far apart are merged "
                        f"(default: {defaults.merge_gap_seconds})")
    parser.add_argument("--labels", help="comma-separated labels to report (default: all labels reaching the threshold)")
    parser.add_argument("--output-dir", type=Path, default=Path("."),
                        help="where <recording>.segments.csv and <recording>.timeline.png go (default: .)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="windows per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def run_tag(args: argparse.Namespace) -> int:
    from ..data.audio import AudioDecodeError
    from ..tagging import AudioTagger, TagConfig, draw_timeline, tag_recording, timeline_text, write_segments_csv

    if not args.recording.is_file():
        raise UsageError(f"{args.recording} is not a file")
    try:
        config = TagConfig(window_seconds=args.window_seconds, hop_seconds=args.hop_seconds,
                           threshold=args.threshold, cough_threshold=args.cough_threshold,
                           merge_gap_seconds=args.merge_gap_seconds, batch_size=args.batch_size)
        labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    except ValueError as error:
        raise CommandFailed(error) from error
    try:
        tagger = AudioTagger(args.model, device=args.device)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(error) from error
    try:
        result = tag_recording(tagger, str(args.recording), config, labels=labels)
    except (AudioDecodeError, ValueError) as error:
        raise CommandFailed(error) from error
    args.output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = write_segments_csv(result, args.output_dir / f"{args.recording.stem}.segments.csv")
    png_path = draw_timeline(result, args.output_dir / f"{args.recording.stem}.timeline.png")
    print(timeline_text(result), end="")
    print(f"wrote {csv_path} and {png_path}")
    return 0
