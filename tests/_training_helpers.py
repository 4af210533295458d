"""Helpers of the training tests: corpus folders mixing real usable recordings with real and hostile unusable files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from _paths import REPO_ROOT

SAMPLING_RATE = 16000  # the tiny-m2d preset's


def cough_corpus(shared_data: Path, filters: list[str], limit: int, **options) -> dict:
    """The `data.corpora` entry of the CC0 COVID-19 cough recordings, selected by metadata `filters`."""
    return {
        "name": "covid19-cough",
        "path": str(shared_data / "covid19-cough" / "raw"),
        "metadata": str(shared_data / "covid19-cough" / "metadata.json"),
        "file_column": "filename",
        "filters": filters,
        "limit": limit,
        **options,
    }


def real_stub_coughs(shared_data: Path) -> list[Path]:
    """The CC0 cough files that are a few hundred bytes of header and no audio (two in this copy)."""
    stubs = sorted(p for p in (shared_data / "covid19-cough" / "raw").glob("*.mp3") if p.stat().st_size < 1024)
    assert stubs, "expected the undecodable stub coughs in the shared data"
    return stubs


def make_mixed_quality_folder(shared_data: Path, folder: Path) -> tuple[set[str], set[str]]:
    """
    Fill `folder` with links to 5 good recordings (3 coughs, 2 SPRSound) and to the real stub coughs, plus a WAV of
    junk after its RIFF header and a WAV of NaN samples. Returns the names of the good and of the unusable files.
    """
    import soundfile

    folder.mkdir(parents=True)
    good = sorted((shared_data / "covid19-cough" / "raw").glob("*.mp3"), key=lambda p: -p.stat().st_size)[:3]
    good += sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:2]
    bad = real_stub_coughs(shared_data)
    for path in good + bad:
        (folder / path.name).symlink_to(path)
    (folder / "junk.wav").write_bytes(b"RIFF\xff\xff\xff\x7fWAVEfmt " + bytes(range(256)) * 4)
    soundfile.write(folder / "nan.wav", np.full(SAMPLING_RATE, np.nan, np.float32), SAMPLING_RATE, subtype="FLOAT")
    return {p.name for p in good}, {p.name for p in bad} | {"junk.wav", "nan.wav"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(config: dict, tmp_path: Path, name: str, *extra: str, processes: int = 2) -> subprocess.CompletedProcess:
    config_path = tmp_path / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = [str(REPO_ROOT / "training" / "pretrain.py"), "--config", str(config_path), *extra]
    if processes > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            f"--master_port={free_port()}",
            *script,
        ]
    else:
        command = [sys.executable, *script]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    (tmp_path / f"{name}.log").write_text(result.stdout + result.stderr)
    return result


def metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
