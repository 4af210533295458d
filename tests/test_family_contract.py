"""
The family contract, run for every record of `MODEL_FAMILIES` (as transformers' `ModelTesterMixin` runs for every
model): load through the Auto classes, save and reload, load the saved folder as remote code without the package,
every pooling its model type offers, the classifier, conversion where the family's module converts a model of our
own, and staging for the Hub. A family added to the table is tested without editing this file.
"""

from __future__ import annotations

import json

import pytest
import torch
from _remote_code_helpers import run_without_package
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification
from transformers.dynamic_module_utils import get_relative_import_files

import resp_audio_hf
from resp_audio_hf import MODEL_FAMILIES, MODEL_TYPES, PRESETS, RespAudioFeatureExtractor, find_model_type
from resp_audio_hf.convert import CONVERTERS
from resp_audio_hf.pooling import POOLINGS

FAMILIES = sorted(MODEL_FAMILIES)
PACKAGE = resp_audio_hf.__path__[0]


def tiny_config(family: str, **fields):
    """The family's tiny preset, or for a family without presets its configuration class at a small width."""
    record = MODEL_FAMILIES[family]
    tiny = [name for name in record.presets if name.startswith("tiny-")]
    if tiny:
        return record.model.config_class(**{**PRESETS[tiny[0]], **fields})
    return record.model.config_class(width_multiplier=0.1, **fields)


def clips(sampling_rate: int) -> list:
    generator = torch.Generator().manual_seed(0)
    return [0.1 * torch.randn(int(seconds * sampling_rate), generator=generator).numpy() for seconds in (2.3, 1.1)]


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


def test_every_family_has_a_model_type_a_converter_and_its_poolings_among_poolings(family):
    record = MODEL_FAMILIES[family]
    assert record.model is find_model_type(record.model_type) is find_model_type(tiny_config(family))
    assert CONVERTERS[family].__name__ == record.converter
    assert set(record.model.poolings) <= set(POOLINGS)


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_remote_code_files_are_exactly_what_the_saved_modules_import(model_type):
    """The record lists every module the Auto classes' modules import, transitively, and nothing else."""
    record = MODEL_TYPES[model_type]
    modules = {reference.rsplit(".", 1)[0] for reference in record.auto_classes.values()} | {"pipeline_resp_audio"}
    needed = set()
    for module in modules:
        needed.add(f"{module}.py")
        needed |= {path.rsplit("/", 1)[-1] for path in get_relative_import_files(f"{PACKAGE}/{module}.py")}
    assert needed == set(record.remote_code_files)


def test_load_save_reload_pool_and_classify(family, tmp_path):
    config = tiny_config(family, num_labels=3)
    record = find_model_type(config)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    torch.manual_seed(0)
    classifier = record.classifier_class(config).eval()
    classifier.save_pretrained(tmp_path)
    feature_extractor.save_pretrained(tmp_path)
    inputs = feature_extractor(clips(feature_extractor.sampling_rate), sampling_rate=feature_extractor.sampling_rate,
                               return_tensors="pt")
    reloaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is record.classifier_class and type(AutoConfig.from_pretrained(tmp_path)) is type(config)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, classifier(**inputs).logits, atol=0, rtol=0)
        pooled = {}
        for pooling in record.poolings:
            encoder = AutoModel.from_pretrained(tmp_path, pooling=pooling).eval()
            assert type(encoder) is record.base_model_class
            pooled[pooling] = encoder(**inputs).pooler_output
            assert pooled[pooling].shape == (2, encoder.config.pooled_size)
            assert bool(torch.isfinite(pooled[pooling]).all())
    rows = pooled["freq_preserving"].reshape(2, config.num_frequency_rows, -1)
    torch.testing.assert_close(pooled["mean"], rows.mean(dim=1), atol=1e-6, rtol=1e-5)
    for pooling in set(POOLINGS) - set(record.poolings):
        with pytest.raises(ValueError, match="pooling must be one of"):
            type(config)(**{**config.to_diff_dict(), "pooling": pooling})


def test_inputs_are_checked_in_every_family(family):
    config = tiny_config(family)
    model = find_model_type(config).base_model_class(config).eval()
    frames = torch.zeros(2, 400, config.num_mel_bins)
    with pytest.raises(ValueError, match="log-mel frames"):
        model(torch.zeros(2, 400, config.num_mel_bins + 1))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(frames, attention_mask=torch.ones(2, 399, dtype=torch.long))
    frames[1, 7, 3] = float("nan")
    with pytest.raises(ValueError, match=r"clip\(s\) \[1\] contain 1 NaN"):
        model(frames)


def test_remote_code_loads_without_the_package(family, tmp_path):
    from resp_audio_hf.hub.staging import save_with_remote_code

    config = tiny_config(family, num_labels=3)
    record = find_model_type(config)
    torch.manual_seed(0)
    classifier = record.classifier_class(config).eval()
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    save_with_remote_code(classifier, feature_extractor, tmp_path)
    saved = {path.name for path in tmp_path.glob("*.py")}
    assert saved == set(record.remote_code_files)
    audio = clips(feature_extractor.sampling_rate)[0]
    script = f"""
import json, numpy, torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification
fe = AutoFeatureExtractor.from_pretrained({str(tmp_path)!r}, trust_remote_code=True)
model = AutoModelForAudioClassification.from_pretrained({str(tmp_path)!r}, trust_remote_code=True).eval()
audio = numpy.load({str(tmp_path / "clip.npy")!r})
with torch.no_grad():
    print(json.dumps(model(**fe(audio, sampling_rate=fe.sampling_rate, return_tensors="pt")).logits.tolist()))
"""
    import numpy as np

    np.save(tmp_path / "clip.npy", audio)
    completed = run_without_package(script, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads(completed.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = classifier(**feature_extractor(audio, sampling_rate=feature_extractor.sampling_rate,
                                                  return_tensors="pt")).logits
    torch.testing.assert_close(torch.tensor(remote), expected, atol=1e-5, rtol=1e-4)
