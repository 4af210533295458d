"""The model folders shipped under pretrained/: weights, configuration and card, and no code.

The package's modules are their code. With the package imported, its registered classes load the folders; for a
process without it, staging (`resp_audio_hf.hub.staging.save_with_remote_code`, as `resp-audio-hf push` does) writes
the package's modules next to the weights, and that folder must load through `trust_remote_code=True` and give the
package's outputs.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from _audio_helpers import require_dir
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

import resp_audio_hf  # noqa: F401  (registers the model types)
from resp_audio_hf.hub import load_without_package
from resp_audio_hf.hub.staging import save_with_remote_code

REPO = Path(__file__).resolve().parents[1]
FOLDERS = sorted(path for path in (REPO / "pretrained").iterdir() if path.is_dir())


def test_there_are_shipped_folders():
    assert {path.name for path in FOLDERS} >= {"efficientat-mn04-as"}


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: path.name)
def test_auto_map_names_classes_of_the_package(folder):
    """Each `auto_map` entry names a package class registered for that Auto class, so `save_pretrained` writes its
    module into a staged folder."""
    entries = {}
    for name in ("config.json", "preprocessor_config.json"):
        entries.update(json.loads((folder / name).read_text()).get("auto_map", {}))
    assert {"AutoConfig", "AutoModel", "AutoFeatureExtractor"} <= set(entries)
    for auto_class, reference in entries.items():
        module, class_name = reference.rsplit(".", 1)
        loaded = getattr(importlib.import_module(f"resp_audio_hf.{module}"), class_name)
        assert loaded._auto_class == auto_class, reference


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda path: path.name)
def test_staged_folder_loads_without_the_package_as_the_package_loads_the_folder(folder, shared_data, tmp_path):
    import soundfile

    recording = sorted(require_dir(shared_data / "sprsound" / "test_wav").glob("*.wav"))[0]
    audio, rate = soundfile.read(recording, dtype="float32")
    has_head = any(name.endswith("ForAudioClassification") for name in AutoConfig.from_pretrained(folder).architectures)
    model = (AutoModelForAudioClassification if has_head else AutoModel).from_pretrained(folder).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
    assert type(model).__module__.startswith("resp_audio_hf.")  # the package's class, not code from the folder
    staged = tmp_path / "staged"
    save_with_remote_code(model, feature_extractor, staged)

    remote = load_without_package(staged, [audio], rate)
    inputs = feature_extractor([audio], sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        encoded = AutoModel.from_pretrained(folder).eval()(**inputs)
        expected = {"pooler_output": encoded.pooler_output, "last_hidden_state": encoded.last_hidden_state}
        if has_head:
            expected["logits"] = model(**inputs).logits
    assert set(remote) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(remote[name], value, atol=1e-5, rtol=1e-5)
