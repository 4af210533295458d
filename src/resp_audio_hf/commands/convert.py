"""`resp-audio-hf convert`: an original PaSST, AST, M2D or EfficientAT checkpoint -> a Hugging Face folder that
`AutoModel.from_pretrained` (or, without this package, `trust_remote_code=True`) loads. The conversion itself lives in
`resp_audio_hf.convert`; this is its command line (also `scripts/convert_checkpoint.py`)."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """\
examples:
  resp-audio-hf convert --family passt passt-s-f128-p16-s10-ap.476-swa.pt out/passt
  resp-audio-hf convert --family ast ast-finetuned-audioset-10-10-0.4593/ out/ast
  resp-audio-hf convert --family m2d m2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth out/m2d
  resp-audio-hf convert --family efficientat mn04_as_mAP_432.pt out/efficientat-mn04-as --labels class_labels_indices.csv
"""


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    from ..configuration_resp_audio import POOLING_TYPES
    from ..convert import FAMILIES

    parser.add_argument("--family", required=True, choices=FAMILIES, help="which original model the checkpoint is")
    parser.add_argument(
        "source", help="PaSST .pt state dict, AST folder or .pth, M2D checkpoint-*.pth, or EfficientAT mn*.pt"
    )
    parser.add_argument("output_dir", help="folder to write (must be new or empty unless --overwrite)")
    parser.add_argument(
        "--max-length",
        type=int,
        help="frames of one model window; crops (shorter) or linearly interpolates (longer) the time position "
        "embedding. Default: the checkpoint's own clip length.",
    )
    parser.add_argument(
        "--no-head",
        action="store_true",
        help="convert the encoder only, leaving out PaSST's, AST's or EfficientAT's classifier",
    )
    parser.add_argument(
        "--pooling",
        choices=POOLING_TYPES,
        help="pooling of an encoder-only ViT (a converted ViT classifier always uses cls); for EfficientAT the "
        "pooler_output of the model (freq_preserving or mean, EfficientAT's own embedding; its head reads the mean)",
    )
    parser.add_argument(
        "--width-multiplier", type=float, help="EfficientAT only: the MobileNet's width (default: inferred, 0.4 = mn04)"
    )
    parser.add_argument("--num-attention-heads", type=int, help="attention heads (default: hidden size / 64)")
    parser.add_argument(
        "--labels",
        help="class names of the classifier's outputs: a JSON list, or AudioSet's class_labels_indices.csv",
    )
    parser.add_argument("--norm-mean", type=float, help="AST only: log-mel mean the original .pth was trained with")
    parser.add_argument("--norm-std", type=float, help="AST only: log-mel std the original .pth was trained with")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run_convert(args: argparse.Namespace) -> int:
    from ..convert import convert_checkpoint, read_audioset_labels

    if args.family == "efficientat":
        if args.max_length is not None or args.num_attention_heads is not None:
            raise SystemExit("error: --max-length and --num-attention-heads apply to the ViT families, not EfficientAT.")
        if args.pooling == "cls":
            raise SystemExit("error: EfficientAT has no CLS token; choose --pooling freq_preserving or mean.")
        options = dict(pooling=args.pooling, width_multiplier=args.width_multiplier)
    else:
        if args.width_multiplier is not None:
            raise SystemExit("error: --width-multiplier applies to EfficientAT only.")
        options = dict(max_length=args.max_length, num_attention_heads=args.num_attention_heads, pooling=args.pooling)
    if args.family in ("passt", "ast", "efficientat"):
        options["with_head"] = not args.no_head  # M2D checkpoints carry no classifier to take over
    if args.labels:
        if args.family == "m2d":
            raise SystemExit("error: --labels needs a classifier; M2D checkpoints are converted as encoders.")
        if args.labels.endswith(".csv"):
            options["id2label"] = read_audioset_labels(args.labels)
        else:
            with open(args.labels, encoding="utf-8") as handle:
                options["id2label"] = dict(enumerate(json.load(handle)))
    if args.norm_mean is not None or args.norm_std is not None:
        if args.family != "ast":
            raise SystemExit("error: --norm-mean/--norm-std apply to original AST checkpoints only.")
        options.update(norm_mean=args.norm_mean, norm_std=args.norm_std)
    try:
        converted = convert_checkpoint(args.family, args.source, args.output_dir, overwrite=args.overwrite, **options)
    except (ValueError, OSError) as error:
        raise SystemExit(f"error: {error}") from None
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
    return run_convert(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
