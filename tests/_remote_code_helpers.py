"""Running a script in a fresh Python process in which `resp_audio_hf` cannot be imported, as a Hub user who loads a
saved folder's remote code with `trust_remote_code=True` runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from resp_audio_hf.hub.validation import REMOTE_CODE_CHECK_SCRIPT

# Put first in every script: the package's own blocker (hub/remote_code_check.py, run by path, since importing it
# through the package would import the package), and proof that it holds.
BLOCK_PACKAGE = f"""
import runpy, sys
sys.meta_path.insert(0, runpy.run_path({str(REMOTE_CODE_CHECK_SCRIPT)!r})["BlockPackage"]())
try:
    import resp_audio_hf
except ImportError:
    pass
else:
    raise SystemExit("resp_audio_hf is still importable: a remote-code test would prove nothing")
"""


def run_without_package(script: str, *args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """
    Run `script` (Python source, dedented) with `args` in a fresh interpreter that cannot import `resp_audio_hf`,
    offline, with a private remote-code module cache under `cwd`; `script` ends with
    `assert not any(name.split(".")[0] == "resp_audio_hf" for name in sys.modules)` where it wants to be sure.
    """
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(Path(cwd) / "modules"), PYTHONNOUSERSITE="1")
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PACKAGE + textwrap.dedent(script), *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
