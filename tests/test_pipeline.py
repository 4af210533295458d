"""`pipeline("audio-classification")` on a saved RespAudio classifier: arrays, dicts at any rate, real files, top_k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio.functional as audio_functional
from _audio_helpers import covid19_cough_file, load_audio, sprsound_records
from transformers import pipeline
from transformers.pipelines.audio_classification import ffmpeg_read

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioForAudioClassification

ID2LABEL = {0: "Normal", 1: "CAS", 2: "DAS", 3: "CAS & DAS"}
FAMILIES = ("tiny-passt", "tiny-m2d")  # 32 kHz and 16 kHz front ends
# A file decoded by the pipeline (ffmpeg, resampled by libswresample, MP3 end padding kept) against torchcodec +
# torchaudio's resampler: measured score differences up to 1e-2 on these recordings with the sharpened heads.
FILE_SCORE_ATOL = 2e-2


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def classifier_dirs(tmp_path_factory) -> dict[str, object]:
    """A random classifier per family, saved with its feature extractor, with logits scaled so scores are far apart."""
    root = tmp_path_factory.mktemp("pipeline_models")
    folders = {}
    for seed, family in enumerate(FAMILIES):
        torch.manual_seed(seed)
        config = RespAudioConfig.from_preset(family, id2label=ID2LABEL)
        model = RespAudioForAudioClassification(config).eval()
        with torch.no_grad():
            # A random tiny head gives near-uniform scores; sharper ones make score comparisons discriminative.
            model.classifier.dense.weight.mul_(10.0)
        model.save_pretrained(root / family)
        RespAudioFeatureExtractor.from_model_config(config).save_pretrained(root / family)
        folders[family] = root / family
    return folders


@pytest.fixture(scope="module")
def classifiers(classifier_dirs):
    return {family: pipeline("audio-classification", model=str(folder)) for family, folder in classifier_dirs.items()}


@pytest.fixture(scope="module")
def sprsound_wav():
    return sprsound_records()[0][0]


def manual_scores(classifier, audio: np.ndarray, rate: int) -> dict[str, float]:
    """Reference: torchaudio resampling, the feature extractor, the model and a softmax, outside the pipeline."""
    feature_extractor, model = classifier.feature_extractor, classifier.model
    waveform = torch.tensor(audio, dtype=torch.float32)  # a copy: decoded audio may be a read-only buffer
    if rate != feature_extractor.sampling_rate:
        waveform = audio_functional.resample(waveform, rate, feature_extractor.sampling_rate)
    features = feature_extractor(waveform.numpy(), sampling_rate=feature_extractor.sampling_rate, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**features).logits[0].softmax(-1)
    return {model.config.id2label[index]: float(p) for index, p in enumerate(probabilities)}


def as_scores(results: list[dict]) -> dict[str, float]:
    labels = [result["label"] for result in results]
    assert len(labels) == len(set(labels))
    return {result["label"]: result["score"] for result in results}


def assert_scores_close(results: list[dict], expected: dict[str, float], atol: float):
    scores = as_scores(results)
    assert set(scores) == set(expected)
    for label in expected:
        assert scores[label] == pytest.approx(expected[label], abs=atol), label


def test_pipeline_loads_our_classes(classifiers):
    for classifier in classifiers.values():
        assert type(classifier.model) is RespAudioForAudioClassification
        assert type(classifier.feature_extractor) is RespAudioFeatureExtractor


@pytest.mark.parametrize("family", FAMILIES)
def test_bare_array_is_taken_at_the_model_rate(classifiers, family, sprsound_wav):
    classifier = classifiers[family]
    model_rate = classifier.feature_extractor.sampling_rate
    at_model_rate, _ = load_audio(sprsound_wav, sampling_rate=model_rate)
    results = classifier(at_model_rate, top_k=None)
    assert_scores_close(results, manual_scores(classifier, at_model_rate, model_rate), atol=1e-6)

    # An 8 kHz array passed bare is read as model-rate audio (as transformers does), not resampled.
    at_8k, _ = load_audio(sprsound_wav)
    bare = classifier(at_8k, top_k=None)
    assert_scores_close(bare, manual_scores(classifier, at_8k, model_rate), atol=1e-6)
    resampled = manual_scores(classifier, at_8k, 8000)
    assert max(abs(score - resampled[label]) for label, score in as_scores(bare).items()) > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rate", (8000, 16000, 44100))
@pytest.mark.parametrize("key", ("array", "raw"))
def test_dict_input_is_resampled(classifiers, family, rate, key, sprsound_wav):
    classifier = classifiers[family]
    # Real recordings at each rate: SPRSound at its native 8 kHz or decoded to 16 kHz, a 48 kHz cough at 44.1 kHz.
    source = covid19_cough_file(native_rate=48000) if rate == 44100 else sprsound_wav
    audio, decoded_rate = load_audio(source, sampling_rate=rate)
    assert decoded_rate == rate
    results = classifier({key: audio, "sampling_rate": rate}, top_k=None)
    assert_scores_close(results, manual_scores(classifier, audio, rate), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("recording", ("sprsound-wav-8k", "cough-mp3-48k", "cough-mp3-8k"))
def test_file_path_of_real_recording(classifiers, family, recording, sprsound_wav):
    classifier = classifiers[family]
    path = {
        "sprsound-wav-8k": lambda: sprsound_wav,
        "cough-mp3-48k": lambda: covid19_cough_file(native_rate=48000),
        "cough-mp3-8k": lambda: covid19_cough_file(native_rate=8000),
    }[recording]()
    results = classifier(str(path), top_k=None)
    model_rate = classifier.feature_extractor.sampling_rate
    # Exactly what the feature extractor and model give on the pipeline's own decode (ffmpeg at the model rate)...
    decoded = ffmpeg_read(path.read_bytes(), model_rate)
    assert_scores_close(results, manual_scores(classifier, decoded, model_rate), atol=1e-6)
    # ...and, up to the resampler and the MP3 end padding ffmpeg keeps, what an independent decode gives: torchcodec
    # at the file's own rate, then torchaudio's resampler.
    audio, rate = load_audio(path)
    independent = manual_scores(classifier, audio, rate)
    assert_scores_close(results, independent, atol=FILE_SCORE_ATOL)
    assert results[0]["label"] == max(independent, key=independent.get)
    # The file's bytes go the same way as its path.
    assert classifier(path.read_bytes(), top_k=None) == results


def test_top_k_and_labels(classifiers, sprsound_wav):
    classifier = classifiers["tiny-passt"]
    audio, rate = load_audio(sprsound_wav)
    inputs = {"array": audio, "sampling_rate": rate}
    expected = manual_scores(classifier, audio, rate)
    ranked = sorted(expected, key=expected.get, reverse=True)

    everything = classifier(inputs, top_k=None)
    assert [result["label"] for result in everything] == ranked
    assert {result["label"] for result in everything} == set(ID2LABEL.values())
    assert sum(result["score"] for result in everything) == pytest.approx(1.0, abs=1e-5)

    for top_k in (1, 2):
        results = classifier(inputs, top_k=top_k)
        assert [result["label"] for result in results] == ranked[:top_k]
    # More than there are labels, or the default of 5, returns every label once.
    assert [result["label"] for result in classifier(inputs, top_k=10)] == ranked
    assert [result["label"] for result in classifier(inputs)] == ranked


def test_batch_of_inputs_matches_single_calls(classifiers, sprsound_wav):
    classifier = classifiers["tiny-m2d"]
    first, rate = load_audio(sprsound_wav)
    second, _ = load_audio(sprsound_records()[1][0])
    inputs = [{"array": first, "sampling_rate": rate}, {"array": second[: 3 * rate], "sampling_rate": rate}]
    batched = classifier(inputs, top_k=None)
    assert len(batched) == 2
    for results, single in zip(batched, inputs):
        assert_scores_close(results, as_scores(classifier(single, top_k=None)), atol=1e-6)
