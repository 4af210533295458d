"""Embedding extraction: equals a direct model call, caches, resumes, streams, works with any AutoModel."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from _data_helpers import REPO_ROOT, tone, write_tones, write_wav

from resp_audio_hf.extraction import (
    AudioEncoder,
    ClipFailureError,
    FileClipDataset,
    cache_entries,
    extract_embeddings,
    make_dataloader,
)

SR = 16000  # tiny-m2d's rate: files at the model rate need no resampling, so a direct call is comparable


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return write_tones(tmp_path_factory.mktemp("clips"), 20, SR, base_hz=120, step_hz=40)


def _read_wav(path):
    import wave

    with wave.open(str(path)) as handle:
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


class CountingEncoder:
    """Wraps an encoder and counts how many clips it embedded (to see what a cache hit skips)."""

    def __init__(self, encoder):
        self.inner = encoder
        self.embedded = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, inputs):
        out = self.inner.embed(inputs)
        self.embedded += len(out)
        return out


def test_extraction_equals_a_direct_model_call(encoder, clip_files):
    dataset = FileClipDataset(clip_files, encoder.sampling_rate)
    embeddings = extract_embeddings(encoder, dataset, batch_size=6, progress=False)
    with torch.inference_mode():
        direct = encoder.model(**encoder.featurize([_read_wav(p) for p in clip_files])).pooler_output.numpy()
    assert embeddings.shape == (20, encoder.model.config.pooled_size) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, direct, atol=1e-4)


def test_cache_hit_skips_the_model_and_key_tracks_preprocessing_and_weights(encoder, clip_files, tmp_path):
    counting = CountingEncoder(encoder)
    dataset = FileClipDataset(clip_files, encoder.sampling_rate)
    first = extract_embeddings(counting, dataset, cache_dir=tmp_path, batch_size=8, shard_size=8, progress=False)
    second = extract_embeddings(counting, dataset, cache_dir=tmp_path, batch_size=8, shard_size=8, progress=False)
    assert counting.embedded == 20 and np.array_equal(first, second)
    cropped = FileClipDataset(clip_files, encoder.sampling_rate, max_duration=0.5)
    extract_embeddings(counting, cropped, cache_dir=tmp_path, batch_size=8, progress=False)
    other_model = AudioEncoder.from_preset("tiny-m2d", seed=1)
    extract_embeddings(other_model, dataset, cache_dir=tmp_path, batch_size=8, progress=False)
    entries = cache_entries(tmp_path)
    assert len(entries) == 3 and all(e["complete"] for e in entries)
    assert {e["data"]["max_duration"] for e in entries} == {None, 0.5}
    assert len({e["model"]["fingerprint"] for e in entries}) == 2
    assert not list(tmp_path.glob("*/shard_*.npy")) and not list(tmp_path.glob("*/*.tmp*"))


def test_cache_key_covers_the_model_configuration(clip_files):
    """Pooling changes the embedding but no weight: the two configurations must get different keys."""
    from resp_audio_hf.extraction import embedding_cache_key

    dataset = FileClipDataset(clip_files, SR)
    default = AudioEncoder.from_preset("tiny-m2d")
    mean = AudioEncoder.from_preset("tiny-m2d", pooling="mean")
    assert default.fingerprint() == mean.fingerprint()  # same weights
    default_key, description = embedding_cache_key(default, dataset)
    assert embedding_cache_key(mean, dataset)[0] != default_key
    assert description["model"]["config"]["pooling"] == "freq_preserving"
    assert "transformers_version" not in description["model"]["config"]
    assert embedding_cache_key(AudioEncoder.from_preset("tiny-m2d"), dataset)[0] == default_key  # and it is stable


def _save_tiny_model(folder, **overrides):
    from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel

    config = RespAudioConfig.from_preset("tiny-m2d", **overrides)
    torch.manual_seed(0)
    RespAudioModel(config).save_pretrained(folder)
    RespAudioFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


def test_editing_a_saved_models_pooling_recomputes_the_embeddings(clip_files, tmp_path):
    """The reported failure: change ``pooling`` in config.json, rerun on the same folder."""
    folder = _save_tiny_model(tmp_path / "model")
    clips = clip_files[:4]
    first = AudioEncoder.from_pretrained(str(folder))
    cached = extract_embeddings(first, FileClipDataset(clips, SR), cache_dir=tmp_path / "cache", progress=False)
    assert cached.shape == (4, first.model.config.pooled_size) == (4, 5 * 32)

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "pooling": "mean"}))
    edited = CountingEncoder(AudioEncoder.from_pretrained(str(folder)))
    again = extract_embeddings(edited, FileClipDataset(clips, SR), cache_dir=tmp_path / "cache", progress=False)
    assert edited.embedded == 4 and again.shape == (4, 32)
    with torch.inference_mode():
        direct = edited.model(**edited.featurize([_read_wav(p) for p in clips])).pooler_output.numpy()
    np.testing.assert_allclose(again, direct, atol=1e-4)
    assert sorted(e["embedding_dim"] for e in cache_entries(tmp_path / "cache")) == [32, 160]

    # ``pooling=`` at load time is the same model as the edited file (and so the same cache entry).
    config_path.write_text(json.dumps(config))
    overridden = CountingEncoder(AudioEncoder.from_pretrained(str(folder), pooling="mean"))
    assert overridden.pooling == "mean" and overridden.embedding_dim == 32
    reused = extract_embeddings(overridden, FileClipDataset(clips, SR), cache_dir=tmp_path / "cache", progress=False)
    assert overridden.embedded == 0 and np.array_equal(reused, again)
    with pytest.raises(ValueError, match="pooling must be one of"):
        AudioEncoder.from_pretrained(str(folder), pooling="max")


def test_pooling_override_is_refused_for_models_without_that_choice(tmp_path):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    ASTModel(
        ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=128)
    ).save_pretrained(tmp_path)
    ASTFeatureExtractor(max_length=128).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="resp_audio and efficientat models only.*'audio-spectrogram-transformer'"):
        AudioEncoder.from_pretrained(str(tmp_path), pooling="mean")


def test_a_cache_entry_of_another_width_or_other_settings_never_loads(encoder, clip_files, tmp_path):
    clips = clip_files[:4]
    dataset = FileClipDataset(clips, SR)
    reference = extract_embeddings(encoder, dataset, cache_dir=tmp_path, progress=False)
    (entry,) = [path.parent for path in tmp_path.glob("*/embeddings.npy")]
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["embedding_dim"] == 160

    # The same key holding mean-pooled (32-wide) vectors, as a cache written before pooling was in the key would.
    np.save(entry / "embeddings.npy", np.zeros((4, 32), dtype=np.float32))
    (entry / "meta.json").write_text(json.dumps({**meta, "embedding_dim": 32}))
    counting = CountingEncoder(encoder)
    recomputed = extract_embeddings(counting, dataset, cache_dir=tmp_path, progress=False)
    assert counting.embedded == 4 and np.array_equal(recomputed, reference)

    # Right width, but meta.json describes other settings (e.g. an entry from an older cache format).
    (entry / "meta.json").write_text(json.dumps({**meta, "format": 1}))
    counting.embedded = 0
    extract_embeddings(counting, dataset, cache_dir=tmp_path, progress=False)
    assert counting.embedded == 4 and json.loads((entry / "meta.json").read_text()) == meta

    # Finished shards of another width are recomputed too, not stitched into the result (even with a valid checksum).
    from resp_audio_hf.extraction.cache import rows_digest

    narrow = np.ones((4, 32), dtype=np.float32)
    np.save(entry / f"shard_00000.{rows_digest(narrow)}.npy", narrow)
    (entry / "embeddings.npy").unlink()
    counting.embedded = 0
    resumed = extract_embeddings(counting, dataset, cache_dir=tmp_path, progress=False)
    assert counting.embedded == 4 and np.array_equal(resumed, reference)

    # An entry whose width was never recorded (interrupted while finishing) is not trusted either.
    (entry / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "embedding_dim"}))
    counting.embedded = 0
    extract_embeddings(counting, dataset, cache_dir=tmp_path, progress=False)
    assert counting.embedded == 4


def test_a_file_replaced_in_place_is_embedded_again(encoder, tmp_path):
    path = write_wav(tmp_path / "clips" / "a.wav", tone(1.0, SR, 200), SR)
    first = extract_embeddings(encoder, FileClipDataset([path], SR), cache_dir=tmp_path / "cache", progress=False)
    write_wav(path, tone(1.5, SR, 900, seed=3), SR)
    counting = CountingEncoder(encoder)
    second = extract_embeddings(counting, FileClipDataset([path], SR), cache_dir=tmp_path / "cache", progress=False)
    assert counting.embedded == 1 and not np.allclose(first, second)


class FailsOnce(FileClipDataset):
    """Simulates an interruption (e.g. Ctrl-C or a lost disk) at one item, the first time only."""

    failed = False

    def __getitem__(self, index):
        if index == 13 and not FailsOnce.failed:
            FailsOnce.failed = True
            raise KeyboardInterrupt("simulated interruption")
        return super().__getitem__(index)


def test_interrupted_extraction_resumes_from_finished_shards(encoder, clip_files, tmp_path):
    reference = extract_embeddings(
        encoder, FileClipDataset(clip_files, encoder.sampling_rate), batch_size=4, progress=False
    )
    counting = CountingEncoder(encoder)
    dataset = FailsOnce(clip_files, encoder.sampling_rate)
    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(counting, dataset, cache_dir=tmp_path, batch_size=4, shard_size=4, progress=False)
    assert counting.embedded == 12 and len(list(tmp_path.glob("*/shard_*.npy"))) == 3
    assert not list(tmp_path.glob("*/embeddings.npy"))  # no half-written result
    counting.embedded = 0
    resumed = extract_embeddings(counting, dataset, cache_dir=tmp_path, batch_size=4, shard_size=4, progress=False)
    assert counting.embedded == 8  # only the unfinished shards were computed
    np.testing.assert_allclose(resumed, reference, atol=1e-5)


def test_dataloader_with_workers_gives_the_same_embeddings(encoder, clip_files, tmp_path):
    dataset = FileClipDataset(clip_files, encoder.sampling_rate)
    single = extract_embeddings(encoder, dataset, batch_size=5, progress=False)
    loader = make_dataloader(dataset, encoder, batch_size=5, num_workers=2)
    parallel = extract_embeddings(encoder, loader, cache_dir=tmp_path, shard_size=8, progress=False)
    np.testing.assert_allclose(parallel, single, atol=1e-5)


def test_encoder_threads_leave_the_workers_their_cores_and_are_restored(encoder, clip_files, tmp_path):
    """With workers the main process runs the encoder on the cores the workers leave (at least one), and torch's thread
    count is what it was afterwards, also when extraction fails."""
    seen = []

    class RecordingThreads(CountingEncoder):
        def embed(self, inputs):
            seen.append(torch.get_num_threads())
            return self.inner.embed(inputs)

    cores = len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    dataset = FileClipDataset(clip_files[:4], encoder.sampling_rate)
    extract_embeddings(RecordingThreads(encoder), dataset, batch_size=2, num_workers=1, progress=False)
    assert set(seen) == {max(1, min(before, cores - 1))}
    assert torch.get_num_threads() == before

    seen.clear()
    extract_embeddings(RecordingThreads(encoder), dataset, batch_size=2, num_workers=0, progress=False)
    assert set(seen) == {before}  # no workers: torch's own choice

    class Failing(CountingEncoder):
        def embed(self, inputs):
            raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        extract_embeddings(Failing(encoder), dataset, batch_size=2, num_workers=1, progress=False)
    assert torch.get_num_threads() == before


def test_nan_embeddings_are_named_by_file_and_cost_only_their_clip(encoder, clip_files, tmp_path):
    class NaNForOne(CountingEncoder):
        def embed(self, inputs):
            out = self.inner.embed(inputs)
            if self.embedded == 0:
                out[1] = np.nan
            self.embedded += len(out)
            return out

    reference = extract_embeddings(encoder, FileClipDataset(clip_files, encoder.sampling_rate), progress=False)
    dataset = FileClipDataset(clip_files, encoder.sampling_rate)
    kwargs = dict(cache_dir=tmp_path, batch_size=4, shard_size=4, progress=False)
    with pytest.raises(ClipFailureError, match=r"1 of 20 .*clip01\.wav: the encoder produced a NaN/inf") as info:
        extract_embeddings(NaNForOne(encoder), dataset, **kwargs)
    assert list(info.value.failures) == [1]
    # Every other clip was embedded and cached; asking for the failures returns them without the model.
    counting = CountingEncoder(encoder)
    features, failures = extract_embeddings(counting, dataset, return_failures=True, **kwargs)
    assert counting.embedded == 0 and failures == {1: "the encoder produced a NaN/inf embedding"}
    assert np.isnan(features[1]).all()
    np.testing.assert_allclose(np.delete(features, 1, axis=0), np.delete(reference, 1, axis=0), atol=1e-5)
    assert json.loads(next(tmp_path.glob("*/failed.json")).read_text()) == {"1": failures[1]}


def _silent_wav(path):
    return write_wav(path, np.zeros(SR), SR)


def _junk_wav(path):
    path.write_bytes(b"RIFF....WAVEnot audio")
    return path


def test_every_bad_file_is_named_and_the_others_are_embedded(encoder, clip_files, tmp_path):
    """Undecodable, NaN and silent files in the middle of batches: each one is named with its own reason (never a
    batch position), and every other clip gets exactly the embedding it gets in a clean run."""
    import soundfile

    nan_audio = tone(1.0, SR, 300).astype(np.float32)
    nan_audio[100] = np.nan
    soundfile.write(tmp_path / "nan.wav", nan_audio, SR, subtype="FLOAT")
    bad = {
        2: _junk_wav(tmp_path / "junk_a.wav"),
        5: _silent_wav(tmp_path / "silent.wav"),
        6: tmp_path / "nan.wav",
        9: _junk_wav(tmp_path / "junk_b.wav"),
    }
    paths = list(clip_files[:12])
    for index, path in bad.items():
        paths[index] = path
    good = [i for i in range(len(paths)) if i not in bad]
    reference = extract_embeddings(encoder, FileClipDataset(clip_files[:12], encoder.sampling_rate), progress=False)

    dataset = FileClipDataset(paths, encoder.sampling_rate)
    with pytest.raises(ClipFailureError) as info:
        extract_embeddings(encoder, dataset, batch_size=4, progress=False)
    assert sorted(info.value.failures) == sorted(bad)
    assert all(str(bad[i]) in str(info.value) for i in bad)

    features, failures = extract_embeddings(
        encoder, dataset, batch_size=4, num_workers=1, return_failures=True, progress=False
    )
    assert sorted(failures) == sorted(bad)
    assert failures[2].startswith("not decodable") and failures[9].startswith("not decodable")
    assert "non-finite" in failures[6]
    assert "silent" in failures[5] and "Audio clip" not in failures[5]
    assert np.isnan(features[sorted(bad)]).all()
    np.testing.assert_allclose(features[good], reference[good], atol=1e-5)

    # The feature extractor itself still refuses silent audio; only the extraction loop turns that into a per-file skip.
    with pytest.raises(ValueError, match="silent"):
        encoder.featurize([np.zeros(SR, dtype=np.float32)])
    with pytest.raises(ClipFailureError, match="1 of 1"):
        extract_embeddings(
            encoder, FileClipDataset([bad[5]], encoder.sampling_rate), return_failures=True, progress=False
        )


def test_interrupted_extraction_keeps_its_failures_when_resumed(encoder, clip_files, tmp_path):
    paths = list(clip_files)
    paths[1] = _junk_wav(tmp_path / "junk.wav")
    FailsOnce.failed = False
    dataset = FailsOnce(paths, encoder.sampling_rate)
    kwargs = dict(cache_dir=tmp_path / "cache", batch_size=4, shard_size=4, return_failures=True, progress=False)
    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(encoder, dataset, **kwargs)
    counting = CountingEncoder(encoder)
    features, failures = extract_embeddings(counting, dataset, **kwargs)
    assert counting.embedded == 8 and list(failures) == [1] and failures[1].startswith("not decodable")
    reference = extract_embeddings(encoder, FileClipDataset(clip_files, encoder.sampling_rate), progress=False)
    np.testing.assert_allclose(np.delete(features, 1, axis=0), np.delete(reference, 1, axis=0), atol=1e-5)


def test_any_transformers_audio_model_via_auto_classes(tmp_path, clip_files):
    from transformers import (
        ASTConfig,
        ASTFeatureExtractor,
        ASTModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
    )

    torch.manual_seed(0)
    ast_dir, w2v_dir = tmp_path / "ast", tmp_path / "w2v"
    ASTModel(
        ASTConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_length=128,
            num_mel_bins=64,
        )
    ).save_pretrained(ast_dir)
    ASTFeatureExtractor(num_mel_bins=64, max_length=128).save_pretrained(ast_dir)
    Wav2Vec2Model(
        Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16, 16),
            conv_stride=(5, 4),
            conv_kernel=(10, 4),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        )
    ).save_pretrained(w2v_dir)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(w2v_dir)
    clips = clip_files[:4]

    ast = AudioEncoder.from_pretrained(str(ast_dir))
    ast_embeddings = extract_embeddings(ast, FileClipDataset(clips, ast.sampling_rate), batch_size=2, progress=False)
    with torch.inference_mode():
        expected = ast.model(
            **ast.feature_extractor([_read_wav(p) for p in clips], sampling_rate=16000, return_tensors="pt")
        ).pooler_output.numpy()
    np.testing.assert_allclose(ast_embeddings, expected, atol=1e-4)

    w2v = AudioEncoder.from_pretrained(str(w2v_dir))
    w2v_embeddings = extract_embeddings(w2v, FileClipDataset(clips, w2v.sampling_rate), batch_size=4, progress=False)
    with torch.inference_mode():
        hidden = w2v.model(
            **w2v.feature_extractor([_read_wav(p) for p in clips], sampling_rate=16000, return_tensors="pt")
        ).last_hidden_state
    assert w2v_embeddings.shape == (4, 32)
    np.testing.assert_allclose(w2v_embeddings, hidden.mean(dim=1).numpy(), atol=1e-4)  # no pooler: mean over time


_RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import numpy as np
    from _data_helpers import write_wav
    from pathlib import Path
    from resp_audio_hf.extraction import AudioEncoder, FileClipDataset, extract_embeddings
    folder = Path(sys.argv[1])
    rng = np.random.default_rng(0)
    # One 60 s clip written 28 times: decoded float32 audio is 3.8 MB per clip.
    samples = 0.1 * rng.standard_normal(60 * 16000)
    paths = [write_wav(folder / f"c{{i}}.wav", samples, 16000) for i in range(28)]
    encoder = AudioEncoder.from_preset("tiny-m2d")
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extract_embeddings(encoder, FileClipDataset(paths[:2], 16000), batch_size=2, progress=False)  # warm up
    extract_embeddings(encoder, FileClipDataset(paths[:4], 16000), cache_dir=folder / "a", batch_size=2, progress=False)
    small = peak()
    extract_embeddings(encoder, FileClipDataset(paths, 16000), cache_dir=folder / "b", batch_size=2, shard_size=8, progress=False)
    print(json.dumps({{"peak_mb_4_clips": small, "peak_mb_28_clips": peak()}}))
    """
)


def test_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    script = tmp_path / "rss.py"
    script.write_text(_RSS_SCRIPT.format(tests=str(REPO_ROOT / "tests")))
    # A fixed mmap threshold stops glibc from keeping freed multi-MB buffers in its heap, so the peak RSS
    # reflects what the code still references rather than the allocator's growth policy.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "1048576"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, check=True, env=env
    )
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    # Holding the decoded audio would raise the peak by 3.8 MB per clip: ~90 MB from 4 to 28 clips.
    assert stats["peak_mb_28_clips"] - stats["peak_mb_4_clips"] < 30, stats


def test_segments_and_max_duration_are_cut_exactly(encoder, clip_files):
    dataset = FileClipDataset(
        clip_files[:2], encoder.sampling_rate, starts=[0.25, None], ends=[0.75, None], max_duration=0.5
    )
    segment, whole = dataset[0]["audio"], dataset[1]["audio"]
    full = _read_wav(clip_files[0])
    assert segment.size == int(0.5 * SR) and whole.size == int(0.5 * SR)
    np.testing.assert_allclose(segment, full[int(0.25 * SR) : int(0.75 * SR)], atol=1e-4)
