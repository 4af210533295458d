"""`pipeline("audio-classification")` on a saved RespAudio classifier: arrays, dicts at any rate, real files, top_k."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio.functional as audio_functional
from _audio_helpers import covid19_cough_file, decode_channel_mean, load_audio, sprsound_records
from _data_helpers import loopback_server
from _preset_helpers import ONE_TINY_PRESET_PER_RATE
from _remote_code_helpers import run_without_package
from transformers import pipeline

import resp_audio_hf
from resp_audio_hf import (
    RespAudioClassificationPipeline,
    RespAudioConfig,
    RespAudioFeatureExtractor,
    RespAudioForAudioClassification,
)

ID2LABEL = {0: "Normal", 1: "CAS", 2: "DAS", 3: "CAS & DAS"}
# A file decoded by the pipeline (torchcodec, resampled by libswresample) against torchcodec at the file's rate +
# torchaudio's resampler: the two resamplers' samples differ by up to 1e-2 on the 8 kHz MP3 cough, which the sharpened
# heads turn into score differences up to 2.1e-2 (FFmpeg's command line, the decoder before, padded the MP3's end
# and happened to land within 1e-2).
FILE_SCORE_ATOL = 3e-2


pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def classifier_dirs(tmp_path_factory) -> dict[str, object]:
    """A random classifier per preset, saved with its feature extractor, with logits scaled so scores are far apart."""
    root = tmp_path_factory.mktemp("pipeline_models")
    folders = {}
    for seed, preset in enumerate(ONE_TINY_PRESET_PER_RATE):
        torch.manual_seed(seed)
        config = RespAudioConfig.from_preset(preset, id2label=ID2LABEL)
        model = RespAudioForAudioClassification(config).eval()
        with torch.no_grad():
            # A random tiny head gives near-uniform scores; sharper ones make score comparisons discriminative.
            model.classifier.dense.weight.mul_(10.0)
        model.save_pretrained(root / preset)
        RespAudioFeatureExtractor.from_model_config(config).save_pretrained(root / preset)
        folders[preset] = root / preset
    return folders


@pytest.fixture(scope="module")
def classifiers(classifier_dirs):
    return {preset: pipeline("audio-classification", model=str(folder)) for preset, folder in classifier_dirs.items()}


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
        assert type(classifier) is RespAudioClassificationPipeline
        assert type(classifier.model) is RespAudioForAudioClassification
        assert type(classifier.feature_extractor) is RespAudioFeatureExtractor


@pytest.mark.parametrize("preset", ONE_TINY_PRESET_PER_RATE)
def test_bare_array_is_taken_at_the_model_rate(classifiers, preset, sprsound_wav):
    classifier = classifiers[preset]
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


@pytest.mark.parametrize("preset", ONE_TINY_PRESET_PER_RATE)
@pytest.mark.parametrize("rate", (8000, 16000, 44100))
@pytest.mark.parametrize("key", ("array", "raw"))
def test_dict_input_is_resampled(classifiers, preset, rate, key, sprsound_wav):
    classifier = classifiers[preset]
    # Real recordings at each rate: SPRSound at its native 8 kHz or decoded to 16 kHz, a 48 kHz cough at 44.1 kHz.
    source = covid19_cough_file(native_rate=48000) if rate == 44100 else sprsound_wav
    audio, decoded_rate = load_audio(source, sampling_rate=rate)
    assert decoded_rate == rate
    results = classifier({key: audio, "sampling_rate": rate}, top_k=None)
    assert_scores_close(results, manual_scores(classifier, audio, rate), atol=1e-6)


@pytest.mark.parametrize("preset", ONE_TINY_PRESET_PER_RATE)
@pytest.mark.parametrize("recording", ("sprsound-wav-8k", "cough-mp3-48k", "cough-mp3-8k"))
def test_file_path_of_real_recording(classifiers, preset, recording, sprsound_wav):
    classifier = classifiers[preset]
    path = {
        "sprsound-wav-8k": lambda: sprsound_wav,
        "cough-mp3-48k": lambda: covid19_cough_file(native_rate=48000),
        "cough-mp3-8k": lambda: covid19_cough_file(native_rate=8000),
    }[recording]()
    results = classifier(str(path), top_k=None)
    model_rate = classifier.feature_extractor.sampling_rate
    # Exactly what the feature extractor and model give on the decode of `bench` and `embed` (torchcodec at the
    # model's rate): one file, one set of features, whichever way it goes in...
    from resp_audio_hf.data.audio import load_audio as bench_decode

    decoded, _ = bench_decode(path, model_rate)
    assert_scores_close(results, manual_scores(classifier, decoded, model_rate), atol=1e-6)
    # ...and, up to the resampler and the MP3 end padding ffmpeg keeps, what an independent decode gives: torchcodec
    # at the file's own rate, channels averaged, then torchaudio's resampler.
    audio, rate = decode_channel_mean(path)
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


# ---------------------------------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        # Before: torchaudio's resampler failed on both (a kernel of size 0, an integer tensor).
        ({"array": np.zeros(0, dtype=np.float32), "sampling_rate": 8000}, ValueError, "empty"),
        ({"array": np.zeros(0, dtype=np.int16), "sampling_rate": 8000}, ValueError, "empty"),
        # Before: resampled from 999 Hz without a word, though the feature extractor refuses that rate.
        ({"array": np.ones(999, dtype=np.float32), "sampling_rate": 999}, ValueError, "999 is not a plausible"),
        ({"array": np.zeros(8000, dtype=np.float32), "sampling_rate": 8000}, ValueError, "silent"),
        ({"array": np.full(8000, np.nan, dtype=np.float32), "sampling_rate": 8000}, ValueError, "NaN"),
        ({"audio": np.ones(8000), "sampling_rate": 8000}, ValueError, r"\['audio', 'sampling_rate'\]"),
        (np.ones((6, 16000), dtype=np.float32), ValueError, "6 channels"),
        (np.ones((16000, 6), dtype=np.float32), ValueError, "6 channels"),
        (np.ones((2, 2, 16000), dtype=np.float32), ValueError, "shape"),
    ],
)
def test_bad_arrays_fail_on_the_package_checks(classifiers, inputs, error, message):
    with pytest.raises(error, match=message):
        classifiers["tiny-passt"](inputs)


def test_int16_at_another_rate_equals_its_float_samples(classifiers, sprsound_wav):
    """Integer PCM at 8 kHz (which failed inside torchaudio) is scaled by 32768, then resampled."""
    classifier = classifiers["tiny-passt"]
    audio, rate = load_audio(sprsound_wav)
    pcm = np.round(audio * 32767).astype(np.int16)
    results = classifier({"array": pcm, "sampling_rate": rate}, top_k=None)
    assert_scores_close(results, manual_scores(classifier, pcm.astype(np.float32) / 32768, rate), atol=1e-6)


def test_uint8_equals_its_centred_float_samples(classifiers, sprsound_wav):
    """Unsigned 8-bit PCM is centred on 128 (which a bare 1/255 scaling made 6 dB quieter and moved the top label)."""
    classifier = classifiers["tiny-passt"]
    audio, rate = load_audio(sprsound_wav)
    pcm = (np.round(audio * 127) + 128).astype(np.uint8)
    results = classifier({"array": pcm, "sampling_rate": rate}, top_k=None)
    centred = (pcm.astype(np.float32) - 128) / 128
    assert_scores_close(results, manual_scores(classifier, centred, rate), atol=1e-6)


def test_soundfile_layout_is_downmixed(classifiers, sprsound_wav):
    """A stereo array, `(frames, 2)` as soundfile.read returns it or `(2, frames)`, is one clip (the stock pipeline
    refused both)."""
    classifier = classifiers["tiny-m2d"]
    left, rate = load_audio(sprsound_wav)
    right, _ = load_audio(sprsound_records()[1][0])
    right = right[: left.size]
    expected = manual_scores(classifier, (left + right) / 2, rate)
    for stereo in (np.stack([left, right], axis=1), np.stack([left, right])):  # soundfile's and torchaudio's layouts
        results = classifier({"array": stereo, "sampling_rate": rate}, top_k=None)
        assert_scores_close(results, expected, atol=1e-5)


def test_file_errors_name_the_file(classifiers, sprsound_wav, tmp_path):
    classifier = classifiers["tiny-m2d"]
    real = sprsound_wav.read_bytes()
    cases = {
        "header-only.wav": (real[:60], "FFmpeg decoded no audio"),  # a download cut off after the header
        "garbage.wav": (np.random.default_rng(0).bytes(4000), "FFmpeg decoded no audio"),
        "empty.wav": (b"", r"empty \(0 bytes\)"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as error:
            classifier(str(path))
        assert str(path) in str(error.value), name
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "absent.wav")):
        classifier(str(tmp_path / "absent.wav"))

    import soundfile

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(8000, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match="silent") as error:
        classifier(str(silent))
    assert str(silent) in str(error.value)
    # Bytes have no name; the error says so.
    with pytest.raises(ValueError, match="the 60 bytes given: FFmpeg decoded no audio"):
        classifier(real[:60])


def test_urls_are_read_and_their_errors_name_them(classifiers, sprsound_wav, tmp_path):
    """A file served from 127.0.0.1: same scores as its path; a missing file or a cut transfer names the URL."""
    classifier = classifiers["tiny-m2d"]
    shutil.copyfile(sprsound_wav, tmp_path / "recording.wav")
    with loopback_server(tmp_path) as (base, _):
        assert classifier(f"{base}/recording.wav", top_k=None) == classifier(str(sprsound_wav), top_k=None)
        with pytest.raises(ValueError, match=f"{base}/absent.wav: the server answered HTTP 404"):
            classifier(f"{base}/absent.wav")
    with loopback_server(tmp_path, cut_after=60) as (base, _):
        with pytest.raises(ValueError, match=f"{base}/recording.wav: the download failed"):
            classifier(f"{base}/recording.wav")


def test_other_model_types_keep_the_stock_behaviour(tmp_path):
    """The pipeline class is registered for the task; other models' input handling is transformers' own."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=100)
    ASTForAudioClassification(config).save_pretrained(tmp_path)
    ASTFeatureExtractor(max_length=100).save_pretrained(tmp_path)
    classifier = pipeline("audio-classification", model=str(tmp_path))
    assert type(classifier.model) is ASTForAudioClassification
    with pytest.raises(ValueError, match="single channel audio input"):  # the stock check, not ours
        classifier(np.ones((16000, 2), dtype=np.float32))
    assert len(classifier(np.random.default_rng(0).standard_normal(16000).astype(np.float32))) == 2


# ---------------------------------------------------------------------------------------------------- remote code

REMOTE_PIPELINE_SCRIPT = """
    import json, sys

    import numpy as np
    from transformers import pipeline

    spec = json.load(open(sys.argv[1]))
    classifier = pipeline("audio-classification", model=spec["folder"], trust_remote_code=True)
    audio = np.load(spec["audio"])
    report = {
        "pipeline": type(classifier).__module__ + "." + type(classifier).__name__,
        "scores": classifier({"array": audio, "sampling_rate": spec["rate"]}, top_k=None),
        "errors": {},
    }
    for name, inputs in {
        "999 Hz": {"array": audio, "sampling_rate": 999},
        "int16 empty": {"array": np.zeros(0, dtype=np.int16), "sampling_rate": 8000},
        "header only": spec["header_only"],
    }.items():
        try:
            classifier(inputs)
        except ValueError as error:
            report["errors"][name] = str(error)
    assert not any(name.split(".")[0] == "resp_audio_hf" for name in sys.modules)
    json.dump(report, open(spec["out"], "w"))
    """


def test_saved_folder_names_its_pipeline_for_remote_code(classifier_dirs, classifiers):
    """config.json carries `custom_pipelines` (for trust_remote_code), the live config does not (it would demand it)."""
    folder = classifier_dirs["tiny-passt"]
    saved = json.loads((folder / "config.json").read_text())
    assert saved["custom_pipelines"]["audio-classification"]["impl"] == (
        "pipeline_resp_audio.RespAudioClassificationPipeline"
    )
    assert (folder / "pipeline_resp_audio.py").read_bytes() == (
        Path(resp_audio_hf.__file__).parent / "pipeline_resp_audio.py"
    ).read_bytes()
    assert not hasattr(classifiers["tiny-passt"].model.config, "custom_pipelines")


def test_remote_code_pipeline_without_the_package(classifier_dirs, classifiers, sprsound_wav, tmp_path):
    """A process without resp_audio_hf builds the folder's own copy of the pipeline: same scores, same checks."""
    audio, rate = load_audio(sprsound_wav)
    np.save(tmp_path / "audio.npy", audio)
    header_only = tmp_path / "header-only.wav"
    header_only.write_bytes(sprsound_wav.read_bytes()[:60])
    spec = dict(
        folder=str(classifier_dirs["tiny-passt"]), audio=str(tmp_path / "audio.npy"), rate=rate,
        header_only=str(header_only), out=str(tmp_path / "report.json"),
    )
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = run_without_package(REMOTE_PIPELINE_SCRIPT, tmp_path / "spec.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["pipeline"].startswith("transformers_modules.")
    assert report["pipeline"].endswith(".pipeline_resp_audio.RespAudioClassificationPipeline")
    in_process = classifiers["tiny-passt"]({"array": audio, "sampling_rate": rate}, top_k=None)
    assert_scores_close(report["scores"], as_scores(in_process), atol=1e-6)
    assert "999 is not a plausible" in report["errors"]["999 Hz"]
    assert "empty" in report["errors"]["int16 empty"]
    assert report["errors"]["header only"].startswith(f"{header_only}: FFmpeg decoded no audio")
