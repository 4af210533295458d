#!/usr/bin/env python
"""
Convert an original PaSST, AST or M2D checkpoint into a Hugging Face folder that `AutoModel.from_pretrained` (or,
without this package, `trust_remote_code=True`) loads.

    python scripts/convert_checkpoint.py --family passt passt-s-f128-p16-s10-ap.476-swa.pt out/passt
    python scripts/convert_checkpoint.py --family ast ast-finetuned-audioset-10-10-0.4593/ out/ast
    python scripts/convert_checkpoint.py --family m2d m2d_vit_base-80x608p16x16-221006-mr7/checkpoint-300.pth out/m2d

The conversion itself lives in `resp_audio_hf.convert`; this is its command line.
"""

from __future__ import annotations

import argparse
import json
import sys

from resp_audio_hf.convert import FAMILIES, convert_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, choices=FAMILIES, help="which original model the checkpoint is")
    parser.add_argument("source", help="PaSST .pt state dict, AST folder or .pth, or M2D checkpoint-*.pth")
    parser.add_argument("output_dir", help="folder to write (must be new or empty unless --overwrite)")
    parser.add_argument(
        "--max-length",
        type=int,
        help="frames of one model window; crops (shorter) or linearly interpolates (longer) the time position "
        "embedding. Default: the checkpoint's own clip length.",
    )
    parser.add_argument(
        "--no-head", action="store_true", help="convert the encoder only, leaving out PaSST/AST's classifier"
    )
    parser.add_argument(
        "--pooling",
        choices=("freq_preserving", "mean", "cls"),
        help="pooling of an encoder-only model (a converted classifier always uses cls)",
    )
    parser.add_argument("--num-attention-heads", type=int, help="attention heads (default: hidden size / 64)")
    parser.add_argument("--labels", help="JSON file with the list of class names of the classifier's outputs")
    parser.add_argument("--norm-mean", type=float, help="AST only: log-mel mean the original .pth was trained with")
    parser.add_argument("--norm-std", type=float, help="AST only: log-mel std the original .pth was trained with")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = dict(max_length=args.max_length, num_attention_heads=args.num_attention_heads, pooling=args.pooling)
    if args.family in ("passt", "ast"):
        options["with_head"] = not args.no_head  # M2D checkpoints carry no classifier to take over
    if args.labels:
        if args.family == "m2d":
            raise SystemExit("error: --labels needs a classifier; M2D checkpoints are converted as encoders.")
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


if __name__ == "__main__":
    sys.exit(main())
