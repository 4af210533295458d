"""Auto-class registration, remote code (`trust_remote_code=True` without the package) and the offline hub-id path."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from _audio_helpers import load_audio, sprsound_records
from _preset_helpers import TINY_PRESETS
from _remote_code_helpers import run_without_package
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification

import resp_audio_hf
from resp_audio_hf import (
    RespAudioConfig,
    RespAudioFeatureExtractor,
    RespAudioForAudioClassification,
    RespAudioModel,
)

ID2LABEL = {0: "Normal", 1: "CAS", 2: "DAS"}
HUB_ORG = "resp-audio-tests"
REMOTE_CODE_FILES = (
    "configuration_resp_audio.py",
    "modeling_resp_audio.py",
    "feature_extraction_resp_audio.py",
    "pipeline_resp_audio.py",
)
INPUT_RATE = 8000  # SPRSound's native rate: every front end resamples it


def hub_id(preset: str) -> str:
    return f"{HUB_ORG}/{preset}-cls"


def populate_hub_cache(cache_dir: Path, repo_id: str, folder: Path) -> str:
    """Lay `folder` out as huggingface_hub's download cache does: models--org--name/snapshots/<rev> and refs/main."""
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo_dir / "snapshots" / revision)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return revision


def reference_outputs(model, feature_extractor, clips) -> dict[str, np.ndarray]:
    features = feature_extractor(clips, sampling_rate=INPUT_RATE, return_tensors="pt")
    with torch.no_grad():
        output = model(**features)
    arrays = {"input_values": features["input_values"], "attention_mask": features["attention_mask"]}
    if isinstance(model, RespAudioForAudioClassification):
        arrays["logits"] = output.logits
    else:
        arrays["last_hidden_state"] = output.last_hidden_state
        arrays["pooler_output"] = output.pooler_output
    return {key: value.numpy() for key, value in arrays.items()}


@pytest.fixture(scope="module")
def input_clips() -> list[np.ndarray]:
    """Two real SPRSound recordings at 8 kHz of different lengths: a whole one and the first 2.5 s of another."""
    (first, _), (second, _) = sprsound_records()[:2]
    whole, rate = load_audio(first)
    part, _ = load_audio(second)
    assert rate == INPUT_RATE
    return [whole, part[: int(2.5 * rate)]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, input_clips):
    """Per tiny preset: a random base model and a classifier saved with their feature extractor, and their outputs."""
    root = tmp_path_factory.mktemp("saved")
    hub_cache = root / "hub_cache"
    presets = {}
    for seed, preset in enumerate(TINY_PRESETS):
        torch.manual_seed(seed)
        config = RespAudioConfig.from_preset(preset, id2label=ID2LABEL)
        feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
        base, classifier = RespAudioModel(config).eval(), RespAudioForAudioClassification(config).eval()
        folders = {"base": root / preset / "base", "cls": root / preset / "cls"}
        for model, folder in ((base, folders["base"]), (classifier, folders["cls"])):
            model.save_pretrained(folder)
            feature_extractor.save_pretrained(folder)
        populate_hub_cache(hub_cache, hub_id(preset), folders["cls"])
        presets[preset] = dict(
            config=config,
            feature_extractor=feature_extractor,
            base=base,
            classifier=classifier,
            folders=folders,
            expected={
                "base": reference_outputs(base, feature_extractor, input_clips),
                "cls": reference_outputs(classifier, feature_extractor, input_clips),
            },
        )
    return dict(root=root, hub_cache=hub_cache, presets=presets)


@pytest.fixture
def offline(monkeypatch):
    """Hub offline mode regardless of the environment, so nothing here can reach the network."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def without_path(settings: dict) -> dict:
    """A config or feature extractor dict without the folder it was loaded from."""
    return {key: value for key, value in settings.items() if key != "_name_or_path"}


def assert_outputs_equal(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]):
    assert set(actual) == set(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-5, err_msg=key)


# --------------------------------------------------------------------------- in-process Auto classes


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_saved_folder_carries_remote_code(saved, preset):
    for kind, auto_class in (("base", "AutoModel"), ("cls", "AutoModelForAudioClassification")):
        folder = saved["presets"][preset]["folders"][kind]
        for name in REMOTE_CODE_FILES:
            assert (folder / name).is_file(), f"{name} missing from {folder}"
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "resp_audio"
        assert config["auto_map"]["AutoConfig"] == "configuration_resp_audio.RespAudioConfig"
        assert config["auto_map"][auto_class].startswith("modeling_resp_audio.")
        preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
        assert preprocessor["auto_map"]["AutoFeatureExtractor"] == (
            "feature_extraction_resp_audio.RespAudioFeatureExtractor"
        )
        # The remote code is the package's own source, byte for byte.
        for name in REMOTE_CODE_FILES:
            assert (folder / name).read_bytes() == (Path(resp_audio_hf.__file__).parent / name).read_bytes()


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_auto_classes_round_trip(saved, preset, input_clips, offline):
    entry = saved["presets"][preset]
    folders, expected = entry["folders"], entry["expected"]

    config = AutoConfig.from_pretrained(folders["cls"])
    assert type(config) is RespAudioConfig
    assert without_path(config.to_dict()) == without_path(entry["config"].to_dict())
    assert config.id2label == ID2LABEL

    feature_extractor = AutoFeatureExtractor.from_pretrained(folders["base"])
    assert type(feature_extractor) is RespAudioFeatureExtractor
    assert without_path(feature_extractor.to_dict()) == without_path(entry["feature_extractor"].to_dict())

    base = AutoModel.from_pretrained(folders["base"]).eval()
    assert type(base) is RespAudioModel
    assert_outputs_equal(reference_outputs(base, feature_extractor, input_clips), expected["base"])

    classifier = AutoModelForAudioClassification.from_pretrained(folders["cls"]).eval()
    assert type(classifier) is RespAudioForAudioClassification
    assert_outputs_equal(reference_outputs(classifier, feature_extractor, input_clips), expected["cls"])

    # AutoModel on a classifier's folder gives its encoder, weights included.
    encoder = AutoModel.from_pretrained(folders["cls"]).eval()
    assert type(encoder) is RespAudioModel
    expected_encoder = reference_outputs(entry["classifier"].resp_audio, feature_extractor, input_clips)
    assert_outputs_equal(reference_outputs(encoder, feature_extractor, input_clips), expected_encoder)


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_hub_id_loads_from_prepopulated_cache_offline(saved, preset, input_clips, offline):
    cache_dir, expected = saved["hub_cache"], saved["presets"][preset]["expected"]
    classifier = AutoModelForAudioClassification.from_pretrained(hub_id(preset), cache_dir=cache_dir).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(hub_id(preset), cache_dir=cache_dir)
    assert type(classifier) is RespAudioForAudioClassification
    assert type(feature_extractor) is RespAudioFeatureExtractor
    assert_outputs_equal(reference_outputs(classifier, feature_extractor, input_clips), expected["cls"])

    # The same id is not resolved anywhere else: a repository missing from the cache fails instead of downloading.
    with pytest.raises(OSError):
        AutoModelForAudioClassification.from_pretrained(f"{HUB_ORG}/not-in-cache", cache_dir=cache_dir)


# --------------------------------------------------------------------------- remote code in a fresh process

# Runs in a fresh interpreter in which `import resp_audio_hf` fails, loads every job's folder or hub id with
# trust_remote_code=True and writes its outputs on the same clips to <out>/<job>.npz.
REMOTE_SCRIPT = """
    import json, sys

    import numpy as np
    import torch
    import transformers

    spec = json.load(open(sys.argv[1]))
    inputs = np.load(spec["inputs"])
    clips = [inputs[key] for key in sorted(inputs.files)]
    classes = {}
    for job in spec["jobs"]:
        kwargs = dict(trust_remote_code=True)
        if job.get("cache_dir"):
            kwargs["cache_dir"] = job["cache_dir"]
        model = getattr(transformers, job["auto_class"]).from_pretrained(job["source"], **kwargs).eval()
        feature_extractor = transformers.AutoFeatureExtractor.from_pretrained(job["source"], **kwargs)
        features = feature_extractor(clips, sampling_rate=spec["sampling_rate"], return_tensors="pt")
        with torch.no_grad():
            output = model(**features)
        arrays = {"input_values": features["input_values"], "attention_mask": features["attention_mask"]}
        if job["auto_class"] == "AutoModel":
            arrays.update(last_hidden_state=output.last_hidden_state, pooler_output=output.pooler_output)
        else:
            arrays.update(logits=output.logits)
        np.savez(f"{spec['out']}/{job['name']}.npz", **{k: v.numpy() for k, v in arrays.items()})
        classes[job["name"]] = {
            "model": type(model).__module__ + "." + type(model).__name__,
            "feature_extractor": type(feature_extractor).__module__ + "." + type(feature_extractor).__name__,
            "id2label": {str(k): v for k, v in model.config.id2label.items()},
        }
    assert not any(name.split(".")[0] == "resp_audio_hf" for name in sys.modules)
    json.dump(classes, open(f"{spec['out']}/classes.json", "w"))
    """


def remote_jobs(saved) -> list[dict]:
    jobs = []
    for preset in TINY_PRESETS:
        folders = saved["presets"][preset]["folders"]
        jobs.append(dict(name=f"{preset}-base", auto_class="AutoModel", source=str(folders["base"])))
        jobs.append(
            dict(name=f"{preset}-cls", auto_class="AutoModelForAudioClassification", source=str(folders["cls"]))
        )
        jobs.append(
            dict(
                name=f"{preset}-hub",
                auto_class="AutoModelForAudioClassification",
                source=hub_id(preset),
                cache_dir=str(saved["hub_cache"]),
            )
        )
    return jobs


@pytest.fixture(scope="module")
def remote_run(saved, input_clips, tmp_path_factory):
    work = tmp_path_factory.mktemp("remote")
    np.savez(work / "inputs.npz", **{f"clip{i}": clip for i, clip in enumerate(input_clips)})
    (work / "out").mkdir()
    spec = dict(
        inputs=str(work / "inputs.npz"), out=str(work / "out"), sampling_rate=INPUT_RATE, jobs=remote_jobs(saved)
    )
    (work / "spec.json").write_text(json.dumps(spec))
    result = run_without_package(REMOTE_SCRIPT, work / "spec.json", cwd=work, timeout=300)
    assert result.returncode == 0, f"remote-code process failed:\n{result.stdout}\n{result.stderr[-6000:]}"
    return dict(out=work / "out", classes=json.loads((work / "out" / "classes.json").read_text()))


@pytest.mark.parametrize("preset", TINY_PRESETS)
@pytest.mark.parametrize("kind", ("base", "cls", "hub"))
def test_remote_code_without_package_gives_identical_outputs(saved, remote_run, preset, kind):
    name = f"{preset}-{kind}"
    classes = remote_run["classes"][name]
    # Loaded from the folder's own copy of the code, not from an installed package.
    assert classes["model"].startswith("transformers_modules.")
    assert classes["feature_extractor"].startswith("transformers_modules.")
    expected_class = "RespAudioModel" if kind == "base" else "RespAudioForAudioClassification"
    assert classes["model"].endswith("." + expected_class)
    assert classes["feature_extractor"].endswith(".RespAudioFeatureExtractor")
    if kind != "base":
        assert classes["id2label"] == {str(k): v for k, v in ID2LABEL.items()}

    with np.load(remote_run["out"] / f"{name}.npz") as remote:
        actual = {key: remote[key] for key in remote.files}
    expected = saved["presets"][preset]["expected"]["base" if kind == "base" else "cls"]
    assert_outputs_equal(actual, expected)
