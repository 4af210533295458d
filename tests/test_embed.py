"""`resp-audio-hf embed` (resp_audio_hf.embed): every input form, both output formats, pooling, the resumable cache
and bad files. Embeddings are checked against the model run directly on audio decoded by soundfile (no resampling:
the files are written at the model's rate), so decoding, batching, ordering and writing are all covered."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile
import torch

from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel
from resp_audio_hf.cli import main as cli_main
from resp_audio_hf.embed import read_embeddings

RATE = 16000  # tiny-m2d's rate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(3)
    config = RespAudioConfig.from_preset("tiny-m2d")
    folder = tmp_path_factory.mktemp("model")
    RespAudioModel(config).eval().save_pretrained(folder)
    RespAudioFeatureExtractor.from_model_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Five recordings of different lengths at 16 kHz (WAV and FLAC, one stereo, one in a sub-folder)."""
    folder = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir()
    names = ["a.wav", "b.flac", "sub/c.wav", "d.wav", "sub/e.flac"]
    for i, name in enumerate(names):
        t = np.arange(int((0.6 + 0.7 * i) * RATE)) / RATE
        signal = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(t.size)
        if i == 3:
            signal = np.stack([signal, 0.5 * signal], axis=1)  # stereo: downmixed
        soundfile.write(folder / name, signal.astype(np.float32), RATE)
    return folder, [str(folder / name) for name in names]


def _reference(model_dir, paths, pooling=None):
    """The model and feature extractor run on each file alone, decoded by soundfile."""
    kwargs = {"pooling": pooling} if pooling else {}
    model = RespAudioModel.from_pretrained(model_dir, **kwargs).eval()
    extractor = RespAudioFeatureExtractor.from_pretrained(model_dir)
    vectors = []
    for path in paths:
        audio, rate = soundfile.read(path, dtype="float32")
        if audio.ndim == 2:
            # The files' route (resp_audio_hf.data.audio.load_audio) averages the channels, as the feature extractor
            # downmixes a [2, n] array.
            audio = audio.mean(axis=1)
        with torch.no_grad():
            vectors.append(model(**extractor([audio], sampling_rate=rate, return_tensors="pt")).pooler_output[0].numpy())
    return np.stack(vectors)


def _add_bad_files(folder):
    (folder / "empty.wav").write_bytes(b"")
    (folder / "not_audio.wav").write_text("this is not a RIFF file")
    return {str(folder / "empty.wav"): "empty file", str(folder / "not_audio.wav"): "not decodable"}


def test_folder_to_parquet_names_every_bad_file(model_dir, recordings, tmp_path, capsys):
    source, _ = recordings
    folder = tmp_path / "in"
    shutil.copytree(source, folder)
    bad = _add_bad_files(folder)
    # Passes the header check, fails later: the feature extractor refuses silence. Named all the same.
    soundfile.write(folder / "silent.wav", np.zeros(RATE, dtype=np.float32), RATE)
    bad[str(folder / "silent.wav")] = "refused by the feature extractor"
    output = tmp_path / "out" / "embeddings.parquet"

    code = cli_main(["embed", str(folder), "--model", str(model_dir), "-o", str(output), "--batch-size", "2",
                     "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    paths, vectors = read_embeddings(output)
    good = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".wav", ".flac") and str(p) not in bad)
    assert paths == good
    np.testing.assert_allclose(vectors, _reference(model_dir, good), atol=2e-5, rtol=1e-4)
    assert vectors.dtype == np.float32 and vectors.shape[1] == RespAudioConfig.from_preset("tiny-m2d").pooled_size

    import pyarrow.parquet as pq

    table = pq.read_table(output)
    assert table.column_names == ["row", "path", "embedding"]
    import pyarrow as pa

    assert pa.types.is_list(table.schema.field("embedding").type)
    assert table.schema.field("embedding").type.value_type == pa.float32()
    assert table.column("row").to_pylist() == list(range(len(good)))
    assert table.schema.metadata[b"resp_audio_hf.model"].decode() == str(model_dir)
    # Every bad file is named, with its reason, on stderr and in the skipped list.
    skipped = (output.with_suffix(".skipped.csv")).read_text()
    for path, reason in bad.items():
        assert f"skipped {path}: " in captured.err and reason in captured.err.split(f"skipped {path}: ")[1].splitlines()[0]
        assert path in skipped
    assert f"Embedded {len(good)} recordings" in captured.out


def test_glob_and_list_files_to_npy_with_pooling(model_dir, recordings, tmp_path, capsys):
    folder, paths = recordings
    listing = tmp_path / "lists"
    listing.mkdir()
    # A CSV with paths relative to itself, and a JSON list of objects with absolute paths.
    with open(listing / "files.csv", "w") as handle:
        handle.write("path,label\n")
        for path in paths[3:]:
            handle.write(f"{shutil.os.path.relpath(path, listing)},x\n")
    (listing / "files.json").write_text(json.dumps([{"path": paths[0]}, {"path": paths[1]}]))
    output = tmp_path / "emb.npy"
    code = cli_main([
        "embed", str(folder / "sub" / "*.wav"), str(listing / "files.csv"), str(listing / "files.json"),
        "--model", str(model_dir), "--pooling", "mean", "-o", str(output), "--quiet",
    ])
    assert code == 0, capsys.readouterr().err
    expected_order = [paths[2], str(listing / shutil.os.path.relpath(paths[3], listing)),
                      str(listing / shutil.os.path.relpath(paths[4], listing)), paths[0], paths[1]]
    names, vectors = read_embeddings(output)
    assert names == expected_order
    assert output.with_suffix(".index.csv").read_text().splitlines()[0] == "row,path"
    reference = _reference(model_dir, expected_order, pooling="mean")
    np.testing.assert_allclose(vectors, reference, atol=2e-5, rtol=1e-4)
    assert vectors.shape[1] == RespAudioConfig.from_preset("tiny-m2d").hidden_size  # mean pooling: one token's width


def test_cache_resumes_and_never_serves_stale_vectors(model_dir, recordings, tmp_path, monkeypatch):
    from resp_audio_hf.extraction import AudioEncoder

    folder, paths = recordings
    cache = tmp_path / "cache"
    args = ["embed", str(folder), "--model", str(model_dir), "--cache-dir", str(cache), "--quiet"]
    assert cli_main([*args, "-o", str(tmp_path / "first.parquet")]) == 0
    calls = []
    original = AudioEncoder.embed
    monkeypatch.setattr(AudioEncoder, "embed", lambda self, inputs: calls.append(1) or original(self, inputs))
    # Same model, same files, same pooling: served from the cache, nothing recomputed.
    assert cli_main([*args, "-o", str(tmp_path / "second.parquet")]) == 0
    assert calls == []
    np.testing.assert_array_equal(read_embeddings(tmp_path / "first.parquet")[1],
                                  read_embeddings(tmp_path / "second.parquet")[1])
    # Another pooling gives other vectors: it must miss the cache.
    assert cli_main([*args, "--pooling", "cls", "-o", str(tmp_path / "cls.parquet")]) == 0
    assert calls
    np.testing.assert_allclose(read_embeddings(tmp_path / "cls.parquet")[1],
                               _reference(model_dir, sorted(paths), pooling="cls"), atol=2e-5, rtol=1e-4)


def test_datasets_input_matches_files(model_dir, recordings, tmp_path, capsys):
    import datasets

    _, paths = recordings
    dataset = datasets.Dataset.from_dict({"audio": paths[:3], "id": [0, 1, 2]}).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"test": dataset}).save_to_disk(tmp_path / "ds")
    output = tmp_path / "ds.parquet"
    code = cli_main(["embed", "--dataset", str(tmp_path / "ds"), "--split", "test", "--model", str(model_dir),
                     "-o", str(output), "--quiet"])
    assert code == 0, capsys.readouterr().err
    names, vectors = read_embeddings(output)
    assert names == [f"{tmp_path / 'ds'}[test][{i}]" for i in range(3)]
    np.testing.assert_allclose(vectors, _reference(model_dir, paths[:3]), atol=2e-5, rtol=1e-4)


def test_nothing_readable_is_an_error_naming_the_files(model_dir, tmp_path, capsys):
    bad = _add_bad_files(tmp_path)
    code = cli_main(["embed", *bad, str(tmp_path / "missing.wav"), "--model", str(model_dir),
                     "-o", str(tmp_path / "x.parquet"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "No readable audio" in err and "missing.wav: file not found" in err
    assert all(path in err for path in bad)
    assert not (tmp_path / "x.parquet").exists()
    assert cli_main(["embed", str(tmp_path / "nothing_here" / "*.wav"), "--preset", "tiny-m2d",
                     "-o", str(tmp_path / "y.parquet")]) == 1
    assert "matches no file" in capsys.readouterr().err


def test_pooling_is_refused_for_other_model_types(tmp_path):
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    from resp_audio_hf.extraction import load_encoder

    config = ASTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       max_length=100, num_mel_bins=128)
    ASTModel(config).save_pretrained(tmp_path / "ast")
    ASTFeatureExtractor(max_length=100).save_pretrained(tmp_path / "ast")
    with pytest.raises(ValueError, match="applies to resp_audio .*is a .audio-spectrogram-transformer. model"):
        load_encoder(str(tmp_path / "ast"), pooling="mean")
