"""Checking a staged folder before upload: every file present, a complete `auto_map`, and outputs that are finite and
equal to the source model's, in this process and in a child process that loads the folder without `resp_audio_hf`
(`remote_code_check.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..configuration_resp_audio import MODEL_TYPES
from .checkpoint import load_checkpoint
from .errors import HubPublishError

CARD_FILE = "README.md"


def required_files(model_type: str) -> tuple[str, ...]:
    """Every file a staged folder of `model_type` holds: weights, configurations, the card and the remote code its
    record in `MODEL_TYPES` names."""
    return (
        "config.json", "model.safetensors", "preprocessor_config.json", *MODEL_TYPES[model_type].remote_code_files,
        CARD_FILE,
    )


# The files of a staged folder of any model type: a folder holding others is never one to replace.
STAGED_FILES = frozenset(name for model_type in MODEL_TYPES for name in required_files(model_type))
# Outputs of the staged folder and of the source model must agree to float32 round-off.
OUTPUT_ATOL = 1e-5
# Run as a script in the child process; it imports nothing from this package (which it blocks).
REMOTE_CODE_CHECK_SCRIPT = Path(__file__).resolve().parent / "remote_code_check.py"


def check_staged_folder(folder: str | os.PathLike) -> list[str]:
    """
    Check that `folder` has every file of a Hub checkpoint with remote code, and nothing that breaks loading:
    `REQUIRED_FILES`, a complete `auto_map` in `config.json` and `preprocessor_config.json`, and remote code whose
    relative imports all resolve inside the folder. Returns the files to upload, relative and sorted.
    """
    from transformers.dynamic_module_utils import get_relative_imports

    folder = Path(folder)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if "config.json" not in files:
        raise HubPublishError(f"{folder} lacks ['config.json']; stage it again with stage_for_hub / push_to_hub.py.")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") not in MODEL_TYPES:
        raise HubPublishError(
            f"{folder}/config.json names model_type {config.get('model_type')!r}, not one of {sorted(MODEL_TYPES)}."
        )
    record = MODEL_TYPES[config["model_type"]]
    missing = [name for name in required_files(record.model_type) if name not in files]
    if missing:
        raise HubPublishError(
            f"{folder} lacks {missing}; refusing to upload a checkpoint that would not load with "
            "trust_remote_code=True. Stage it again with stage_for_hub / scripts/push_to_hub.py."
        )
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    auto_map = {**config.get("auto_map", {}), **preprocessor.get("auto_map", {})}
    needed = ["AutoConfig", "AutoModel", "AutoFeatureExtractor"]
    if record.classifier_class.__name__ in (config.get("architectures") or []):
        needed.append("AutoModelForAudioClassification")
    absent = [name for name in needed if name not in auto_map]
    if absent:
        raise HubPublishError(f"{folder}: auto_map lacks {absent}, so those Auto classes could not load the model.")
    for auto_class, reference in auto_map.items():
        module = reference.split("--")[-1].rsplit(".", 1)[0]
        if f"{module}.py" not in files:
            raise HubPublishError(f"{folder}: auto_map[{auto_class!r}] points to {module}.py, which is not staged.")
    for name in record.remote_code_files:
        for imported in get_relative_imports(str(folder / name)):
            if f"{imported}.py" not in files:
                raise HubPublishError(f"{folder}/{name} imports .{imported}, which is not staged.")
    return files


def validation_clips(sampling_rate: int) -> list[np.ndarray]:
    """
    Two deterministic clips for validation: 1.2 s, and 3.1 s (longer than one window of every preset, so the
    windowed path runs too). Harmonic tones with a vibrato plus seeded noise, so every mel band is excited.
    """
    generator = np.random.default_rng(0)
    clips = []
    for seconds in (1.2, 3.1):
        t = np.arange(int(seconds * sampling_rate)) / sampling_rate
        phase = 2 * np.pi * (220 * t + 3 * np.sin(2 * np.pi * 5 * t))
        tone = sum(np.sin(k * phase) / k for k in range(1, 8))
        clips.append((0.3 * tone + 0.05 * generator.standard_normal(t.size)).astype(np.float32))
    return clips


def _reference_outputs(model, feature_extractor, clips) -> dict[str, torch.Tensor]:
    inputs = feature_extractor(clips, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        if model.base_model is not model:  # a classifier
            encoder_out = model.base_model(**inputs)
            logits = model(**inputs).logits
            return {"pooler_output": encoder_out.pooler_output, "last_hidden_state": encoder_out.last_hidden_state,
                    "logits": logits}
        out = model(**inputs)
    return {"pooler_output": out.pooler_output, "last_hidden_state": out.last_hidden_state}


def validate_staged_folder(
    folder: str | os.PathLike, reference_model=None, isolated: bool = True, timeout: float = 600.0
) -> dict[str, torch.Tensor]:
    """
    Load the staged folder and run it on [`validation_clips`]: outputs must be finite and, when `reference_model` is
    given, equal to its outputs. With `isolated=True` the folder is also loaded in a separate Python process in which
    `resp_audio_hf` cannot be imported, through `trust_remote_code=True` as a Hub user would, and its outputs must
    match. Returns the in-process outputs.
    """
    folder = Path(folder)
    check_staged_folder(folder)
    model, feature_extractor = load_checkpoint(folder)
    clips = validation_clips(feature_extractor.sampling_rate)
    outputs = _reference_outputs(model, feature_extractor, clips)
    for name, value in outputs.items():
        if not bool(torch.isfinite(value).all()):
            raise HubPublishError(
                f"The staged model gives non-finite {name} on a test clip; refusing to publish it. Check the "
                "checkpoint's weights for NaN/inf."
            )
    if reference_model is not None:
        expected = _reference_outputs(reference_model, feature_extractor, clips)
        _compare_outputs(expected, outputs, "the staged folder reloaded in this process")
    if isolated:
        remote = load_without_package(folder, clips, feature_extractor.sampling_rate, timeout=timeout)
        _compare_outputs(outputs, remote, "the staged folder loaded with trust_remote_code=True without resp_audio_hf")
    return outputs


def _compare_outputs(expected: dict, actual: dict, what: str) -> None:
    for name, value in expected.items():
        if name not in actual:
            raise HubPublishError(f"{what} gave no {name}.")
        other = torch.as_tensor(actual[name])
        if other.shape != value.shape or not torch.allclose(value, other, atol=OUTPUT_ATOL, rtol=1e-4):
            diff = (value - other).abs().max().item() if other.shape == value.shape else f"shape {tuple(other.shape)}"
            raise HubPublishError(f"{what} gives different {name} than the source model (max difference {diff}).")


def load_without_package(
    folder: str | os.PathLike, clips: list[np.ndarray], sampling_rate: int, timeout: float = 600.0
) -> dict[str, torch.Tensor]:
    """
    Load `folder` in a fresh Python process where `resp_audio_hf` cannot be imported (offline, with a private module
    cache) and return its `pooler_output`, `last_hidden_state` and, with a head, `logits` on `clips`.
    """
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="resp_audio_remote_check_") as scratch:
        scratch = Path(scratch)
        np.savez(scratch / "probe.npz", sampling_rate=sampling_rate, **{f"clip{i}": c for i, c in enumerate(clips)})
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(scratch / "modules"),
               "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
        try:
            completed = subprocess.run(
                [sys.executable, str(REMOTE_CODE_CHECK_SCRIPT), str(Path(folder).resolve()), str(scratch / "probe.npz"),
                 str(scratch / "outputs.safetensors")],
                cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise HubPublishError(f"Loading {folder} with remote code took longer than {timeout:.0f} s.") from None
        if completed.returncode != 0:
            raise HubPublishError(
                f"{folder} does not load with trust_remote_code=True in a process without resp_audio_hf; users of "
                f"the Hub repository would hit the same error:\n{completed.stderr.strip()[-3000:]}"
            )
        return load_file(scratch / "outputs.safetensors")
