"""`resp-audio-hf export`: a model folder, Hub id or preset -> an exported folder (ONNX: `model.onnx`, `config.json`,
`preprocessor_config.json`) that ONNX Runtime runs without torch. The export lives in `resp_audio_hf.export.onnx`."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import CommandFailed, MissingExtraError, ModelLoadError

EXAMPLES = """\
examples:
  resp-audio-hf export --format onnx --model pretrained/efficientat-mn04-as mn04-onnx
  resp-audio-hf export --format onnx --model my-resp-m2d --pooling mean m2d-onnx --check recordings/*.wav
  resp-audio-hf embed recordings/ --model mn04-onnx --backend onnxruntime -o embeddings.parquet
"""


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    from ..export.onnx import EXPORT_FORMATS
    from ..pooling import POOLINGS

    parser.add_argument("output_dir", type=Path, help="folder to write (must be new or empty unless --overwrite)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="export format (default: onnx)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="local folder or Hub id of a resp_audio or efficientat model")
    source.add_argument("--preset", help="randomly initialised RespAudioConfig preset (smoke tests)")
    parser.add_argument("--pooling", choices=POOLINGS,
                        help="pooling inside the graph (default: the model's own); efficientat: freq_preserving or mean")
    parser.add_argument("--no-head", action="store_true", help="export a classifier's encoder only (no logits)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: torch's exporter's)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow a Hub model's own code")
    parser.add_argument("--check", nargs="+", metavar="AUDIO",
                        help="audio files to run through the eager model and the export, printing max |difference|")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run_export(args: argparse.Namespace) -> int:
    try:
        from ..export.onnx import ONNX_TOLERANCE, export_onnx, load_model_for_export, max_differences
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise MissingExtraError(f"ONNX export needs the onnx extra (pip install 'resp_audio_hf[onnx]'): {error}") from error
    try:
        model, feature_extractor = load_model_for_export(
            args.model, preset=args.preset, pooling=args.pooling, with_head=not args.no_head,
            revision=args.revision, trust_remote_code=args.trust_remote_code,
        )
    except (ValueError, OSError, KeyError) as error:
        raise ModelLoadError(error) from error
    try:
        exported = export_onnx(model, feature_extractor, args.output_dir, opset_version=args.opset,
                               overwrite=args.overwrite)
    except (ValueError, OSError) as error:
        raise CommandFailed(error) from error
    print(f"Wrote {exported.folder} ({exported.model_type}: inputs {', '.join(exported.input_names)}; outputs "
          f"{', '.join(exported.output_names)})")
    if not args.check:
        return 0
    from ..data.audio import AudioDecodeError, load_audio

    rate = feature_extractor.sampling_rate
    worst = 0.0
    for path in args.check:
        try:
            audio, _ = load_audio(path, rate)
        except AudioDecodeError as error:
            raise CommandFailed(error) from error
        differences = max_differences(model, feature_extractor, exported.folder, [audio], rate)
        worst = max([worst, *differences.values()])
        shown = ", ".join(f"{name} {value:.2e}" for name, value in differences.items())
        print(f"  {path} ({audio.size / rate:.2f} s): max |eager - onnxruntime| {shown}")
    if worst > ONNX_TOLERANCE:
        raise CommandFailed(f"the export differs from the eager model by {worst:.2e} > {ONNX_TOLERANCE}")
    return 0
