"""hear_scene_embeddings against hear21passt's own HEAR wrapper (`get_scene_embeddings`) on real SPRSound clips."""

import pytest
import torch
import torchaudio

from resp_audio_hf.convert import convert_passt
from resp_audio_hf.hear_windows import hear_scene_embeddings

pytest.importorskip("timm")
hear_base = pytest.importorskip("hear21passt.base")
hear_passt = pytest.importorskip("hear21passt.models.passt")
from test_fidelity_passt import ATOL, perturb_, quiet  # noqa: E402

# The 10.3 s recording (five overlapping 10 s windows in the HEAR wrapper) and a 9.2 s one (embedded whole).
LONG_CLIP = "41125983_6.8_0_p1_2378.wav"
SHORT_CLIP = "40512331_8.1_1_p1_3544.wav"


@pytest.fixture(scope="module")
def hear_wrapper():
    """hear21passt's `get_basic_model` wrapper (embed_only: the (CLS + dist) / 2 features) around a one-block PaSST
    of the released layout (998 frames, as the 10 s windows need), with random weights."""
    torch.manual_seed(0)
    with quiet():
        net = hear_passt.get_model(arch="passt_s_swa_p16_128_ap476", pretrained=False)
    net.blocks = net.blocks[:1]
    perturb_(net, seed=7)
    with pytest.MonkeyPatch.context() as patch, quiet():
        patch.setattr(hear_base, "get_model_passt", lambda arch, **kwargs: net)
        wrapper = hear_base.get_basic_model(mode="embed_only")
    return wrapper.eval()


@pytest.fixture(scope="module")
def converted(hear_wrapper):
    return convert_passt(hear_wrapper.state_dict(), with_head=False, pooling="cls")


def clip_at_32k(shared_data, name):
    import soundfile

    audio, rate = soundfile.read(shared_data / "sprsound" / "test_wav" / name, dtype="float32")
    return torchaudio.functional.resample(torch.from_numpy(audio), rate, 32000)


def hear_reference(wrapper, audio):
    with torch.no_grad(), quiet():
        return hear_base.get_scene_embeddings(audio[None], wrapper)


def test_long_clip_matches_the_hear_wrapper(hear_wrapper, converted, shared_data):
    audio = clip_at_32k(shared_data, LONG_CLIP)
    assert audio.numel() > 32000 * 10  # past the wrapper's 10 s window: its overlapping windows apply
    model, feature_extractor = converted.model.eval(), converted.feature_extractor
    reference = hear_reference(hear_wrapper, audio)
    ours = hear_scene_embeddings(model, feature_extractor, audio.numpy(), sampling_rate=32000)
    assert ours.shape == reference.shape == (1, model.config.hidden_size)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)
    # The model's own consecutive windows are another embedding of this clip, as the README says.
    with torch.no_grad():
        default = model(**feature_extractor(audio.numpy(), sampling_rate=32000, return_tensors="pt")).pooler_output
    assert (default - reference).abs().max() > 100 * ATOL


def test_short_clip_is_embedded_whole_as_the_wrapper_does(hear_wrapper, converted, shared_data):
    audio = clip_at_32k(shared_data, SHORT_CLIP)
    assert audio.numel() <= 32000 * 10
    model, feature_extractor = converted.model.eval(), converted.feature_extractor
    reference = hear_reference(hear_wrapper, audio)
    ours = hear_scene_embeddings(model, feature_extractor, [audio.numpy()], sampling_rate=32000)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)
    with torch.no_grad():
        default = model(**feature_extractor(audio.numpy(), sampling_rate=32000, return_tensors="pt")).pooler_output
    torch.testing.assert_close(ours, default, atol=1e-6, rtol=0)


def test_input_is_checked_and_resampled_first(converted, shared_data):
    """An 8 kHz clip is resampled before it is windowed; bad input gets the feature extractor's errors."""
    import soundfile

    model, feature_extractor = converted.model.eval(), converted.feature_extractor
    audio, rate = soundfile.read(shared_data / "sprsound" / "test_wav" / LONG_CLIP, dtype="float32")
    at_8k = hear_scene_embeddings(model, feature_extractor, audio, sampling_rate=rate)
    at_32k = hear_scene_embeddings(model, feature_extractor, clip_at_32k(shared_data, LONG_CLIP).numpy(), 32000)
    torch.testing.assert_close(at_8k, at_32k, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="plausible"):
        hear_scene_embeddings(model, feature_extractor, audio, sampling_rate=999)
    with pytest.raises(ValueError, match="silent"):
        hear_scene_embeddings(model, feature_extractor, 0 * audio, sampling_rate=rate)
    with pytest.raises(ValueError, match="hop_seconds"):
        hear_scene_embeddings(model, feature_extractor, audio, sampling_rate=rate, hop_seconds=20.0)
