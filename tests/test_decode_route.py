"""
One route from a file to model input: the same real recording gives bit-identical samples and `input_values` through
`bench`'s dataset, `embed`'s dataset, the audio-classification pipeline on a path, bytes or a `datasets` value, the
`Trainer` collator on `datasets` Audio columns (decoded at any rate, or not decoded), the pre-training crops and their
decoded cache. The reference is written out here with torchcodec alone: FFmpeg resamples each channel to the model's
rate, then the channels are averaged (`_audio_helpers.decode_channel_mean`).

Recordings: a stereo 8 kHz MP3 cough and a mono 48 kHz MP3 cough (../shared/data/covid19-cough, 698 of whose 1,324
coughs are stereo at 8 kHz), and an 8 kHz SPRSound WAV.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from _audio_helpers import covid19_cough_file, decode_channel_mean, sprsound_records
from transformers import pipeline

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioForAudioClassification

PRESET = "tiny-passt"  # a 32 kHz front end: every recording here is resampled

pytestmark = pytest.mark.usefixtures("hub_offline")


@pytest.fixture(scope="module")
def recordings() -> dict[str, str]:
    return {
        "stereo-8k-mp3": str(covid19_cough_file(native_rate=8000)),
        "mono-48k-mp3": str(covid19_cough_file(native_rate=48000)),
        "sprsound-8k-wav": str(sprsound_records()[0][0]),
    }


@pytest.fixture(scope="module")
def classifier_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decode_route") / PRESET
    torch.manual_seed(0)
    config = RespAudioConfig.from_preset(PRESET, id2label={0: "a", 1: "b"})
    RespAudioForAudioClassification(config).eval().save_pretrained(folder)
    RespAudioFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def feature_extractor(classifier_folder):
    return RespAudioFeatureExtractor.from_pretrained(classifier_folder)


def features(feature_extractor, audio) -> torch.Tensor:
    rate = feature_extractor.sampling_rate
    return feature_extractor([audio], sampling_rate=rate, return_tensors="pt")["input_values"][0]


def assert_identical(actual, expected, what: str):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, what
    assert np.array_equal(actual, expected), f"{what}: max |difference| {np.abs(actual - expected).max()}"


def test_the_recordings_are_what_the_test_says(recordings):
    from torchcodec.decoders import AudioDecoder

    layout = {name: (AudioDecoder(path).metadata.sample_rate, AudioDecoder(path).metadata.num_channels)
              for name, path in recordings.items()}
    assert layout == {"stereo-8k-mp3": (8000, 2), "mono-48k-mp3": (48000, 1), "sprsound-8k-wav": (8000, 1)}
    # The stereo cough's channels differ, so the downmix matters.
    channels = AudioDecoder(recordings["stereo-8k-mp3"]).get_all_samples().data
    assert (channels[0] - channels[1]).abs().max() > 0.1


@pytest.mark.parametrize("name", ["stereo-8k-mp3", "mono-48k-mp3", "sprsound-8k-wav"])
def test_every_file_route_gives_the_same_samples_and_features(
    name, recordings, feature_extractor, classifier_folder, tmp_path
):
    import datasets

    from resp_audio_hf.collation import RespAudioCollator
    from resp_audio_hf.extraction import AudioEncoder, DatasetClipDataset, FileClipDataset, make_dataloader
    from resp_audio_hf.training.audio_cache import decoded_corpus
    from resp_audio_hf.training.data import ClipDecoder, LogMelCollator

    path = recordings[name]
    rate = feature_extractor.sampling_rate
    reference, reference_rate = decode_channel_mean(path, rate)
    assert reference_rate == rate
    expected = features(feature_extractor, reference)
    samples, inputs = {}, {}

    # bench (and `embed` on files): FileClipDataset, featurised by the benchmark's collator.
    encoder = AudioEncoder(RespAudioForAudioClassification.from_pretrained(classifier_folder).resp_audio,
                           feature_extractor, "tiny")
    item = FileClipDataset([path], rate)[0]
    samples["bench"] = item["audio"]
    batch = next(iter(make_dataloader(FileClipDataset([path], rate), encoder, batch_size=1)))
    if batch["long"]:  # longer than one encoder window: streamed block by block from these samples
        samples["bench, long clip"] = batch["long"][0][1].numpy()
    else:
        inputs["bench"] = batch["inputs"]["input_values"][0]

    # embed on a `datasets` dataset, whatever rate and channels its column was cast to.
    table = datasets.Dataset.from_dict({"audio": [path]})
    for cast in (datasets.Audio(), datasets.Audio(sampling_rate=16000, num_channels=1)):
        clips = DatasetClipDataset(table.cast_column("audio", cast), "audio", rate, ["clip"])
        samples[f"embed dataset, {cast.sampling_rate} Hz"] = clips[0]["audio"]

    # The pipeline: a path, the file's bytes, a decoded `datasets` value.
    classifier = pipeline("audio-classification", model=str(classifier_folder))
    with open(path, "rb") as handle:
        data = handle.read()
    inputs["pipeline, path"] = classifier.preprocess(path)["input_values"][0]
    inputs["pipeline, bytes"] = classifier.preprocess(data)["input_values"][0]
    inputs["pipeline, datasets value"] = classifier.preprocess(
        table.cast_column("audio", datasets.Audio(sampling_rate=8000))[0]["audio"]
    )["input_values"][0]

    # The Trainer collator: decoded columns at the file's rate or another, undecoded paths and embedded bytes.
    collator = RespAudioCollator(feature_extractor)
    columns = {
        "native": table.cast_column("audio", datasets.Audio()),
        "16 kHz mono": table.cast_column("audio", datasets.Audio(sampling_rate=16000, num_channels=1)),
        "decode=False": table.cast_column("audio", datasets.Audio(decode=False)),
        "embedded bytes": datasets.Dataset.from_dict({"audio": [{"path": None, "bytes": data}]}).cast_column(
            "audio", datasets.Audio(decode=False)
        ),
    }
    for label, column in columns.items():
        inputs[f"collator, {label}"] = collator([column[0]])["input_values"][0]

    # Pre-training: a crop as long as the clip is the whole clip; its batch; the decoded cache.
    whole = ClipDecoder(rate, len(reference))
    samples["pre-training crop"] = whole({"path": path, "bytes": None}, np.random.default_rng(0))
    samples["pre-training crop, bytes"] = whole({"path": None, "bytes": data}, np.random.default_rng(0))
    num_frames = feature_extractor.num_frames(len(reference))
    inputs["pre-training batch"] = LogMelCollator(feature_extractor, num_frames)(
        [samples["pre-training crop"]]
    )["input_values"][0]
    samples["decoded cache"] = decoded_corpus([path], rate, tmp_path / "cache", "clips").clip(0)

    for route, waveform in samples.items():
        assert_identical(waveform, reference, f"{name}: samples of {route}")
    for route, values in inputs.items():
        assert_identical(values, expected, f"{name}: input_values of {route}")


def test_dual_mono_file_gives_the_features_of_its_mono_original(tmp_path, feature_extractor):
    """The channel mean keeps a stereo file with two equal channels at its mono level; FFmpeg's own downmix, (L + R)
    / sqrt(2), made it 3 dB louder."""
    from resp_audio_hf.data.audio import load_audio

    mono, rate = soundfile.read(sprsound_records()[0][0], dtype="float32")
    soundfile.write(tmp_path / "mono.wav", mono, rate, subtype="FLOAT")
    soundfile.write(tmp_path / "dual.wav", np.stack([mono, mono], axis=1), rate, subtype="FLOAT")
    model_rate = feature_extractor.sampling_rate
    original, _ = load_audio(tmp_path / "mono.wav", model_rate)
    dual, _ = load_audio(tmp_path / "dual.wav", model_rate)
    assert_identical(dual, original, "dual-mono against mono")
    from torchcodec.decoders import AudioDecoder

    ffmpeg_downmix = AudioDecoder(str(tmp_path / "dual.wav"), sample_rate=model_rate, num_channels=1)
    louder = ffmpeg_downmix.get_all_samples().data[0].numpy()
    np.testing.assert_allclose(louder, np.sqrt(2) * original, rtol=1e-5, atol=1e-6)


def test_one_function_tells_a_file_from_samples_for_the_decoder_and_the_collator(recordings):
    """`audio_file_source` is what `open_audio` opens and what sends a collator example down the file route: every
    form a file takes gives the file, every form samples take gives `None`."""
    from datasets import Audio, Dataset

    from resp_audio_hf.data.audio import audio_file_source, load_audio, open_audio

    path = recordings["sprsound-8k-wav"]
    with open(path, "rb") as handle:
        data = handle.read()
    decoded_column = Dataset.from_dict({"audio": [path]}).cast_column("audio", Audio(sampling_rate=16000))
    decoder = decoded_column[0]["audio"]  # a torchcodec decoder that keeps {"path", "bytes"} as _hf_encoded
    assert audio_file_source(path) == path and audio_file_source(data) == data
    assert audio_file_source(bytearray(data)) == data
    assert audio_file_source({"path": path, "bytes": None}) == path
    assert audio_file_source({"path": "elsewhere.wav", "bytes": data}) == data  # the stored bytes win
    assert audio_file_source(decoder) in (path, data)
    for samples in (np.zeros(16000, np.float32), torch.zeros(16000), {"array": np.zeros(8), "sampling_rate": 8000},
                    {"path": path, "array": np.zeros(8), "sampling_rate": 8000}, {"path": None, "bytes": None}):
        assert audio_file_source(samples) is None
    with pytest.raises(ValueError, match="needs a 'path' or 'bytes'"):
        open_audio({"array": np.zeros(8), "sampling_rate": 8000})
    # The decoder of a decoded column is opened again on its file: the same samples as the path.
    np.testing.assert_array_equal(load_audio(decoder, 16000)[0], load_audio(path, 16000)[0])
