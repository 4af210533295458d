"""Errors that name the file and the fix: a full disk, damaged weights, an unknown model type, a missing extra, an
empty pipeline input, and FFmpeg's failures without torchcodec's C++ source paths."""

from __future__ import annotations

import json
import shutil
import sys
from unittest import mock

import numpy as np
import pytest
from _paths import MN04_DIR

from resp_audio_hf.cli import main as cli_main
from resp_audio_hf.data.file_io import atomic_save_npy, atomic_write_text
from resp_audio_hf.extraction import AudioEncoder, EncoderLoadError


def test_a_short_write_names_the_file_and_the_full_disk(tmp_path):
    target = tmp_path / "out" / "embeddings.npy"
    with mock.patch("numpy.save", side_effect=OSError("43008 requested and 13280 written")):
        with pytest.raises(OSError, match=rf"Could not write {target}: 43008 requested.*disk is probably full"):
            atomic_save_npy(target, np.zeros(3))
    assert not list(target.parent.iterdir())  # no temporary file left
    import errno

    with mock.patch("pathlib.Path.write_text", side_effect=OSError(errno.ENOSPC, "No space left on device")):
        with pytest.raises(OSError, match=rf"Could not write {tmp_path / 'a.txt'}: No space left.*disk is probably full"):
            atomic_write_text(tmp_path / "a.txt", "x")


def test_truncated_weights_are_named(tmp_path):
    folder = tmp_path / "mn04"
    shutil.copytree(MN04_DIR, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(EncoderLoadError, match=rf"{weights} could not be read .* damaged or incomplete"):
        AudioEncoder.from_pretrained(str(folder))
    assert cli_main(["embed", str(MN04_DIR / "README.md"), "--model", str(folder), "-o", str(tmp_path / "e.npy")]) == 2


def test_an_unknown_model_type_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bogus-net"}))
    with pytest.raises(EncoderLoadError, match="config.json names model_type 'bogus-net', which this transformers does not"):
        AudioEncoder.from_pretrained(str(tmp_path))


def test_a_missing_extra_is_named_with_its_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # imports of it now raise ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    wav = tmp_path / "a.wav"
    import soundfile

    soundfile.write(wav, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    code = cli_main(["embed", str(wav), "--preset", "tiny-m2d", "-o", str(tmp_path / "e.npy"), "--quiet"])
    assert code == 1
    assert "needs torchcodec, which is not installed: python -m pip install 'resp_audio_hf[audio]'" in (
        capsys.readouterr().err
    )


@pytest.fixture(scope="module")
def tagger():
    from transformers import pipeline

    import resp_audio_hf  # noqa: F401  (registers the pipeline)

    return pipeline("audio-classification", model=str(MN04_DIR))


def test_an_empty_list_to_the_pipeline_is_refused_clearly(tagger):
    with pytest.raises(ValueError, match="empty list of inputs"):
        tagger([])


def test_pipeline_decode_errors_carry_no_cpp_source_paths(tagger, tmp_path):
    from _audio_helpers import sprsound_records

    cut = tmp_path / "broken.wav"
    data = sprsound_records()[0][0].read_bytes()
    cut.write_bytes(data[:44])  # a WAV header and no sample: FFmpeg's error names its C++ source file
    with pytest.raises(ValueError) as info:
        tagger(str(cut))
    assert str(cut) in str(info.value) and ".cpp" not in str(info.value) and "/__w/" not in str(info.value)


def test_the_encoder_loads_quietly_from_the_shipped_classifier_folder():
    """AutoModel (the bare encoder) from the AudioSet classifier checkpoint leaves the head out by design: no LOAD
    REPORT listing the classifier keys as UNEXPECTED, which read like an error. Run in a fresh process, as a user
    would, so that no test's logging settings hide the report."""
    import os
    import subprocess

    code = (
        "import resp_audio_hf\nfrom transformers import AutoModel\n"
        f"print(type(AutoModel.from_pretrained({str(MN04_DIR)!r})).__name__)"
    )
    env = {**os.environ, "PYTHONPATH": str(MN04_DIR.parents[1] / "src"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("TRANSFORMERS_VERBOSITY", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "EfficientATModel"
    assert "UNEXPECTED" not in done.stdout + done.stderr and "LOAD REPORT" not in done.stdout + done.stderr


def test_the_shipped_model_refuses_silent_files(tmp_path):
    """A published folder's preprocessor refuses all-zero files (the retired small-m2d-resp kept pre-training's
    `reject_silent_audio: false` and embedded them): `embed` skips them, naming the file. export_pretrained's side is
    tested in test_training_pretrain."""
    import soundfile

    from resp_audio_hf.embed import embed_inputs, files_input

    folder = MN04_DIR
    silent, sound = tmp_path / "silent.wav", tmp_path / "sound.wav"
    soundfile.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    soundfile.write(sound, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    result = embed_inputs(files_input([str(silent), str(sound)]), AudioEncoder.from_pretrained(str(folder)),
                          tmp_path / "e.parquet", progress=False)
    assert result.n_embedded == 1 and [s.path for s in result.skipped] == [str(silent)]
    assert "silent" in result.skipped[0].reason


def test_embed_and_bench_name_an_unloadable_model_alike(tmp_path, capsys):
    """One loader (`extraction.load_encoder`) behind both commands: a model that cannot be loaded is named alike."""
    missing = tmp_path / "no-such-model"
    expected = f"could not load the model: {missing} is not a local folder, and HF_HUB_OFFLINE is set, so the Hub was not asked"
    assert cli_main(["embed", str(MN04_DIR / "README.md"), "--model", str(missing), "-o", str(tmp_path / "e.npy")]) != 0
    assert expected in capsys.readouterr().err
    assert cli_main(["bench", "--model", str(missing), "--tasks", "S1", "--data-root", str(tmp_path)]) != 0
    assert expected in capsys.readouterr().err
