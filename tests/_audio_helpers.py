"""Shared test helpers: locate and decode the real recordings under <repo>/../shared/data.

Tests skip (with the reason) only when the data folder is absent; a folder that is present but broken fails loudly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPRSOUND_DIR = DATA_ROOT / "sprsound"
COVID19_COUGH_DIR = DATA_ROOT / "covid19-cough"

# SPRSound record-level annotations: "Normal", the adventitious ones (continuous, discontinuous or both) and
# "Poor Quality", which is neither and is left out of the binary task.
SPRSOUND_ADVENTITIOUS = ("CAS", "DAS", "CAS & DAS")
SPRSOUND_BINARY_LABELS = {0: "Normal", 1: "Adventitious"}


def require_dir(path: Path) -> Path:
    """`path` if it exists, else skip the calling test saying which data is missing."""
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent (expected next to the repository in ../shared/data)")
    return path


def load_audio(path: str | Path, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode `path` with torchcodec (FFmpeg) to mono float32 samples, resampled to `sampling_rate` when given."""
    from torchcodec.decoders import AudioDecoder

    samples = AudioDecoder(str(path), sample_rate=sampling_rate, num_channels=1).get_all_samples()
    audio = samples.data[0].numpy().astype(np.float32)
    assert audio.size > 0 and np.isfinite(audio).all() and np.abs(audio).max() > 0, f"bad decode of {path}"
    return audio, int(samples.sample_rate)


def decode_channel_mean(path: str | Path, sampling_rate: int | None = None) -> tuple[np.ndarray, int]:
    """The package's route for files, written out independently: torchcodec (FFmpeg) resamples every channel to
    `sampling_rate`, then the channels are averaged (`load_audio` above keeps FFmpeg's own (L + R) / sqrt(2) downmix,
    as the EfficientAT reference values were computed on it)."""
    from torchcodec.decoders import AudioDecoder

    samples = AudioDecoder(str(path), sample_rate=sampling_rate).get_all_samples()
    audio = samples.data.mean(dim=0).numpy()
    assert audio.dtype == np.float32 and audio.size > 0 and np.isfinite(audio).all(), f"bad decode of {path}"
    return audio, int(samples.sample_rate)


def sprsound_records() -> list[tuple[Path, str]]:
    """Every SPRSound test recording with its record-level annotation, sorted by file name."""
    root = require_dir(SPRSOUND_DIR)
    records = []
    for annotation_file in sorted((root / "test_json").glob("*/*.json")):
        wav = root / "test_wav" / f"{annotation_file.stem}.wav"
        assert wav.is_file(), f"{annotation_file} has no recording {wav}"
        records.append((wav, json.loads(annotation_file.read_text())["record_annotation"]))
    assert records, f"no annotations found under {root / 'test_json'}"
    return sorted(records, key=lambda record: record[0].name)


def sprsound_binary_subset(per_class: int, seed: int = 0) -> list[tuple[Path, int]]:
    """
    `per_class` Normal (label 0) and `per_class` adventitious (label 1: CAS, DAS or both) recordings drawn with a fixed
    seed, interleaved so that any prefix is balanced. Poor-quality recordings are left out.
    """
    records = sprsound_records()
    normal = [path for path, annotation in records if annotation == "Normal"]
    adventitious = [path for path, annotation in records if annotation in SPRSOUND_ADVENTITIOUS]
    rng = random.Random(seed)
    chosen_normal = rng.sample(normal, per_class)
    chosen_adventitious = rng.sample(adventitious, per_class)
    return [pair for n, a in zip(chosen_normal, chosen_adventitious) for pair in ((n, 0), (a, 1))]


def covid19_cough_file(native_rate: int, max_seconds: float = 8.0) -> Path:
    """The first (by name) covid19-cough mp3 recorded at `native_rate` Hz and no longer than `max_seconds`."""
    from torchcodec.decoders import AudioDecoder

    root = require_dir(COVID19_COUGH_DIR)
    for path in sorted((root / "raw").glob("*.mp3")):
        metadata = AudioDecoder(str(path)).metadata
        duration = metadata.duration_seconds_from_header or metadata.duration_seconds
        if metadata.sample_rate == native_rate and duration is not None and 0.5 < duration <= max_seconds:
            return path
    raise AssertionError(f"no covid19-cough mp3 at {native_rate} Hz shorter than {max_seconds} s in {root / 'raw'}")


def write_an_hour_of(recordings: list[Path], path: Path) -> float:
    """Write the real `recordings` (one rate, mono) end to end, repeated to at least an hour, as a 16-bit WAV at
    `path`, one round at a time (never the hour in memory); the file's length in seconds."""
    import soundfile

    one_round = np.concatenate([soundfile.read(p, dtype="float32")[0] for p in recordings])
    rate = soundfile.info(recordings[0]).samplerate
    repeats = int(np.ceil(3600 * rate / one_round.size))
    with soundfile.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as handle:
        for _ in range(repeats):
            handle.write(one_round)
    return repeats * one_round.size / rate


def record_decoded_sizes(monkeypatch) -> list[int]:
    """The sizes of every block the package decodes from a file from now on (`data.audio.decoded_mono` watched)."""
    import resp_audio_hf.data.audio as audio_module

    sizes: list[int] = []
    decoded_mono = audio_module.decoded_mono

    def recording_decoded_mono(*args, **kwargs):
        samples = decoded_mono(*args, **kwargs)
        sizes.append(samples.size)
        return samples

    monkeypatch.setattr(audio_module, "decoded_mono", recording_decoded_mono)
    return sizes
