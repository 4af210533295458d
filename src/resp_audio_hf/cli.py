"""``resp-audio-hf`` command line.

Subcommands are listed in ``SUBCOMMANDS``; each names the module functions that add its arguments
and run it, so adding a subcommand means adding one entry (and its module) without touching the
others. Only the chosen subcommand's handler imports heavy dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    """One ``resp-audio-hf <name>`` command.

    Attributes:
        name: the word typed after ``resp-audio-hf``.
        help: one-line description for ``--help``.
        add_arguments: ``"module:function"`` taking the subparser.
        run: ``"module:function"`` taking the parsed arguments and returning an exit code.
    """

    name: str
    help: str
    add_arguments: str
    run: str


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "bench",
        "score a model on the OPERA benchmark (and SPRSound) with linear probes",
        "resp_audio_hf.benchmark.commands:add_bench_arguments",
        "resp_audio_hf.benchmark.commands:run_bench",
    ),
    Subcommand(
        "demo",
        "label real coughs with the shipped AudioSet model and run the benchmark path on them, offline",
        "resp_audio_hf.benchmark.commands:add_demo_arguments",
        "resp_audio_hf.benchmark.commands:run_demo_command",
    ),
]


def _resolve(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resp-audio-hf", description="Respiratory-audio foundation models for Hugging Face transformers."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        _resolve(command.add_arguments)(subparser)
        subparser.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    import logging

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(_resolve(args._run)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
