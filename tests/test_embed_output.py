"""`embed`'s output is published as one: a `.npy` matrix and its index that do not belong together are refused by
`read_embeddings`, a run that dies while writing leaves an output that reads as unfinished, and the temporary files
of a killed run are removed by the next."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from resp_audio_hf import embed_output
from resp_audio_hf.embed import EmbeddingOutputError, embed_inputs, files_input, read_embeddings

RATE = 16000


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(1)
    for i in range(4):
        soundfile.write(folder / f"r{i}.wav", (0.2 * rng.standard_normal(RATE // 2 + 800 * i)).astype(np.float32), RATE)
    return sorted(str(path) for path in folder.glob("*.wav"))


def test_an_index_from_another_run_is_refused(encoder, recordings, tmp_path):
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    embed_inputs(files_input(recordings), encoder, first, progress=False)
    embed_inputs(files_input(recordings[:2]), encoder, second, progress=False)
    names, vectors = read_embeddings(first)
    assert names == recordings and vectors.shape[0] == 4
    # The index of the other run beside the matrix (as a crash between the two writes left it): 4 rows, 2 paths.
    second.with_suffix(".index.csv").replace(first.with_suffix(".index.csv"))
    with pytest.raises(EmbeddingOutputError, match=r"first\.index\.csv is not the file first\.manifest\.json"):
        read_embeddings(first)


def test_a_run_that_dies_while_writing_leaves_an_unfinished_output(encoder, recordings, tmp_path, monkeypatch):
    output = tmp_path / "emb.npy"
    embed_inputs(files_input(recordings), encoder, output, progress=False)
    real_write_text = embed_output.atomic_write_text

    def dies_on_the_index(path, text):
        if str(path).endswith(".index.csv"):
            raise KeyboardInterrupt("killed between the matrix and its index")
        return real_write_text(path, text)

    monkeypatch.setattr(embed_output, "atomic_write_text", dies_on_the_index)
    with pytest.raises(KeyboardInterrupt):
        embed_inputs(files_input(recordings[:3]), encoder, output, progress=False)
    with pytest.raises(EmbeddingOutputError, match="emb.npy has no manifest .* did not finish"):
        read_embeddings(output)
    monkeypatch.undo()
    embed_inputs(files_input(recordings[:3]), encoder, output, progress=False)
    names, vectors = read_embeddings(output)
    assert names == recordings[:3] and vectors.shape[0] == 3


def test_temporary_files_of_a_killed_run_are_removed(encoder, recordings, tmp_path):
    output = tmp_path / "emb.npy"
    leftovers = [tmp_path / ".emb.npy.k2j4l1.tmp.npy", tmp_path / ".emb.index.csv.x81nd0.tmp"]
    unrelated = tmp_path / ".other.npy.abc.tmp.npy"  # not this output's: left alone
    for path in [*leftovers, unrelated]:
        path.write_bytes(b"half written")
    embed_inputs(files_input(recordings), encoder, output, progress=False)
    assert not any(path.exists() for path in leftovers) and unrelated.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted(
        [".other.npy.abc.tmp.npy", "emb.index.csv", "emb.manifest.json", "emb.npy"]
    )


def test_parquet_output_carries_its_skipped_files(encoder, recordings, tmp_path):
    import json

    import pyarrow.parquet as pq

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    output = tmp_path / "emb.parquet"
    embed_inputs(files_input([*recordings, str(broken)]), encoder, output, progress=False)
    recorded = json.loads(pq.read_table(output).schema.metadata[b"resp_audio_hf.skipped"])
    assert [path for path, _ in recorded] == [str(broken)]
    assert str(broken) in output.with_suffix(".skipped.csv").read_text()


def test_a_file_name_that_is_not_utf8_is_embedded_and_named_with_escapes(recordings, tmp_path, capsys):
    """A valid WAV named in Latin-1 (`tos_\\xf1and\\xfa.wav`) was skipped with a torchcodec type error, and the run then
    died writing the skipped list after the Parquet, leaving the previous run's `.skipped.csv` behind."""
    import os
    import shutil

    from resp_audio_hf.cli import main as cli_main

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(recordings[0], folder / "plain.wav")
    latin1 = os.path.join(os.fsencode(folder), b"tos_\xf1and\xfa.wav")
    shutil.copy(recordings[1], latin1)
    output = tmp_path / "out" / "emb.parquet"
    output.parent.mkdir()
    output.with_suffix(".skipped.csv").write_text("path,reason\nold.wav,from an earlier run\n")
    code = cli_main(["embed", str(folder), "--preset", "tiny-m2d", "-o", str(output), "--quiet"])
    assert code == 0, capsys.readouterr().err
    names, vectors = read_embeddings(output)
    assert names == [str(folder / "plain.wav"), str(folder) + "/tos_\\xf1and\\xfa.wav"]
    assert not output.with_suffix(".skipped.csv").exists()
    # The same recording under a UTF-8 name gets the same embedding.
    _, again = embed_and_read([recordings[0], recordings[1]], tmp_path / "utf8.parquet")
    np.testing.assert_allclose(vectors, again, atol=1e-6)


def embed_and_read(paths, output):
    from resp_audio_hf.cli import main as cli_main

    assert cli_main(["embed", *paths, "--preset", "tiny-m2d", "-o", str(output), "--quiet"]) == 0
    return read_embeddings(output)


def test_a_folder_and_a_glob_over_it_list_the_same_files_and_name_what_they_skip(recordings, tmp_path):
    """Dangling links, folders named `*.wav` and linked folders were dropped from a folder without a word, and a glob
    over the same folder gave another set."""
    import os
    import shutil

    from resp_audio_hf.embed import list_audio_sources

    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copy(recordings[0], root / "a.wav")
    shutil.copy(recordings[1], root / "sub" / "b.wav")
    (root / "folder.wav").mkdir()
    os.symlink(root / "missing.wav", root / "dangling.wav")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(recordings[2], elsewhere / "c.wav")
    os.symlink(elsewhere, root / "linked")
    (root / "._a.wav").write_bytes(b"AppleDouble")

    by_folder, folder_skipped = list_audio_sources([str(root)])
    by_glob, glob_skipped = list_audio_sources([str(root / "**" / "*.wav")])
    assert by_folder == by_glob == sorted(str(p) for p in [root / "a.wav", root / "sub" / "b.wav", root / "linked" / "c.wav"])
    reasons = {s.path: s.reason for s in folder_skipped}
    assert "directory" in reasons.pop(str(root / "folder.wav"))
    assert "dangling symbolic link" in reasons.pop(str(root / "dangling.wav"))
    assert "hidden" in reasons.pop(str(root / "._a.wav")) and not reasons
    assert {s.path for s in glob_skipped} == {str(root / "folder.wav"), str(root / "dangling.wav")}


def test_files_outside_the_feature_extractors_limits_are_refused_like_arrays(encoder, tmp_path):
    """A file at 500 Hz or with 6 channels was embedded, while the same audio as an array is refused."""
    low, six = tmp_path / "low.wav", tmp_path / "six.wav"
    rng = np.random.default_rng(4)
    soundfile.write(low, (0.1 * rng.standard_normal(4000)).astype(np.float32), 500)
    soundfile.write(six, (0.1 * rng.standard_normal((16000, 6))).astype(np.float32), 16000)
    extractor = encoder.feature_extractor
    with pytest.raises(ValueError, match="plausible audio rate"):
        extractor(soundfile.read(low, dtype="float32")[0], sampling_rate=500)
    with pytest.raises(ValueError, match="6 channels"):
        extractor(soundfile.read(six, dtype="float32")[0], sampling_rate=16000)
    inputs = files_input([str(low), str(six)])
    assert inputs.paths == []
    reasons = {s.path: s.reason for s in inputs.skipped}
    assert "500 Hz" in reasons[str(low)] and "6 channels" in reasons[str(six)]
    from resp_audio_hf.data.audio import AudioDecodeError, load_audio

    for path, words in ((low, "500 Hz"), (six, "6 channels")):  # the decode route (bench, demo, collator) too
        with pytest.raises(AudioDecodeError, match=words):
            load_audio(path, 16000)


def test_embed_says_when_the_cache_was_used(recordings, tmp_path, capsys, caplog):
    import logging

    from resp_audio_hf.cli import main as cli_main

    argv = ["-v", "embed", *recordings, "--preset", "tiny-m2d", "-o", str(tmp_path / "e.npy"), "--quiet"]
    with caplog.at_level(logging.INFO, logger="resp_audio_hf.extraction.extract"):
        assert cli_main(argv) == 0
        assert not [r for r in caplog.records if "read from the cache" in r.getMessage()]
        assert cli_main(argv) == 0
    assert f"Embedding cache: {tmp_path / 'e.npy.cache'}" in capsys.readouterr().out
    assert [r for r in caplog.records if f"all {len(recordings)} embeddings read from the cache" in r.getMessage()]
