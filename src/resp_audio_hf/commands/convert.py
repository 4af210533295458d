"""`resp-audio-hf convert`: an original PaSST, AST, M2D or EfficientAT checkpoint -> a Hugging Face folder that
`AutoModel.from_pretrained` (or, without this package, `trust_remote_code=True`) loads. The conversion itself lives in
`resp_audio_hf.convert`; this is its command line (also `scripts/convert_checkpoint.py`)."""

from __future__ import annotations

import argparse
import inspect
import json
import sys

from .errors import ModelLoadError, UsageError, run_command

EXAMPLES = """\
examples:
  resp-audio-hf convert --family passt passt-s-f128-p16-s10-ap.476-swa.pt out/passt
  resp-audio-hf convert --family ast ast-finetuned-audioset-10-10-0.4593/ out/ast
  resp-audio-hf convert --family m2d m2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth out/m2d
  resp-audio-hf convert --family efficientat mn04_as_mAP_432.pt out/efficientat-mn04-as --labels class_labels_indices.csv
"""


# Keywords that only some families' converters take. Each is set by the command-line option of the same name, but
# `id2label`, which `--labels` (a file of class names) sets.
CONVERTER_OPTIONS = (
    "window_frames", "num_attention_heads", "pooling", "width_multiplier", "id2label", "norm_mean", "norm_std"
)
OPTION_OF_KEYWORD = {"id2label": "labels"}


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    from ..configuration_resp_audio import MODEL_FAMILIES
    from ..pooling import POOLINGS

    parser.add_argument(
        "--family", required=True, choices=tuple(MODEL_FAMILIES), help="which original model the checkpoint is"
    )
    parser.add_argument(
        "source", help="PaSST .pt state dict, AST folder or .pth, M2D checkpoint-*.pth, or EfficientAT mn*.pt"
    )
    parser.add_argument("output_dir", help="folder to write (must be new or empty unless --overwrite)")
    parser.add_argument(
        "--window-frames",
        "--max-length",  # its former name
        type=int,
        help="ViTs only: frames of one model window; crops (shorter) or linearly interpolates (longer) the time "
        "position embedding. Default: the checkpoint's own clip length.",
    )
    parser.add_argument(
        "--no-head",
        action="store_true",
        help="convert the encoder only, leaving out PaSST's, AST's or EfficientAT's classifier",
    )
    parser.add_argument(
        "--pooling",
        choices=POOLINGS,
        help="pooling of an encoder-only ViT (a converted ViT classifier always uses cls); for EfficientAT the "
        "pooler_output of the model (freq_preserving or mean, EfficientAT's own embedding; its head reads the mean)",
    )
    parser.add_argument(
        "--width-multiplier", type=float, help="EfficientAT only: the MobileNet's width (default: inferred, 0.4 = mn04)"
    )
    parser.add_argument("--num-attention-heads", type=int, help="ViTs only: attention heads (default: hidden size / 64)")
    parser.add_argument(
        "--labels",
        help="class names of the classifier's outputs: a JSON list, or AudioSet's class_labels_indices.csv",
    )
    parser.add_argument("--norm-mean", type=float, help="AST only: log-mel mean the original .pth was trained with")
    parser.add_argument("--norm-std", type=float, help="AST only: log-mel std the original .pth was trained with")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def _read_labels(path: str) -> dict[int, str]:
    from ..convert import read_audioset_labels

    if path.endswith(".csv"):
        return read_audioset_labels(path)
    with open(path, encoding="utf-8") as handle:
        return dict(enumerate(json.load(handle)))


def run_convert(args: argparse.Namespace) -> int:
    from ..convert import CONVERTERS, convert_checkpoint

    # An option reaches the converter only if the family's converter takes it (M2D's carry no classifier, so no
    # --labels; only EfficientAT has a width; ...); given to another family, it is an error rather than ignored.
    accepted = inspect.signature(CONVERTERS[args.family]).parameters
    given = {keyword: getattr(args, OPTION_OF_KEYWORD.get(keyword, keyword)) for keyword in CONVERTER_OPTIONS}
    refused = [f"--{OPTION_OF_KEYWORD.get(name, name).replace('_', '-')}" for name, value in given.items()
               if value is not None and name not in accepted]
    if refused:
        raise UsageError(f"{', '.join(refused)} do not apply to --family {args.family} checkpoints.")
    options = {name: value for name, value in given.items() if value is not None}
    if "id2label" in options:
        try:
            options["id2label"] = _read_labels(options["id2label"])
        except (OSError, ValueError) as error:
            raise UsageError(f"--labels {options['id2label']}: {error}") from error
    if "with_head" in accepted:
        options["with_head"] = not args.no_head
    try:
        converted = convert_checkpoint(args.family, args.source, args.output_dir, overwrite=args.overwrite, **options)
    except (ValueError, OSError) as error:
        raise ModelLoadError(error) from error
    model = converted.model
    print(f"Wrote {type(model).__name__} ({model.num_parameters():,} parameters) to {args.output_dir}")
    for note in converted.notes:
        print(f"  note: {note}")
    if converted.unused_keys:
        shown = ", ".join(converted.unused_keys[:8]) + (" ..." if len(converted.unused_keys) > 8 else "")
        print(f"  left out {len(converted.unused_keys)} keys not used by the encoder: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command as a standalone program (`scripts/convert_checkpoint.py`)."""
    parser = argparse.ArgumentParser(
        prog="convert_checkpoint.py", description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_convert_arguments(parser)
    return run_command(run_convert, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
