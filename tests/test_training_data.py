"""Pre-training data of training/: corpus loading and filters, mixing, sharding, crops, exact resume positions."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from _audio_helpers import decode_channel_mean as reference_decode
from _training_helpers import SAMPLING_RATE, cough_corpus, make_mixed_quality_folder

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor
from resp_audio_hf.training.config import (
    CorpusConfig,
    DataConfig,
    PretrainConfig,
    build_dataclass,
    load_config,
)
from resp_audio_hf.training.data import (
    ClipDecoder,
    MixtureBatchSampler,
    MixturePlan,
    RowFilter,
    build_batch_stream,
    crop_clip,
    crop_samples_for,
    load_corpus,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def feature_extractor():
    return RespAudioFeatureExtractor.from_model_config(
        RespAudioConfig.from_preset("tiny-m2d"), reject_silent_audio=False
    )


def data_config(shared_data: Path, **overrides) -> DataConfig:
    raw = {
        "batch_size": 3,
        "corpora": [
            {"name": "sprsound", "path": str(shared_data / "sprsound" / "test_wav"), "limit": 7, "repeat": 2},
            cough_corpus(shared_data, ["covid19 == true"], limit=5, name="cough"),
        ],
        **overrides,
    }
    return build_dataclass(DataConfig, raw)


# ---------------------------------------------------------------------------------------------- mixing and sharding


def test_repeat_counts_list_every_clip_that_many_times_per_epoch():
    plan = MixturePlan([5, 3], repeats=[2.0, 1.0], weights=[None, None], seed=0)
    items, seeds = plan.epoch(0)
    counts = Counter(map(tuple, items.tolist()))
    assert counts == Counter({**{(0, r): 2 for r in range(5)}, **{(1, r): 1 for r in range(3)}})
    assert len(set(seeds.tolist())) == len(seeds)
    again, again_seeds = MixturePlan([5, 3], [2.0, 1.0], [None, None], seed=0).epoch(0)
    assert np.array_equal(items, again) and np.array_equal(seeds, again_seeds)
    assert not np.array_equal(items, plan.epoch(1)[0]), "each epoch is reshuffled"


def test_fractional_repeat_adds_a_random_subset_without_duplicates():
    plan = MixturePlan([10], repeats=[2.5], weights=[None], seed=3)
    counts = Counter(plan.epoch(0)[0][:, 1].tolist())
    assert len(plan) == 25 and sorted(Counter(counts.values()).items()) == [(2, 5), (3, 5)]


def test_weights_split_the_epoch_in_proportion():
    plan = MixturePlan([1000, 10], repeats=[1.0, 1.0], weights=[3.0, 1.0], seed=0, epoch_size=400)
    per_corpus = Counter(plan.epoch(0)[0][:, 0].tolist())
    assert per_corpus == {0: 300, 1: 100}
    # The small corpus is walked in whole permutations: 10 passes over its 10 clips.
    assert Counter(Counter(row for c, row in plan.epoch(0)[0].tolist() if c == 1).values()) == {10: 10}
    with pytest.raises(ValueError, match="weight"):
        MixturePlan([5, 5], [1.0, 1.0], [1.0, None], seed=0)


def test_processes_get_disjoint_slices_of_each_global_batch():
    plan = MixturePlan([50, 23], repeats=[1.0, 2.0], weights=[None, None], seed=1)
    samplers = [MixtureBatchSampler(plan, batch_size=4, num_replicas=2, rank=rank) for rank in (0, 1)]
    for sampler in samplers:
        sampler.set_epoch(2)
    batches = [list(sampler) for sampler in samplers]
    assert len(batches[0]) == len(batches[1]) == len(plan) // 8 == 12
    items, seeds = plan.epoch(2)
    expected = [(int(c), int(r), int(s)) for (c, r), s in zip(items, seeds)][: 12 * 8]
    interleaved = [key for b0, b1 in zip(*batches) for key in b0 + b1]
    assert interleaved == expected, "global batch g = rank 0's batch g followed by rank 1's"
    with pytest.raises(ValueError, match="global batch"):
        MixtureBatchSampler(MixturePlan([3], [1.0], [None], seed=0), batch_size=4, num_replicas=1)


# ---------------------------------------------------------------------------------------------- crops and decoding


def test_crop_clip_windows_repeats_and_pads():
    rng = np.random.default_rng(0)
    clip = np.arange(100, dtype=np.float32)
    window = crop_clip(clip, 30, rng)
    assert window.shape == (30,) and np.array_equal(window, np.arange(window[0], window[0] + 30))
    starts = {int(crop_clip(clip, 30, np.random.default_rng(seed))[0]) for seed in range(200)}
    assert min(starts) == 0 and max(starts) == 70, "every start from 0 to len - crop is reachable"
    assert np.array_equal(crop_clip(clip[:40], 100, rng), np.concatenate([clip[:40], clip[:40], clip[:20]]))
    assert np.array_equal(crop_clip(clip[:40], 50, rng, "pad"), np.concatenate([clip[:40], np.zeros(10)]))
    with pytest.raises(ValueError, match="empty"):
        crop_clip(clip[:0], 10, rng)


def test_crop_length_gives_exactly_the_model_window(feature_extractor):
    for frames in (16, 208, 608):
        samples = crop_samples_for(feature_extractor, frames)
        assert feature_extractor.num_frames(samples) == frames
        assert feature_extractor.num_frames(samples - 1) < frames


def test_clip_decoder_resamples_real_audio_to_mono_16k(shared_data):
    import soundfile
    import torchaudio.functional

    path = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[0]
    native, rate = soundfile.read(path, dtype="float32")
    assert rate == 8000
    reference = torchaudio.functional.resample(
        torch.from_numpy(native.reshape(len(native), -1).mean(axis=1)), rate, SAMPLING_RATE
    ).numpy()
    crop = 16000
    decoded = ClipDecoder(SAMPLING_RATE, crop)({"path": str(path), "bytes": None}, np.random.default_rng(7))
    assert decoded.shape == (crop,) and decoded.dtype == np.float32
    # The crop starts where crop_clip puts it in the decoded clip; compare it with the same span of an independent
    # decode (soundfile + torchaudio's resampler rather than FFmpeg's).
    from torchcodec.decoders import AudioDecoder

    length = AudioDecoder(str(path), sample_rate=SAMPLING_RATE).get_all_samples().data.shape[1]
    assert abs(length - len(reference)) <= 2
    start = int(np.random.default_rng(7).integers(0, length - crop + 1))
    segment = reference[start : start + crop]
    correlation = np.corrcoef(decoded[200:-200], segment[200:-200])[0, 1]
    assert correlation > 0.99
    assert np.sqrt(np.mean(decoded**2)) == pytest.approx(np.sqrt(np.mean(segment**2)), rel=0.05)


def test_long_recordings_are_range_decoded_at_the_drawn_offset(tmp_path):
    import soundfile

    from resp_audio_hf.training.data import RANGE_DECODE_ABOVE_S

    seconds = int(RANGE_DECODE_ABOVE_S) + 10
    noise = (np.random.default_rng(0).normal(size=SAMPLING_RATE * seconds) * 0.1).astype(np.float32)
    soundfile.write(tmp_path / "long.wav", noise, SAMPLING_RATE, subtype="FLOAT")
    crop = 2 * SAMPLING_RATE
    decoded = ClipDecoder(SAMPLING_RATE, crop)(
        {"path": str(tmp_path / "long.wav"), "bytes": None}, np.random.default_rng(5)
    )
    start = round(np.random.default_rng(5).uniform(0, seconds - 2.0) * SAMPLING_RATE)
    np.testing.assert_array_equal(decoded, noise[start : start + crop])


def test_undecodable_file_is_named_in_the_error(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(RuntimeError, match="broken.wav"):
        ClipDecoder(SAMPLING_RATE, 1000)({"path": str(broken), "bytes": None}, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------- corpora


def test_folder_corpus_joins_metadata_and_filters_rows(shared_data):
    metadata = json.loads((shared_data / "covid19-cough" / "metadata.json").read_text())
    on_disk = {p.name for p in (shared_data / "covid19-cough" / "raw").iterdir()}
    expected = sorted(
        str(shared_data / "covid19-cough" / "raw" / row["filename"])
        for row in metadata
        if row.get("covid19") is True and row.get("verified") is True and row["filename"] in on_disk
    )
    spec = CorpusConfig(
        path=str(shared_data / "covid19-cough" / "raw"),
        metadata=str(shared_data / "covid19-cough" / "metadata.json"),
        file_column="filename",
        filters=["covid19 == true", "verified == true"],
    )
    table = load_corpus(spec, SAMPLING_RATE)
    assert 0 < len(table) < len(metadata)
    assert sorted(row["path"] for row in table["audio"]) == expected
    assert table.column_names == ["audio"]


def test_registry_corpus_split_and_filter(shared_data):
    spec = CorpusConfig(
        corpus="sprsound", root=str(shared_data / "sprsound"), split="test_inter", filters=["location == p1"]
    )
    table = load_corpus(spec, SAMPLING_RATE)
    on_disk = sorted(p.name for p in (shared_data / "sprsound" / "test_wav").glob("*_p1_*.wav"))
    names = {Path(row["path"]).name for row in table["audio"]}
    assert 0 < len(names) < len(on_disk) and names <= set(on_disk)
    with pytest.raises(ValueError, match="no split"):
        load_corpus(CorpusConfig(corpus="sprsound", root=str(shared_data / "sprsound"), split="train"), SAMPLING_RATE)


def test_row_filter_parsing_and_missing_values():
    row_filter = RowFilter.parse("cough_detected > 0.95")
    assert (row_filter.column, row_filter.op, row_filter.value) == ("cough_detected", ">", 0.95)
    assert row_filter(0.96) and not row_filter(0.95) and not row_filter(None) and not row_filter(float("nan"))
    assert RowFilter.parse("official_split == test_inter")("test_inter")
    with pytest.raises(ValueError, match="<column> <op> <value>"):
        RowFilter.parse("cough_detected is high")


# ---------------------------------------------------------------------------------------------- batch streams


def take(stream, count: int) -> tuple[list[torch.Tensor], list[dict]]:
    batches, states = [], []
    iterator = iter(stream)
    for _ in range(count):
        batches.append(next(iterator)["input_values"])
        states.append(stream.state_dict())
    return batches, states


def test_mixture_stream_resumes_exactly_and_ignores_worker_count(shared_data, feature_extractor):
    config = data_config(shared_data)  # 7 x 2 + 5 = 19 clips: 6 batches of 3 per epoch
    stream = build_batch_stream(config, feature_extractor, 208, seed=0)
    assert stream.batches_per_epoch == 6
    reference, states = take(stream, 9)  # crosses into the second epoch
    assert reference[0].shape == (3, 208, 80) and all(torch.isfinite(b).all() for b in reference)
    assert states[5]["epoch"] == 0 and states[6] == {**states[6], "epoch": 1, "batch_in_epoch": 1}

    resumed = build_batch_stream(config, feature_extractor, 208, seed=0)
    resumed.load_state_dict(states[3])
    continued, _ = take(resumed, 5)
    assert all(torch.equal(a, b) for a, b in zip(continued, reference[4:]))

    workers = build_batch_stream(data_config(shared_data, num_workers=2), feature_extractor, 208, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(take(workers, 7)[0], reference))

    other = build_batch_stream(
        data_config(shared_data, corpora=config_corpora_without_cough(shared_data)), feature_extractor, 208, seed=0
    )
    with pytest.raises(ValueError, match="sizes"):
        other.load_state_dict(states[3])


def config_corpora_without_cough(shared_data: Path) -> list[dict]:
    return [{"name": "sprsound", "path": str(shared_data / "sprsound" / "test_wav"), "limit": 7, "repeat": 2}]


def test_mixture_stream_shards_processes_apart(shared_data, feature_extractor):
    config = data_config(shared_data)
    ranks = [
        take(build_batch_stream(config, feature_extractor, 208, seed=0, rank=r, world_size=2), 3)[0] for r in (0, 1)
    ]
    single = take(build_batch_stream(config, feature_extractor, 208, seed=0), 2)[0]
    # Global batch g of 6 clips = rank 0's 3 clips then rank 1's; with one process they come as two batches of 3.
    assert torch.equal(ranks[0][0], single[0]) and torch.equal(ranks[1][0], single[1])
    assert not torch.equal(ranks[0][1], ranks[1][1])


def test_streaming_resumes_exactly_across_epochs_and_workers(shared_data, feature_extractor):
    corpora = [
        {"path": str(shared_data / "sprsound" / "test_wav"), "limit": 5, "weight": 2.0},
        {"path": str(shared_data / "covid19-cough" / "raw"), "limit": 3, "weight": 1.0},
    ]
    config = build_dataclass(DataConfig, {"batch_size": 2, "streaming": True, "shuffle_buffer": 4, "corpora": corpora})
    stream = build_batch_stream(config, feature_extractor, 208, seed=0, rank=0, world_size=1)
    assert stream.batches_per_epoch is None
    reference, states = take(stream, 12)
    epochs = [s["epoch"] for s in states]
    assert epochs[0] == 0 and epochs[-1] >= 1, "the stream runs on into the next epoch"

    resumed = build_batch_stream(config, feature_extractor, 208, seed=0)
    resumed.load_state_dict(states[4])
    assert all(torch.equal(a, b) for a, b in zip(take(resumed, 7)[0], reference[5:]))

    with_workers = build_dataclass(
        DataConfig, {"batch_size": 2, "streaming": True, "shuffle_buffer": 4, "num_workers": 2, "corpora": corpora}
    )
    workers = build_batch_stream(with_workers, feature_extractor, 208, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(take(workers, 6)[0], reference))


def test_streaming_splits_rows_between_processes(shared_data):
    from datasets.distributed import split_dataset_by_node

    config = CorpusConfig(path=str(shared_data / "sprsound" / "test_wav"), limit=12)
    stream = load_corpus(config, SAMPLING_RATE, streaming=True)
    parts = [[row["audio"]["path"] for row in split_dataset_by_node(stream, rank=r, world_size=2)] for r in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(row["audio"]["path"] for row in stream)


# ---------------------------------------------------------------------------------------------- configuration


def test_config_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("data:\n  corpora:\n    - path: /x\n  batch_size: 8\ntrain:\n  max_steps: 5\n")
    config = load_config(
        PretrainConfig, str(path), ["train.max_steps=7", "optimizer.betas=[0.9, 0.99]", "objective.mask_ratio=0.6"]
    )
    assert config.train.max_steps == 7 and config.optimizer.betas == (0.9, 0.99) and config.objective.mask_ratio == 0.6
    assert config.data.corpora[0].path == "/x" and config.data.batch_size == 8
    with pytest.raises(ValueError, match="valid keys"):
        load_config(PretrainConfig, str(path), ["train.max_stpes=7"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_config(PretrainConfig, str(path), ["train.max_steps"])
    with pytest.raises(ValueError, match="could not be converted"):
        load_config(PretrainConfig, str(path), ["train.max_steps=many"])
    with pytest.raises(ValueError, match="exactly one"):
        CorpusConfig(corpus="sprsound", path="/x")
    with pytest.raises(ValueError, match="exactly one"):
        load_config(PretrainConfig, str(path), ["data.corpora=[{path: /x, corpus: icbhi}]"])
    with pytest.raises(ValueError, match="corpora is empty"):
        load_config(PretrainConfig, None, ["train.max_steps=7"])


# ---------------------------------------------------------------------------------------------- unusable files, cache


@pytest.fixture
def mixed_quality_folder(shared_data, tmp_path):
    folder = tmp_path / "corpus"
    good, bad = make_mixed_quality_folder(shared_data, folder)
    return folder, good, bad


def test_unusable_files_are_named_and_replaced_within_their_batch(mixed_quality_folder, feature_extractor):
    folder, good, bad = mixed_quality_folder
    config = build_dataclass(DataConfig, {"batch_size": 3, "corpora": [{"path": str(folder)}]})
    stream = build_batch_stream(config, feature_extractor, 208, seed=0)
    assert stream.batches_per_epoch == 3 and stream.unusable_files == {}
    assert sorted(Path(p).name for p in stream.files["corpus"]) == sorted(good | bad)
    iterator = iter(stream)
    reported = []
    for _ in range(stream.batches_per_epoch):  # one epoch: every file once
        batch = next(iterator)
        values, unusable = batch["input_values"], batch["unusable_files"]
        assert values.shape == (3, 208, 80) and torch.isfinite(values).all()
        # Each unusable clip was replaced by a copy of a usable crop of the same batch.
        distinct = {tuple(row.flatten().tolist()) for row in values}
        assert len(distinct) == 3 - len(unusable)
        reported += unusable
    assert sorted(Path(path).name for path, _ in reported) == sorted(bad)
    reasons = {Path(path).name: reason for path, reason in reported}
    assert all(reasons[name].startswith("not decodable") for name in bad - {"nan.wav"})
    assert "non-finite" in reasons["nan.wav"]


def test_decoding_cache_leaves_unusable_files_out_and_matches_direct_decoding(
    mixed_quality_folder, feature_extractor, tmp_path
):
    folder, good, bad = mixed_quality_folder
    config = build_dataclass(
        DataConfig, {"batch_size": 2, "cache_dir": str(tmp_path / "cache"), "corpora": [{"path": str(folder)}]}
    )
    stream = build_batch_stream(config, feature_extractor, 208, seed=0)
    assert sorted(Path(p).name for p in stream.unusable_files) == sorted(bad)
    assert stream.batches_per_epoch == len(good) // 2
    corpus = stream.dataset.corpora[0]
    assert sorted(Path(p).name for p in corpus.paths) == sorted(good)
    for row, path in enumerate(corpus.paths):
        reference, rate = reference_decode(path, SAMPLING_RATE)
        assert rate == SAMPLING_RATE
        # float32 storage: the clip exactly as decoded without the cache.
        np.testing.assert_array_equal(corpus.clip(row), reference)
    batch = next(iter(stream))
    assert batch["unusable_files"] == [] and torch.isfinite(batch["input_values"]).all()


def test_cached_batches_equal_decoded_batches(shared_data, feature_extractor, tmp_path):
    corpora = [{"path": str(shared_data / "sprsound" / "test_wav"), "limit": 6}]
    direct = build_batch_stream(
        build_dataclass(DataConfig, {"batch_size": 3, "corpora": corpora}), feature_extractor, 208, seed=0
    )
    cached = build_batch_stream(
        build_dataclass(DataConfig, {"batch_size": 3, "corpora": corpora, "cache_dir": str(tmp_path)}),
        feature_extractor,
        208,
        seed=0,
    )
    for a, b in zip(take(direct, 3)[0], take(cached, 3)[0]):
        # The same crops (same seeds, same starts) of the same samples.
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_decoding_cache_is_reused_and_never_stale(shared_data, tmp_path):
    import shutil

    from resp_audio_hf.training.audio_cache import SAMPLES_NAME, decoded_corpus

    sources = sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:3]
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = [str(folder / f"clip{i}.wav") for i in range(2)]
    for source, path in zip(sources, paths):
        shutil.copy(source, path)
    cache = tmp_path / "cache"
    first = decoded_corpus(paths, SAMPLING_RATE, cache, "clips")
    stamp = (first.folder / SAMPLES_NAME).stat()
    again = decoded_corpus(paths, SAMPLING_RATE, cache, "clips")
    assert again.folder == first.folder and (again.folder / SAMPLES_NAME).stat().st_mtime_ns == stamp.st_mtime_ns

    # A file replaced by another recording: a new key, and the new content.
    shutil.copy(sources[2], paths[1])
    changed = decoded_corpus(paths, SAMPLING_RATE, cache, "clips")
    assert changed.folder != first.folder
    fresh = decoded_corpus(paths, SAMPLING_RATE, tmp_path / "other_cache", "clips")
    np.testing.assert_array_equal(changed.clip(1), fresh.clip(1))
    assert not np.array_equal(changed.clip(1)[:1000], first.clip(1)[:1000])
    # Another sampling rate or another file list is another cache.
    assert decoded_corpus(paths, 8000, cache, "clips").folder != changed.folder
    assert decoded_corpus(paths[:1], SAMPLING_RATE, cache, "clips").folder != changed.folder


def test_interrupted_cache_build_leaves_no_cache(shared_data, tmp_path, monkeypatch):
    from resp_audio_hf.training import audio_cache

    paths = [str(p) for p in sorted((shared_data / "sprsound" / "test_wav").glob("*.wav"))[:3]]
    original = audio_cache._DecodeEach.__getitem__

    def interrupted(self, index):
        if index == 2:
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(audio_cache._DecodeEach, "__getitem__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        audio_cache.decoded_corpus(paths, SAMPLING_RATE, tmp_path, "clips")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(audio_cache._DecodeEach, "__getitem__", original)
    assert len(audio_cache.decoded_corpus(paths, SAMPLING_RATE, tmp_path, "clips")) == 3
    assert len(list(tmp_path.glob(f"*/{audio_cache.INDEX_NAME}"))) == 1


def _assert_loaded_as_written(config, raw: dict, where: str) -> None:
    """Every key the YAML gives has exactly its value (ints in float fields as floats, lists in tuple fields as
    tuples); every key it leaves out has the dataclass default."""
    import dataclasses

    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name not in raw:
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            assert value == default, f"{where}.{field.name}: {value!r} is not the default {default!r}"
            continue
        given = raw[field.name]
        if dataclasses.is_dataclass(value):
            _assert_loaded_as_written(value, given, f"{where}.{field.name}")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            assert len(value) == len(given)
            for i, (item, item_raw) in enumerate(zip(value, given)):
                _assert_loaded_as_written(item, item_raw, f"{where}.{field.name}[{i}]")
        else:
            expected = tuple(given) if isinstance(value, tuple) else given
            assert value == expected, f"{where}.{field.name}: {value!r} != {expected!r}"
            if isinstance(given, int) and not isinstance(given, bool) and isinstance(value, float):
                continue  # an int written in a float field
            assert type(value) is type(expected), f"{where}.{field.name}: {type(value)} for {type(expected)}"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "training" / "configs").glob("*.yaml")))
def test_shipped_configs_load_exactly_as_written(path):
    """The OmegaConf loader against the YAML read by PyYAML and the dataclass defaults, for every shipped config."""
    import yaml

    from resp_audio_hf.training.finetune import FinetuneConfig

    cls = FinetuneConfig if path.name.startswith("finetune") else PretrainConfig
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    _assert_loaded_as_written(load_config(cls, str(path)), raw, path.name)
