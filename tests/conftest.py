import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data next to the repository (real recordings no one here made)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sprsound_clips(shared_data):
    """Four real SPRSound recordings of different lengths, as (float32 array, sampling rate) pairs."""
    import soundfile

    paths = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:40:10]
    clips = []
    for path in paths:
        audio, rate = soundfile.read(path, dtype="float32")
        clips.append((audio, rate))
    return clips


@pytest.fixture
def single_torch_thread():
    """One intra-op thread: on two shared cores, spin-waiting between threads slows small tensors down a lot."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def encoder():
    """The extraction engine's tiny-m2d (16 kHz) with seed-0 random weights: quick, and the same in every module."""
    from resp_audio_hf.extraction import AudioEncoder

    return AudioEncoder.from_preset("tiny-m2d", seed=0)


@pytest.fixture(scope="module")
def hub_offline():
    """Hub offline mode regardless of the environment, so pipelines and Auto classes cannot reach the network."""
    import huggingface_hub

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield
