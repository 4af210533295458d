"""The typed errors of the `resp-audio-hf` commands and the one table of their exit codes.

A handler returns 0 when the command did its work and raises one of these errors otherwise; `resp_audio_hf.cli.main`
(and the standalone `scripts/*.py` programs, through [`run_command`]) prints `error: <message>` on stderr and exits
with the error's code from `EXIT_CODES`:

| error               | exit code | when                                                                          |
|---------------------|-----------|-------------------------------------------------------------------------------|
| `UsageError`        | 2         | the command line asks for what cannot be (options, inputs or tasks that do not exist) |
| `ModelLoadError`    | 2         | the model (folder, Hub id, preset, checkpoint to convert) could not be loaded |
| `CommandFailed`     | 1         | the command ran and failed (unreadable inputs, a failed task, an upload refused) |
| `MissingExtraError` | 1         | an optional dependency is not installed (the message names the extra)        |

argparse's own usage errors also exit 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class CommandError(Exception):
    """An error a command reports as `error: <message>` and ends with its `EXIT_CODES` code."""


class UsageError(CommandError):
    """The command line asks for something that cannot be: conflicting options, a missing input, an unknown task."""


class ModelLoadError(CommandError):
    """The model could not be loaded: a folder that is not a model, a damaged checkpoint, an unknown preset. Every
    command says so in the same words, before the loader's own message (which names the folder or Hub id)."""

    def __init__(self, cause):
        super().__init__(f"could not load the model: {cause}")


class CommandFailed(CommandError):
    """The command ran and did not succeed: no readable input, a task that failed, an upload the Hub refused."""


class MissingExtraError(CommandError):
    """An optional dependency the command imports is not installed."""


EXIT_CODES: dict[type[CommandError], int] = {
    UsageError: 2,
    ModelLoadError: 2,
    CommandFailed: 1,
    MissingExtraError: 1,
}


def exit_code(error: CommandError) -> int:
    """The `EXIT_CODES` entry of `error`'s class, or of its nearest listed base class."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    raise TypeError(f"{type(error).__name__} has no exit code in EXIT_CODES; add it there.")


def run_command(handler: Callable[..., int | None], options) -> int:
    """`handler(options)`'s exit code: its return value (0 for `None`), or the code of the [`CommandError`] it raised,
    whose message is printed as `error: <message>` on stderr."""
    try:
        return int(handler(options) or 0)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_code(error)
