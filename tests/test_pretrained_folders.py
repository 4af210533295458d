"""The model folders shipped under pretrained/: their remote code is the package's, and it loads without the package.

Each folder carries copies of the package modules (what `save_pretrained` writes for `trust_remote_code=True`), so a
change to a module leaves a stale copy behind unless the copies are refreshed:
    for f in pretrained/*/*.py; do cp "src/resp_audio_hf/$(basename "$f")" "$f"; done
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _audio_helpers import require_dir
from transformers import AutoModel

import resp_audio_hf
from resp_audio_hf.hub import load_without_package

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(resp_audio_hf.__file__).resolve().parent
FOLDERS = sorted(path for path in (REPO / "pretrained").iterdir() if path.is_dir())


def test_there_are_shipped_folders():
    assert {path.name for path in FOLDERS} >= {"efficientat-mn04-as", "small-m2d-resp"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: path.name)
def test_remote_code_copies_equal_the_package_modules(folder):
    copies = sorted(folder.glob("*.py"))
    assert copies, f"{folder} has no remote code"
    stale = [copy.name for copy in copies if copy.read_bytes() != (PACKAGE / copy.name).read_bytes()]
    assert not stale, f"{folder}: {stale} differ from src/resp_audio_hf; refresh them (see this file's docstring)"
    config = json.loads((folder / "config.json").read_text())
    modules = {entry.split(".")[0] + ".py" for entry in config["auto_map"].values()}
    assert modules <= {copy.name for copy in copies}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: path.name)
def test_shipped_folder_loads_without_the_package(folder, shared_data):
    import soundfile

    recording = sorted(require_dir(shared_data / "sprsound" / "test_wav").glob("*.wav"))[0]
    audio, rate = soundfile.read(recording, dtype="float32")
    remote = load_without_package(folder, [audio], rate)

    from transformers import AutoFeatureExtractor

    model = AutoModel.from_pretrained(folder).eval()
    inputs = AutoFeatureExtractor.from_pretrained(folder)([audio], sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        local = model(**inputs).pooler_output
    np.testing.assert_allclose(remote["pooler_output"].numpy(), local.numpy(), atol=1e-5)
