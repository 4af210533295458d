"""`python -m resp_audio_hf` is the `resp-audio-hf` command line."""

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resp_audio_hf.cli import SUBCOMMANDS, main

SRC = Path(__file__).resolve().parents[1] / "src"


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "resp_audio_hf", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_help_is_the_console_scripts():
    result = run_module("--help")
    assert result.returncode == 0, result.stderr
    in_process = io.StringIO()
    with contextlib.redirect_stdout(in_process), pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert result.stdout == in_process.getvalue()
    assert result.stdout.startswith("usage: resp-audio-hf")
    for command in SUBCOMMANDS:
        assert command.name in result.stdout


def test_errors_exit_as_the_console_script_does():
    """A wrong argument is argparse's error, exit status 2, on stderr."""
    wrong = run_module("demo", "--no-such-option")
    assert wrong.returncode == 2 and "unrecognized arguments: --no-such-option" in wrong.stderr
    assert wrong.stderr.startswith("usage: resp-audio-hf ")
