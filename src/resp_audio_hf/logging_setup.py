"""The one logging setup of the package's entry points.

Modules log through `logging.getLogger(__name__)` and never configure logging themselves; the program that runs
them does, once, here: `resp-audio-hf` (`resp_audio_hf.cli.main`, INFO with `-v`, else WARNING), the training
programs (`training/*.py`, with the process rank so that the lines of a distributed run can be told apart) and
the standalone scripts.
"""

from __future__ import annotations

import logging


def configure_logging(level: int = logging.WARNING, *, timestamps: bool = False, rank: int | None = None) -> None:
    """Send the records of `level` and above to stderr as `LEVEL logger: message`, preceded by the time when
    `timestamps` and by `[rank N]` when `rank` is given. A root logger that already has handlers (a caller's own
    setup, pytest's capture) is left as it is, as `logging.basicConfig` does."""
    prefix = "%(asctime)s " if timestamps else ""
    if rank is not None:
        prefix += f"[rank {rank}] "
    logging.basicConfig(level=level, format=prefix + "%(levelname)s %(name)s: %(message)s")
