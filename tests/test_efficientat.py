"""
EfficientAT `mn04_as` (pretrained/efficientat-mn04-as): fidelity to EfficientAT's own code on real clips, the Auto
classes, remote code, pooling, padding, the converter and the audio-classification pipeline on real coughs.

The expected outputs in fixtures/efficientat/expected_values.json were computed once with EfficientAT's own code
(`AugmentMelSTFT` + `get_model(width_mult=0.4)` on the original `mn04_as_mAP_432.pt`, SHA-256 899a8c62...), which
cannot be part of this repository, by

    python tests/fixtures/efficientat/make_expected_values.py --efficientat-dir /work/data/ext/efficientat

(the MIT snapshot of nikih94/swch-audio-classification, torch 2.14.1 on CPU); see that script's docstring. The bundled
`speech.wav` is that snapshot's MIT sample clip; the SPRSound and cough clips come from ../shared/data; the music and
typing sample clips are checked where the snapshot is present (EFFICIENTAT_DIR, default /work/data/ext/efficientat).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _audio_helpers import COVID19_COUGH_DIR, DATA_ROOT, load_audio, require_dir
from _paths import MN04_DIR, REPO_ROOT
from _remote_code_helpers import run_without_package
from safetensors.torch import load_file
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification, pipeline

import resp_audio_hf  # noqa: F401  (registers the efficientat model type)
from resp_audio_hf import (
    EfficientATConfig,
    EfficientATForAudioClassification,
    EfficientATModel,
    RespAudioFeatureExtractor,
)
from resp_audio_hf.convert import convert_efficientat, read_audioset_labels

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "efficientat"
EXPECTED = json.loads((FIXTURES / "expected_values.json").read_text())["clips"]
EFFICIENTAT_DIR = Path(os.environ.get("EFFICIENTAT_DIR", "/work/data/ext/efficientat"))
CHECKPOINT = EFFICIENTAT_DIR / "resources" / "mn04_as_mAP_432.pt"
TOLERANCE = 1e-4
NUM_COUGHS = 40


def clip_file(entry: dict) -> Path:
    if entry["where"] == "fixture":
        return FIXTURES / entry["path"]
    if entry["where"] == "shared":
        path = DATA_ROOT / entry["path"]
        require_dir(path.parent)
        return path
    path = EFFICIENTAT_DIR / entry["path"]
    if not path.is_file():
        pytest.skip(f"EfficientAT sample clip {path} is absent (set EFFICIENTAT_DIR to the snapshot)")
    return path


@pytest.fixture(scope="module")
def feature_extractor():
    return AutoFeatureExtractor.from_pretrained(MN04_DIR)


@pytest.fixture(scope="module")
def classifier():
    return AutoModelForAudioClassification.from_pretrained(MN04_DIR).eval()


@pytest.fixture(scope="module")
def encoders():
    """The converted encoder with each pooling."""
    return {
        pooling: AutoModel.from_pretrained(MN04_DIR, pooling=pooling).eval() for pooling in ("freq_preserving", "mean")
    }


def assert_summary(values: np.ndarray, expected: dict, what: str):
    np.testing.assert_allclose(values.ravel()[:8], expected["first"], atol=TOLERANCE, err_msg=what)
    # Sums of up to 10^5 float32 values: the summation order alone moves them by ~1e-7 of their magnitude.
    slack = TOLERANCE + 1e-6 * expected["abs_sum"]
    assert abs(float(values.sum(dtype=np.float64)) - expected["sum"]) <= slack, what
    assert abs(float(np.abs(values).sum(dtype=np.float64)) - expected["abs_sum"]) <= slack, what


# --------------------------------------------------------------------------- fidelity to EfficientAT's own code


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_outputs_match_efficientat_reference(name, feature_extractor, classifier, encoders, single_torch_thread):
    entry = EXPECTED[name]
    audio, rate = load_audio(clip_file(entry))
    assert (rate, audio.size) == (entry["native_rate"], entry["num_samples"])
    inputs = feature_extractor(audio, sampling_rate=rate, return_tensors="pt")

    # The front end is EfficientAT's AugmentMelSTFT in eval mode (= PaSST's).
    spectrogram = inputs["input_values"][0].numpy()
    assert list(spectrogram.shape) == entry["spectrogram_shape"][::-1]
    assert_summary(spectrogram, entry["spectrogram"], f"{name}: spectrogram")

    with torch.no_grad():
        logits = classifier(**inputs).logits[0].numpy()
        mean = encoders["mean"](**inputs)
        freq_preserving = encoders["freq_preserving"](**inputs)
    np.testing.assert_allclose(logits, entry["logits"], atol=TOLERANCE, err_msg=f"{name}: logits")
    assert np.argsort(-logits)[:5].tolist() == entry["top5"]
    np.testing.assert_allclose(
        mean.pooler_output[0].numpy(), entry["embedding_mean"], atol=TOLERANCE, err_msg=f"{name}: embedding"
    )
    assert list(mean.last_hidden_state.shape[1:]) == entry["last_feature_map_shape"]
    assert_summary(freq_preserving.pooler_output[0].numpy(), entry["embedding_freq_preserving"], f"{name}: freq")


def test_sample_clips_are_labelled_as_efficientat_labels_them(classifier):
    """The reference's top label on the three sample clips (speech, music, typing) is what the clips are."""
    top = {name: classifier.config.id2label[entry["top5"][0]] for name, entry in EXPECTED.items()}
    assert top["speech"] == "Speech" and top["music"] == "Music"
    assert "Typing" in {classifier.config.id2label[i] for i in EXPECTED["typing"]["top5"][:2]}


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason=f"original checkpoint {CHECKPOINT} absent (set EFFICIENTAT_DIR)")
def test_converter_reproduces_the_shipped_model(tmp_path):
    """scripts/convert_checkpoint.py's conversion of the original file gives the shipped weights and config."""
    spec = importlib.util.spec_from_file_location("convert_checkpoint", REPO_ROOT / "scripts" / "convert_checkpoint.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output = tmp_path / "converted"
    labels = EFFICIENTAT_DIR / "metadata" / "class_labels_indices.csv"
    assert script.main(["--family", "efficientat", str(CHECKPOINT), str(output), "--labels", str(labels)]) == 0
    converted, shipped = load_file(output / "model.safetensors"), load_file(MN04_DIR / "model.safetensors")
    assert converted.keys() == shipped.keys()
    for key in shipped:
        assert torch.equal(converted[key], shipped[key]), key
    assert json.loads((output / "config.json").read_text()) == json.loads((MN04_DIR / "config.json").read_text())


# --------------------------------------------------------------------------- the shipped folder and the Auto classes


def test_shipped_folder_loads_through_the_auto_classes(feature_extractor, classifier):
    config = AutoConfig.from_pretrained(MN04_DIR)
    assert type(config) is EfficientATConfig and config.model_type == "efficientat"
    assert (config.width_multiplier, config.num_mel_bins, config.sampling_rate) == (0.4, 128, 32000)
    assert config.problem_type == "multi_label_classification"
    assert len(config.id2label) == 527 and config.id2label[0] == "Speech" and config.id2label[47] == "Cough"
    assert type(classifier) is EfficientATForAudioClassification
    assert 0.9e6 < classifier.num_parameters() < 1.1e6  # "about 1 M parameters"
    assert type(AutoModel.from_pretrained(MN04_DIR)) is EfficientATModel
    assert type(feature_extractor) is RespAudioFeatureExtractor
    assert (feature_extractor.frontend, feature_extractor.max_length, feature_extractor.f_max) == ("passt", 1000, 15000)
    card = (MN04_DIR / "README.md").read_text()
    assert "license: mit" in card and "Schmid" in card and "AudioSet" in card


def test_remote_code_loads_without_the_package(tmp_path, classifier, feature_extractor):
    """save_pretrained writes the remote code; a process that cannot import resp_audio_hf loads and runs it."""
    from resp_audio_hf.hub import load_without_package

    folder = tmp_path / "saved"
    classifier.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)
    for name in (
        "configuration_efficientat.py", "modeling_efficientat.py", "feature_extraction_resp_audio.py",
        "pipeline_resp_audio.py",
    ):
        assert (folder / name).is_file(), name
    saved = json.loads((folder / "config.json").read_text())
    assert saved["custom_pipelines"]["audio-classification"]["impl"] == (
        "pipeline_resp_audio.RespAudioClassificationPipeline"
    )
    assert not hasattr(classifier.config, "custom_pipelines")
    audio, rate = load_audio(FIXTURES / "speech.wav")
    clips = [audio[: 3 * rate], audio[rate : 8 * rate]]
    remote = load_without_package(folder, clips, rate)
    inputs = feature_extractor(clips, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        expected_logits = classifier(**inputs).logits
        expected = AutoModel.from_pretrained(folder)(**inputs)
    torch.testing.assert_close(remote["logits"], expected_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(remote["pooler_output"], expected.pooler_output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(remote["last_hidden_state"], expected.last_hidden_state, atol=1e-5, rtol=1e-5)


REMOTE_PIPELINE = """
import json, sys
import numpy as np
from transformers import pipeline

folder, audio_file, rate, out = sys.argv[1:5]
classifier = pipeline("audio-classification", model=folder, trust_remote_code=True)
predictions = classifier({"array": np.load(audio_file), "sampling_rate": int(rate)}, top_k=5)
json.dump({"class": type(classifier).__name__, "predictions": predictions}, open(out, "w"))
"""


def test_remote_code_pipeline_without_the_package(tmp_path, classifier, feature_extractor):
    """`pipeline(..., trust_remote_code=True)` in a process without resp_audio_hf: the package's pipeline, same scores."""
    folder = tmp_path / "saved"
    classifier.save_pretrained(folder)
    feature_extractor.save_pretrained(folder)
    audio, rate = load_audio(clip_file(EXPECTED["sprsound_first"]))  # 8 kHz: the pipeline resamples it
    np.save(tmp_path / "audio.npy", audio)
    completed = run_without_package(
        REMOTE_PIPELINE, folder, tmp_path / "audio.npy", rate, tmp_path / "out.json", cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = json.loads((tmp_path / "out.json").read_text())
    assert remote["class"] == "RespAudioClassificationPipeline"
    local = pipeline("audio-classification", model=str(MN04_DIR))({"array": audio, "sampling_rate": rate}, top_k=5)
    assert [p["label"] for p in remote["predictions"]] == [p["label"] for p in local]
    np.testing.assert_allclose([p["score"] for p in remote["predictions"]], [p["score"] for p in local], atol=1e-5)


# --------------------------------------------------------------------------- pooling and padding


def test_pooling_shapes_and_relation(feature_extractor, encoders):
    audio, rate = load_audio(FIXTURES / "speech.wav")
    inputs = feature_extractor(audio, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        freq_preserving = encoders["freq_preserving"](**inputs)
        mean = encoders["mean"](**inputs)
    assert tuple(freq_preserving.last_hidden_state.shape) == (1, 384, 4, 32)
    assert freq_preserving.pooler_output.shape == (1, 4 * 384) and mean.pooler_output.shape == (1, 384)
    assert encoders["freq_preserving"].config.pooled_size == 1536
    # Frequency rows concatenated: row f is the time mean of the feature map's frequency row f.
    rows = freq_preserving.pooler_output.reshape(1, 4, 384)
    torch.testing.assert_close(rows[:, 1], freq_preserving.last_hidden_state[:, :, 1].mean(dim=-1))
    torch.testing.assert_close(rows.mean(dim=1), mean.pooler_output, atol=1e-6, rtol=1e-5)


def test_padded_batch_gives_each_clip_its_own_output(feature_extractor, classifier, encoders):
    """A clip gets the same logits and embeddings alone as in a padded batch with longer clips."""
    speech, rate = load_audio(FIXTURES / "speech.wav")
    clips = [speech, speech[: int(2.3 * rate)], speech[rate : int(5.7 * rate)], speech[: int(2.3 * rate)]]
    batch = feature_extractor(clips, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        batched_logits = classifier(**batch).logits
        batched = encoders["freq_preserving"](**batch)
        for index, clip in enumerate(clips):
            alone = feature_extractor(clip, sampling_rate=rate, return_tensors="pt")
            torch.testing.assert_close(batched_logits[index], classifier(**alone).logits[0], atol=1e-5, rtol=1e-5)
            own = encoders["freq_preserving"](**alone)
            torch.testing.assert_close(batched.pooler_output[index], own.pooler_output[0], atol=1e-5, rtol=1e-5)
            width = own.last_hidden_state.shape[-1]
            assert int(batched.feature_time_mask[index].sum()) == width
            torch.testing.assert_close(batched.last_hidden_state[index, ..., :width], own.last_hidden_state[0])
            assert not batched.last_hidden_state[index, ..., width:].any()
        # Every intermediate map too: the stem's and the 15 blocks', each clip at its own length, zero past its end.
        batched_states = encoders["mean"](**batch, output_hidden_states=True).hidden_states
        own_states = encoders["mean"](**feature_extractor(clips[1], sampling_rate=rate, return_tensors="pt"),
                                      output_hidden_states=True).hidden_states
        assert len(batched_states) == len(own_states) == 16
        for batched_map, own_map in zip(batched_states, own_states):
            width = own_map.shape[-1]
            torch.testing.assert_close(batched_map[1, ..., :width], own_map[0], atol=1e-5, rtol=1e-5)
            assert not batched_map[1, ..., width:].any()


def test_invalid_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="pooling must be one of"):
        EfficientATConfig(pooling="cls")
    with pytest.raises(ValueError, match="stage_strides"):
        EfficientATConfig(stage_strides=(2, 2, 3, 2))
    model = EfficientATModel(EfficientATConfig(width_multiplier=0.1)).eval()
    with pytest.raises(ValueError, match=r"\[batch, frames, 128\]"):
        model(torch.zeros(1, 128, 100))


# --------------------------------------------------------------------------- training, saving, converter errors


def test_fresh_model_round_trip_and_multilabel_loss(tmp_path):
    torch.manual_seed(0)
    config = EfficientATConfig(width_multiplier=0.1, num_labels=3, problem_type="multi_label_classification")
    model = EfficientATForAudioClassification(config).eval()
    model.save_pretrained(tmp_path)
    reloaded = EfficientATForAudioClassification.from_pretrained(tmp_path).eval()
    for key, value in model.state_dict().items():  # BatchNorm buffers included
        assert torch.equal(value, reloaded.state_dict()[key]), key
    inputs = torch.randn(2, 120, 128)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    output = reloaded(inputs, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, labels)
    torch.testing.assert_close(output.loss, expected)
    output.loss.backward()
    assert reloaded.efficientat.stem.convolution.weight.grad is not None


def test_converter_refuses_other_layouts():
    with pytest.raises(ValueError, match="Not an EfficientAT"):
        convert_efficientat({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)})
    almost = {"features.0.0.weight": torch.zeros(8, 1, 3, 3), "features.1.block.0.0.weight": torch.zeros(8, 1, 3, 3)}
    with pytest.raises(ValueError, match="fit none of EfficientAT's MobileNet widths"):
        convert_efficientat(dict(almost))
    with pytest.raises(ValueError, match="Unexpected keys"):
        convert_efficientat({**almost, "features.1.block.0.7.weight": torch.zeros(1)}, width_multiplier=0.4)
    with pytest.raises(ValueError, match="do not fit EfficientATModel"):
        convert_efficientat(dict(almost), width_multiplier=0.4, with_head=False)


def test_audioset_labels_reader(tmp_path):
    path = tmp_path / "class_labels_indices.csv"
    path.write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n1,/m/05zppz,"Male speech, man speaking"\n')
    assert read_audioset_labels(path) == {0: "Speech", 1: "Male speech, man speaking"}
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="class_labels_indices"):
        read_audioset_labels(tmp_path / "other.csv")


# --------------------------------------------------------------------------- pipeline and benchmark on real coughs


def test_pipeline_ranks_cough_in_top3_for_most_real_coughs(hub_offline):
    """The first 40 (by name) CC0 coughs of ../shared/data/covid19-cough, decoded by the pipeline (FFmpeg)."""
    paths = sorted((require_dir(COVID19_COUGH_DIR) / "raw").glob("*.mp3"))[:NUM_COUGHS]
    assert len(paths) == NUM_COUGHS
    classifier = pipeline("audio-classification", model=str(MN04_DIR))
    hits = [any(p["label"] == "Cough" for p in classifier(str(path), top_k=3)) for path in paths]
    assert sum(hits) / len(hits) > 0.5, f"Cough in the top 3 for only {sum(hits)} of {len(hits)} coughs"


def test_benchmark_encoder_uses_the_configured_pooling():
    from resp_audio_hf.extraction import AudioEncoder

    encoder = AudioEncoder.from_pretrained(str(MN04_DIR))
    audio, rate = load_audio(FIXTURES / "speech.wav", sampling_rate=encoder.sampling_rate)
    embeddings = encoder.embed(encoder.featurize([audio[: 2 * rate], audio]))
    assert embeddings.shape == (2, 4 * 384) and np.isfinite(embeddings).all()


def test_benchmark_pooling_override_selects_efficientat_own_embedding():
    """`resp-audio-hf bench --pooling mean` on this model gives EfficientAT's own (mean) embedding."""
    from resp_audio_hf.extraction import AudioEncoder

    encoder = AudioEncoder.from_pretrained(str(MN04_DIR), pooling="mean")
    assert encoder.pooling == "mean"
    audio, rate = load_audio(FIXTURES / "speech.wav", sampling_rate=encoder.sampling_rate)
    (embedding,) = encoder.embed(encoder.featurize([audio]))
    np.testing.assert_allclose(embedding, EXPECTED["speech"]["embedding_mean"], atol=TOLERANCE)
    with pytest.raises(ValueError, match="pooling must be one of"):
        AudioEncoder.from_pretrained(str(MN04_DIR), pooling="cls")
