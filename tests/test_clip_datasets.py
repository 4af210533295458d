"""Every clip dataset of `resp_audio_hf.extraction` implements the one `ClipDataset` protocol and delivers a real
recording's samples as an independent decoder (libsndfile, through soundfile) reads them."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from _audio_helpers import SPRSOUND_DIR, require_dir

from resp_audio_hf.extraction import ArrayClipDataset, ClipDataset, DatasetClipDataset, FileClipDataset

# 8 kHz, 16-bit PCM mono: decoding at its own rate involves no resampling, so every route must give its samples.
RECORDINGS = ("40512331_8.1_1_p1_3544.wav", "40512331_8.1_1_p1_3548.wav")


@pytest.fixture(scope="module")
def recordings():
    folder = require_dir(SPRSOUND_DIR / "test_wav")
    paths = [str(folder / name) for name in RECORDINGS]
    references = [soundfile.read(path, dtype="float32") for path in paths]
    assert {rate for _, rate in references} == {8000}
    return paths, [audio for audio, _ in references]


def clip_datasets(paths, references):
    import datasets

    table = datasets.Dataset.from_dict({"audio": paths}).cast_column("audio", datasets.Audio())
    return {
        "files": FileClipDataset(paths, 8000),
        "arrays": ArrayClipDataset(references, 8000, 8000, names=paths),
        "datasets column": DatasetClipDataset(table, "audio", 8000, names=paths),
    }


@pytest.mark.parametrize("kind", ["files", "arrays", "datasets column"])
def test_every_clip_dataset_satisfies_the_protocol_and_reads_a_real_recording(recordings, kind):
    paths, references = recordings
    dataset = clip_datasets(paths, references)[kind]
    assert isinstance(dataset, ClipDataset)
    assert isinstance(dataset, torch.utils.data.Dataset)  # what the extraction's DataLoader takes
    assert len(dataset) == len(paths) and dataset.sampling_rate == 8000
    for index, reference in enumerate(references):
        item = dataset[index]
        assert set(item) == {"index", "audio", "sampling_rate"} and item["index"] == index
        assert item["sampling_rate"] == 8000
        audio = np.asarray(item["audio"])
        assert audio.dtype == np.float32 and audio.shape == reference.shape
        np.testing.assert_allclose(audio, reference, rtol=0, atol=1e-6)
        assert paths[index] in dataset.describe(index)
    # The signature is what the cache key hashes: other clips must give another one.
    others = clip_datasets(paths[::-1], references[::-1])[kind]
    assert dataset.signature() != others.signature()
    assert dataset.signature() == clip_datasets(paths, references)[kind].signature()


@pytest.mark.parametrize("kind", ["files", "datasets column"])
def test_an_undecodable_recording_is_an_error_item_not_an_exception(recordings, tmp_path, kind):
    paths, references = recordings
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + bytes(60))
    dataset = clip_datasets([str(broken), paths[0]], [np.zeros(8, np.float32), references[0]])[kind]
    item = dataset[0]
    assert set(item) == {"index", "error"} and item["index"] == 0 and item["error"]
    np.testing.assert_allclose(dataset[1]["audio"], references[0], rtol=0, atol=1e-6)


def test_a_dataset_without_names_or_signature_is_not_a_clip_dataset(recordings):
    paths, _ = recordings
    subset = torch.utils.data.Subset(FileClipDataset(paths, 8000), [0])
    assert not isinstance(subset, ClipDataset)
