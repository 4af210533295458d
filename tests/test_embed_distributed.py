"""`resp-audio-hf embed` under torchrun with two CPU processes writes exactly the single-process output (whole-clip
and windowed embedding of real recordings, with an undecodable file skipped)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _paths import MN04_DIR, REPO_ROOT
from _training_helpers import free_port, real_stub_coughs


def _embed(arguments: list[str], tmp_path: Path, name: str, processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT / "src")}
    command = [sys.executable, "-m", "resp_audio_hf", "-v", "embed", *arguments]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                   f"--master_port={free_port()}", "-m", "resp_audio_hf", "-v", "embed", *arguments]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    (tmp_path / f"{name}.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("windowed", [False, True], ids=["clips", "windows"])
def test_two_processes_write_the_single_process_output(shared_data, tmp_path, windowed):
    coughs = sorted((shared_data / "covid19-cough" / "raw").glob("*.mp3"), key=lambda p: -p.stat().st_size)[:3]
    lungs = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:2]
    files = [coughs[0], lungs[0], real_stub_coughs(shared_data)[0], coughs[1], lungs[1], coughs[2]]
    common = [*map(str, files), "--model", str(MN04_DIR), "--batch-size", "2", "--quiet", "--no-cache"]
    if windowed:
        common += ["--window-seconds", "2", "--hop-seconds", "1"]
    outputs = {}
    for processes in (1, 2):
        output = tmp_path / f"p{processes}" / "emb.npy"
        result = _embed([*common, "-o", str(output)], tmp_path, f"p{processes}", processes)
        outputs[processes] = output
    # Both processes had a share (whole batches of 2 clips, or whole files).
    log = result.stdout + result.stderr
    shares = [int(log.split(f"process {rank} of 2 embeds ")[1].split()[0]) for rank in (0, 1)]
    assert sum(shares) == 5 and min(shares) >= 1, log
    single, double = outputs[1], outputs[2]
    vectors = np.load(single)
    np.testing.assert_array_equal(np.load(double), vectors)  # bit for bit
    assert single.with_suffix(".index.csv").read_bytes() == double.with_suffix(".index.csv").read_bytes()
    assert single.with_suffix(".skipped.csv").read_bytes() == double.with_suffix(".skipped.csv").read_bytes()
    index = list(csv.DictReader(open(single.with_suffix(".index.csv"), encoding="utf-8")))
    names = [row["path"] for row in index]
    # Every readable file is there, in input order; the stub is skipped.
    assert list(dict.fromkeys(names)) == [str(f) for f in files if f.stat().st_size >= 1024]
    if windowed:
        assert len(names) > 5 and {"window", "start_s", "end_s"} <= set(index[0])
    assert vectors.shape[0] == len(names) and np.isfinite(vectors).all()
