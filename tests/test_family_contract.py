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


def test_the_head_reads_what_the_record_says(family, tmp_path):
    """`head_reads_pooler_output`: the head's input is `pooler_output`, or else a representation of its own that no
    pooling changes (the logits stay the same whatever `config.pooling`)."""
    config = tiny_config(family, num_labels=3)
    record = find_model_type(config)
    torch.manual_seed(0)
    record.classifier_class(config).save_pretrained(tmp_path)
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    inputs = feature_extractor(clips(feature_extractor.sampling_rate), sampling_rate=feature_extractor.sampling_rate,
                               return_tensors="pt")
    logits = {}
    for pooling in record.poolings if not record.head_reads_pooler_output else (config.pooling,):
        classifier = record.classifier_class.from_pretrained(tmp_path, pooling=pooling).eval()
        seen = []
        classifier.classifier.register_forward_hook(lambda module, args, output, seen=seen: seen.append(args[0]))
        with torch.no_grad():
            logits[pooling] = classifier(**inputs).logits
            pooled = classifier.base_model(**inputs).pooler_output
        if record.head_reads_pooler_output:
            torch.testing.assert_close(seen[0], pooled, atol=0, rtol=0)
    for other in logits.values():
        torch.testing.assert_close(other, logits[config.pooling], atol=0, rtol=0)


def test_return_dict_false_gives_the_outputs_fields_as_a_tuple(family):
    """As every transformers model: `return_dict=False` (or `config.return_dict = False`) gives the output's non-None
    fields in order, and the classifier puts the loss first when labels are given."""
    config = tiny_config(family, num_labels=3)
    record = find_model_type(config)
    torch.manual_seed(0)
    classifier = record.classifier_class(config).eval()
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    inputs = feature_extractor(clips(feature_extractor.sampling_rate), sampling_rate=feature_extractor.sampling_rate,
                               return_tensors="pt")
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        encoder_output = classifier.base_model(**inputs, output_hidden_states=True)
        encoder_tuple = classifier.base_model(**inputs, output_hidden_states=True, return_dict=False)
        classified = classifier(**inputs, labels=labels)
        classified_tuple = classifier(**inputs, labels=labels, return_dict=False)
        classifier.config.return_dict = False
        logits_only = classifier(**inputs)
    assert isinstance(encoder_tuple, tuple) and len(encoder_tuple) == 4
    for field, value in zip(("last_hidden_state", "pooler_output", "feature_time_mask"), encoder_tuple):
        torch.testing.assert_close(value, encoder_output[field], atol=0, rtol=0)
    assert len(encoder_tuple[3]) == len(encoder_output.hidden_states)
    torch.testing.assert_close(classified_tuple[0], classified.loss, atol=0, rtol=0)
    torch.testing.assert_close(classified_tuple[1], classified.logits, atol=0, rtol=0)
    assert isinstance(logits_only, tuple) and len(logits_only) == 1
    torch.testing.assert_close(logits_only[0], classified.logits, atol=0, rtol=0)


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


# --------------------------------------------------------------------------- conversion and staging


def _m2d_source(tmp_path):
    pytest.importorskip("timm")
    from test_fidelity_m2d import HEADS, make_fake_m2d_checkpoint

    return make_fake_m2d_checkpoint(tmp_path / "m2d")[1], {"num_attention_heads": HEADS}


def _passt_source(tmp_path):
    pytest.importorskip("hear21passt")
    import test_fidelity_passt as passt

    with passt.quiet():
        torch.manual_seed(0)
        net = passt.hear21passt_passt.get_model(
            arch="passt_s_swa_p16_128_ap476", pretrained=False, input_tdim=passt.INPUT_FRAMES
        )
    net.blocks = net.blocks[: passt.NUM_LAYERS]
    passt.perturb_(net, seed=1)
    return net.eval().state_dict(), {}


def _ast_source(tmp_path):
    from test_fidelity_ast import FRAMES, SMALL, randomize_
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(**SMALL, num_labels=3, id2label={i: f"sound {i}" for i in range(3)})
    randomize_(ASTForAudioClassification(config), seed=0).save_pretrained(tmp_path / "ast")
    ASTFeatureExtractor(max_length=FRAMES).save_pretrained(tmp_path / "ast")
    return tmp_path / "ast", {}


def _efficientat_source(tmp_path):
    """A random `mn01` classifier written back in EfficientAT's own layout (the converter's tables read backwards)."""
    from resp_audio_hf.convert.efficientat import EFFICIENTAT_HEAD, efficientat_renames

    config = MODEL_TYPES["efficientat"].config_class(width_multiplier=0.1, num_labels=5)
    torch.manual_seed(0)
    model = MODEL_TYPES["efficientat"].classifier_class(config)
    renames = efficientat_renames(config) + EFFICIENTAT_HEAD.renames
    original = {}
    for key, value in model.state_dict().items():
        key = key.removeprefix(f"{model.base_model_prefix}.")
        pattern, replacement = next((p, r) for p, r in renames if key.startswith(r))
        original[pattern.lstrip("^").replace("\\.", ".") + key[len(replacement):]] = value
    return original, {}


# The tests' own source of each family's original checkpoints; a family without one is skipped.
SOURCES = {"m2d": _m2d_source, "passt": _passt_source, "ast": _ast_source, "efficientat": _efficientat_source}


@pytest.fixture
def converted_folder(family, tmp_path):
    """The family's converter run on its source, saved with `save_converted`: `(converted, folder)`."""
    from resp_audio_hf.convert import save_converted

    if family not in SOURCES:
        pytest.skip(f"no {family} source among the tests' fixtures")
    source, options = SOURCES[family](tmp_path)
    converted = CONVERTERS[family](source, **options)
    return converted, save_converted(converted, tmp_path / "converted")


def test_converter_builds_the_family_model_and_its_folder_reloads(family, converted_folder):
    converted, folder = converted_folder
    record = MODEL_FAMILIES[family].model
    assert type(converted.model) in (record.base_model_class, record.classifier_class)
    assert converted.feature_extractor.to_dict() == RespAudioFeatureExtractor.from_pretrained(folder).to_dict()
    reloaded = AutoModel.from_pretrained(folder).eval()
    feature_extractor = converted.feature_extractor
    inputs = feature_extractor(clips(feature_extractor.sampling_rate), sampling_rate=feature_extractor.sampling_rate,
                               return_tensors="pt")
    with torch.no_grad():
        expected = converted.model.base_model(**inputs).pooler_output
        torch.testing.assert_close(reloaded(**inputs).pooler_output, expected, atol=0, rtol=0)


def test_converted_folder_stages_for_the_hub(family, converted_folder, tmp_path):
    """Every family's folder stages: its record's remote code, a card (the template, or the folder's own README.md
    for a family without one) and the in-process reload check."""
    from resp_audio_hf.hub import stage_for_hub

    _, folder = converted_folder
    if MODEL_FAMILIES[family].card is None:
        (folder / "README.md").write_text(f"# {family}\n\nA converted {family} model.\n")
    staged = stage_for_hub(folder, tmp_path / "staged", f"org/{family}", check_remote_code=False)
    expected = {"config.json", "model.safetensors", "preprocessor_config.json", "README.md",
                *MODEL_FAMILIES[family].model.remote_code_files}
    assert set(staged.files) == expected
