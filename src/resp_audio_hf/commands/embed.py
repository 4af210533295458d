"""`resp-audio-hf embed`: recordings -> one embedding per recording, in Parquet or `.npy` + index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CommandFailed, ModelLoadError, UsageError

EXAMPLES = """\
examples:
  resp-audio-hf embed recordings/ --model org/resp-passt -o embeddings.parquet
  resp-audio-hf embed "data/**/*.wav" files.csv --model my-resp-m2d --pooling mean -o emb.npy
  resp-audio-hf embed --dataset my_dataset_dir --split test --model my-resp-ast -o test.parquet
  resp-audio-hf embed recordings/ --model mn04-onnx --backend onnxruntime -o embeddings.parquet
  resp-audio-hf embed night.wav --model org/resp-passt --window-seconds 2 --hop-seconds 1 -o windows.parquet
"""


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    from ..embed import FORMATS
    from ..pooling import POOLINGS

    parser.add_argument(
        "inputs", nargs="*",
        help="audio folders (searched recursively), glob patterns, CSV/JSON lists of files, or files",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local folder or Hub id of a transformers audio model")
    source.add_argument("--preset", help="randomly initialised RespAudioConfig preset (smoke tests)")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="output file: .parquet (path, embedding) or .npy (with <name>.index.csv)")
    parser.add_argument("--format", choices=FORMATS, help="output format (default: from the output suffix)")
    parser.add_argument("--pooling", choices=POOLINGS,
                        help="pooling of a resp_audio model (default: the model's own, usually freq_preserving)")
    parser.add_argument("--dataset", help="a datasets dataset (save_to_disk folder or load_dataset name) instead of files")
    parser.add_argument("--split", help="split of --dataset (needed when it has several)")
    parser.add_argument("--audio-column", default="audio", help="audio column of --dataset (default: audio)")
    parser.add_argument("--path-column", help="column of a CSV/JSON list naming the files (default: path)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a Hub model's own code")
    parser.add_argument("--max-duration", type=float, help="embed only the first seconds of each file")
    parser.add_argument("--window-seconds", type=float,
                        help="one row per window of this many seconds (with window, start_s, end_s), not per file")
    parser.add_argument("--hop-seconds", type=float,
                        help="seconds between window starts (default: --window-seconds, no overlap)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default: 8)")
    parser.add_argument("--num-workers", type=int, default=0, help="decoding worker processes (default: 0)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch",
        help="onnxruntime: --model is a folder from `resp-audio-hf export --format onnx`; the features are computed "
        "in torch, the network runs in ONNX Runtime on the CPU (default: torch)",
    )
    parser.add_argument("--cache-dir", type=Path,
                        help="resumable embedding cache (default: <output>.cache next to the output)")
    parser.add_argument("--no-cache", action="store_true", help="do not cache (an interrupted run starts over)")
    parser.add_argument("--quiet", "--no-progress", action="store_true", dest="quiet",
                        help="no progress bar (--no-progress: its former name)")


def run_embed(args: argparse.Namespace) -> int:
    from ..distributed import process_device
    from ..embed import EmbedInputError, dataset_input, embed_inputs, files_input
    from ..extraction.encoder import load_encoder

    if bool(args.inputs) == bool(args.dataset):
        raise UsageError("give audio inputs (folders, patterns, lists, files) or --dataset, not both or neither")
    try:
        if args.dataset:
            inputs = dataset_input(args.dataset, split=args.split, audio_column=args.audio_column)
        else:
            inputs = files_input(args.inputs, path_column=args.path_column)
    except (EmbedInputError, ValueError, OSError) as error:
        raise CommandFailed(error) from error
    try:
        encoder = load_encoder(
            args.model, preset=args.preset, pooling=args.pooling, revision=args.revision,
            trust_remote_code=args.trust_remote_code, device=process_device(args.device), backend=args.backend,
        )
    except (ValueError, OSError, KeyError) as error:
        raise ModelLoadError(error) from error
    try:
        cache_dir = None if args.no_cache else (args.cache_dir or args.output.with_name(args.output.name + ".cache"))
        result = embed_inputs(
            inputs, encoder, args.output, output_format=args.format, cache_dir=cache_dir, batch_size=args.batch_size,
            num_workers=args.num_workers, max_duration=args.max_duration, progress=not args.quiet,
            window_seconds=args.window_seconds, hop_seconds=args.hop_seconds,
        )
    except (EmbedInputError, ValueError, OSError) as error:
        raise CommandFailed(error) from error
    for skipped in result.skipped:
        print(f"skipped {skipped.path}: {skipped.reason}", file=sys.stderr)
    where = f"{result.output}" + (f" (index {result.index})" if result.index else "")
    what = "windows" if args.window_seconds else "recordings"
    print(f"Embedded {result.n_embedded} {what} ({result.dim} features each) into {where}")
    if cache_dir is not None:
        print(f"Embedding cache: {cache_dir} (-v tells what was read from it; --no-cache turns it off)")
    if result.skipped_file:
        print(f"{len(result.skipped)} files skipped; listed with reasons in {result.skipped_file}")
    return 0
