"""`resp-audio-hf` command line.

Subcommands are listed in `SUBCOMMANDS`; each names the functions of its module `resp_audio_hf.commands.<name>`
that add its arguments (or the dataclass whose fields are its options) and run it, so adding a subcommand means adding
one entry (and its module) without touching the others. Only the chosen subcommand's handler imports heavy
dependencies. Errors become exit codes in one place (`resp_audio_hf.commands.errors.EXIT_CODES`) and logging is
configured once, here (`resp_audio_hf.logging_setup`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    """One `resp-audio-hf <name>` command.

    Attributes:
        name: the word typed after `resp-audio-hf`.
        help: one-line description for `--help`.
        add_arguments: `"module:function"` taking the subparser, or `"module:Dataclass"` whose fields are the
            options (`dataclass=True`).
        run: `"module:function"` taking the parsed arguments (the dataclass instance, or the
            `argparse.Namespace`); it returns 0 or raises a typed error of `resp_audio_hf.commands.errors`,
            whose table gives the exit code.
        examples: `"module:ATTRIBUTE"` naming the example command lines shown by `--help`.
        dataclass: `add_arguments` names a dataclass, parsed with transformers' `HfArgumentParser`; a value
            its `__post_init__` refuses (`ValueError`) is a usage error, as argparse's own.
    """

    name: str
    help: str
    add_arguments: str
    run: str
    examples: str
    dataclass: bool = False


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "bench",
        "score a model on the OPERA benchmark (and SPRSound) with linear probes",
        "resp_audio_hf.benchmark.arguments:BenchmarkArguments",
        "resp_audio_hf.commands.bench:run_bench",
        "resp_audio_hf.commands.bench:EXAMPLES",
        dataclass=True,
    ),
    Subcommand(
        "demo",
        "label real coughs with the shipped AudioSet model and count the coughs of a recording assembled from them, offline",
        "resp_audio_hf.commands.demo:add_demo_arguments",
        "resp_audio_hf.commands.demo:run_demo",
        "resp_audio_hf.commands.demo:EXAMPLES",
    ),
    Subcommand(
        "embed",
        "embed recordings (folder, glob, CSV/JSON list or datasets dataset) into a Parquet or .npy file",
        "resp_audio_hf.commands.embed:add_embed_arguments",
        "resp_audio_hf.commands.embed:run_embed",
        "resp_audio_hf.commands.embed:EXAMPLES",
    ),
    Subcommand(
        "tag",
        "tag a recording of any length by windows: a timeline of AudioSet labels, a cough count, CSV and PNG",
        "resp_audio_hf.commands.tag:add_tag_arguments",
        "resp_audio_hf.commands.tag:run_tag",
        "resp_audio_hf.commands.tag:EXAMPLES",
    ),
    Subcommand(
        "convert",
        "convert an original PaSST, AST, M2D or EfficientAT checkpoint into a Hugging Face model folder",
        "resp_audio_hf.commands.convert:add_convert_arguments",
        "resp_audio_hf.commands.convert:run_convert",
        "resp_audio_hf.commands.convert:EXAMPLES",
    ),
    Subcommand(
        "export",
        "export a model to ONNX (graph with its pooling, config and feature-extractor settings) for ONNX Runtime",
        "resp_audio_hf.commands.export:add_export_arguments",
        "resp_audio_hf.commands.export:run_export",
        "resp_audio_hf.commands.export:EXAMPLES",
    ),
    Subcommand(
        "push",
        "publish a checkpoint to the Hugging Face Hub with remote code and a model card",
        "resp_audio_hf.commands.push:add_push_arguments",
        "resp_audio_hf.commands.push:run_push",
        "resp_audio_hf.commands.push:EXAMPLES",
    ),
]

EXAMPLES = """\
examples:
  resp-audio-hf demo
  resp-audio-hf embed recordings/ --model org/resp-passt -o embeddings.parquet
  resp-audio-hf tag night.wav
  resp-audio-hf bench --model org/resp-passt --tasks S1,S2 --data-root ../shared/data
  resp-audio-hf convert --family passt passt-s-f128-p16-s10-ap.476-swa.pt resp-passt-as
  resp-audio-hf export --format onnx --model pretrained/efficientat-mn04-as mn04-onnx
  resp-audio-hf push my-resp-passt --repo-id org/resp-passt --dry-run
"""


def _resolve(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resp-audio-hf",
        description="Respiratory-audio foundation models for Hugging Face transformers.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        options = _resolve(command.add_arguments)
        subparser = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.help,
            epilog=_resolve(command.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[_dataclass_parser(options)] if command.dataclass else [],
        )
        if not command.dataclass:
            options(subparser)
        subparser.set_defaults(_run=command.run, _options=options if command.dataclass else None,
                               _usage_error=subparser.error)
    return parser


def _dataclass_parser(options: type) -> argparse.ArgumentParser:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(options, add_help=False)
    for action in parser._actions:
        # HfArgumentParser lists `--data_root` before `--data-root`; every other command, and the README, use dashes.
        action.option_strings.sort(key=lambda option: "_" in option)
    return parser


def _parsed_options(args: argparse.Namespace):
    """The subcommand's dataclass filled from `args` (HfArgumentParser's `parse_dict`); a value it refuses ends
    the program as argparse's errors do (usage, message, exit status 2)."""
    from dataclasses import fields

    from transformers import HfArgumentParser

    values = {field.name: getattr(args, field.name) for field in fields(args._options)}
    try:
        (options,) = HfArgumentParser(args._options).parse_dict(values)
    except ValueError as error:
        args._usage_error(str(error))
    return options


# The extra of pyproject.toml that installs each optional module the commands import (named when one is missing).
EXTRA_OF_MODULE = {
    "torchcodec": "audio", "soundfile": "audio", "filelock": "audio", "datasets": "data", "pandas": "data",
    "pyarrow": "data", "sklearn": "data", "openpyxl": "data", "pooch": "data", "scipy": "benchmark",
    "matplotlib": "benchmark", "tqdm": "benchmark", "evaluate": "metrics", "accelerate": "train",
    "omegaconf": "train", "yaml": "train", "jinja2": "hub",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    import logging

    from .commands.errors import run_command
    from .logging_setup import configure_logging

    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    options = _parsed_options(args) if args._options else args
    return run_command(_with_extras_named(_resolve(args._run)), options)


def _with_extras_named(handler):
    """`handler`, raising a `MissingExtraError` that names the extra to install when an optional module is missing."""
    from .commands.errors import MissingExtraError

    def run(options):
        try:
            return handler(options)
        except ModuleNotFoundError as error:
            module = (error.name or "").split(".")[0]
            if module not in EXTRA_OF_MODULE:
                raise
            raise MissingExtraError(
                f"this command needs {module}, which is not installed: "
                f"python -m pip install 'resp_audio_hf[{EXTRA_OF_MODULE[module]}]'"
            ) from error

    return run


if __name__ == "__main__":
    sys.exit(main())
