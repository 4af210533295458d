"""The embedding cache shared by processes and damaged on disk: two real processes on one entry end with one result,
and a flipped, truncated or emptied file is named, dropped and recomputed."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _audio_helpers import sprsound_records
from _data_helpers import REPO_ROOT, write_tones

from resp_audio_hf.extraction import AudioEncoder, FileClipDataset, extract_embeddings

SR = 16000  # tiny-m2d's rate
CACHE_LOGGER = "resp_audio_hf.extraction.cache"


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    return write_tones(tmp_path_factory.mktemp("clips"), 8, SR, base_hz=150, step_hz=50)


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


# Embeds the clips with a one-clip-per-shard cache once every process of the test has reached the barrier, so that the
# processes write, consolidate and read one entry at the same time.
_EXTRACT_AT_THE_BARRIER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    from resp_audio_hf.extraction import AudioEncoder, FileClipDataset, extract_embeddings

    cache, output, barrier, name, parties = sys.argv[1:6]
    paths = json.loads(sys.argv[6])
    encoder = AudioEncoder.from_preset("tiny-m2d", seed=0)
    dataset = FileClipDataset(paths, encoder.sampling_rate, max_duration=3.0)
    Path(barrier, name).touch()
    while len(list(Path(barrier).iterdir())) < int(parties):
        time.sleep(0.005)
    np.save(output, extract_embeddings(encoder, dataset, cache_dir=cache, shard_size=1, batch_size=1, progress=False))
    """
)


def test_two_processes_on_one_cache_entry_end_with_one_result(encoder, tmp_path):
    """Two processes embed the same real recordings into the same cache at the same moment: both finish, with the
    same matrix as a run without a cache (before the entry lock, one died on a shard the other had removed)."""
    paths = [str(path) for path, _ in sprsound_records()[:6]]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _EXTRACT_AT_THE_BARRIER, str(tmp_path / "cache"), str(tmp_path / f"{name}.npy"),
             str(barrier), name, "2", json.dumps(paths)],
            env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    first, second = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert np.array_equal(first, second)
    reference = extract_embeddings(encoder, FileClipDataset(paths, SR, max_duration=3.0), progress=False)
    np.testing.assert_allclose(first, reference, atol=1e-5)
    (entry,) = [path for path in (tmp_path / "cache").iterdir() if path.is_dir()]
    assert sorted(path.name for path in entry.iterdir()) == ["embeddings.npy", "meta.json"]


def test_two_embed_commands_on_one_output_and_cache_agree(tmp_path):
    """`resp-audio-hf embed` twice at once, same inputs, output and cache: both succeed and the output is the matrix
    of a run without a cache."""
    paths = [str(path) for path, _ in sprsound_records()[6:10]]
    output = tmp_path / "out" / "embeddings.npy"
    command = [sys.executable, "-m", "resp_audio_hf", "embed", *paths, "--preset", "tiny-m2d", "-o", str(output),
               "--cache-dir", str(tmp_path / "cache"), "--max-duration", "3", "--quiet"]
    runs = [subprocess.Popen(command, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    from resp_audio_hf.embed import read_embeddings

    names, vectors = read_embeddings(output)
    assert names == paths
    fresh = AudioEncoder.from_preset("tiny-m2d")  # the preset's own seed, as the command builds it
    reference = extract_embeddings(fresh, FileClipDataset(paths, SR, max_duration=3.0), progress=False)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert not leftovers  # no temporary file left


# ---------------------------------------------------------------------------------------------------------------------
# Damaged entries


def _flip_a_byte(path, from_end: int = 9):
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, words",
    [
        (_flip_a_byte, "does not match its checksum"),
        (lambda path: path.write_bytes(path.read_bytes()[:-100]), "does not match its checksum"),
        (lambda path: path.write_bytes(b""), "does not match its checksum"),
    ],
    ids=["flipped byte", "truncated", "0 bytes"],
)
def test_a_damaged_complete_entry_is_named_and_recomputed(encoder, clip_files, tmp_path, caplog, damage, words):
    dataset = FileClipDataset(clip_files, SR)
    reference = extract_embeddings(encoder, dataset, cache_dir=tmp_path, progress=False)
    (final,) = tmp_path.glob("*/embeddings.npy")
    damage(final)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again = extract_embeddings(encoder, dataset, cache_dir=tmp_path, progress=False)
    assert np.array_equal(again, reference)
    assert any(str(final) in record.getMessage() and words in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        assert np.array_equal(extract_embeddings(encoder, dataset, cache_dir=tmp_path, progress=False), reference)
    assert not caplog.records  # the recomputed entry is whole again


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"x": "y"}', b'{"99": "beyond the items"}', b""])
def test_an_invalid_failed_json_is_named_and_the_entry_recomputed(encoder, clip_files, tmp_path, caplog, content):
    class NaNForTheFirstClip:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def embed(self, inputs):
            out = self.inner.embed(inputs)
            out[0] = np.nan
            return out

    dataset = FileClipDataset(clip_files[:2], SR)
    kwargs = {"cache_dir": tmp_path, "progress": False, "return_failures": True, "batch_size": 8}
    first, failures = extract_embeddings(NaNForTheFirstClip(encoder), dataset, **kwargs)
    assert list(failures) == [0]
    (failed_json,) = tmp_path.glob("*/failed.json")
    failed_json.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        again, failures = extract_embeddings(encoder, dataset, **kwargs)
    assert failures == {} and np.isfinite(again).all()
    np.testing.assert_allclose(again[1], first[1], atol=1e-6)
    assert any(str(failed_json) in record.getMessage() for record in caplog.records)


def test_a_corrupted_shard_is_named_and_recomputed(encoder, clip_files, tmp_path, caplog):
    class StopsAtItem6(FileClipDataset):
        stop = True

        def __getitem__(self, index):
            if index == 6 and self.stop:
                raise KeyboardInterrupt("simulated interruption")
            return super().__getitem__(index)

    dataset = StopsAtItem6(clip_files, SR)
    kwargs = {"cache_dir": tmp_path, "shard_size": 2, "batch_size": 2, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        extract_embeddings(encoder, dataset, **kwargs)
    shards = sorted(tmp_path.glob("*/shard_*.npy"))
    assert len(shards) == 3
    _flip_a_byte(shards[1])
    shards[2].write_bytes(b"")
    (shards[0].parent / ".shard_00003.npy.abcd.tmp.npy").write_bytes(b"left by a killed run")
    dataset.stop = False
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        resumed = extract_embeddings(encoder, dataset, **kwargs)
    np.testing.assert_allclose(resumed, extract_embeddings(encoder, dataset, progress=False), atol=1e-5)
    named = " ".join(record.getMessage() for record in caplog.records)
    assert str(shards[1]) in named and str(shards[2]) in named and str(shards[0]) not in named
    assert sorted(path.name for path in shards[0].parent.iterdir()) == ["embeddings.npy", "meta.json"]


def test_an_unreadable_meta_json_is_named_as_such(encoder, clip_files, tmp_path, caplog):
    dataset = FileClipDataset(clip_files[:2], SR)
    reference = extract_embeddings(encoder, dataset, cache_dir=tmp_path, progress=False)
    (meta,) = tmp_path.glob("*/meta.json")
    meta.write_text('{"format": ')
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        assert np.array_equal(extract_embeddings(encoder, dataset, cache_dir=tmp_path, progress=False), reference)
    assert any(f"{meta} is unreadable" in record.getMessage() for record in caplog.records)
