"""
ONNX export (`resp-audio-hf export --format onnx`) of both families, run by ONNX Runtime on the CPU and held to the
eager model within 1e-4 on real recordings of several lengths: SPRSound lung sounds (whole, 9.2 and 15.4 s, and cut
to shorter pieces) and CC0 coughs. The ViTs are the tiny presets with every pooling; EfficientAT is the shipped
`pretrained/efficientat-mn04-as` with its head. Also: padded batches (the ViT graph masks padding, the mn04 runner
groups clips by length), a run that imports no torch, `embed --backend onnxruntime` and the pipeline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _audio_helpers import COVID19_COUGH_DIR, SPRSOUND_DIR, require_dir
from _paths import MN04_DIR
from _preset_helpers import TINY_PRESETS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioForAudioClassification  # noqa: E402
from resp_audio_hf.cli import main as cli_main  # noqa: E402
from resp_audio_hf.data.audio import load_audio  # noqa: E402
from resp_audio_hf.export import onnx_runtime  # noqa: E402
from resp_audio_hf.export.onnx import (  # noqa: E402
    ONNX_TOLERANCE,
    eager_outputs,
    export_onnx,
    load_model_for_export,
)
from resp_audio_hf.export.onnx_runtime import OnnxAudioModel  # noqa: E402
from resp_audio_hf.pooling import POOLINGS  # noqa: E402

# Pieces cut from the recordings: shorter than one tiny-ViT window (about 2 s), a few windows, and whole.
PIECE_SECONDS = (0.7, 1.9, 4.3, None)


@pytest.fixture(scope="module")
def real_recordings():
    """Two SPRSound recordings (9.2 s and 15.4 s) and two coughs, as file paths."""
    wavs = sorted(require_dir(SPRSOUND_DIR / "test_wav").glob("*.wav"))
    import soundfile

    by_length = {}
    for wav in wavs:
        by_length.setdefault(round(soundfile.info(wav).duration), wav)
        if len(by_length) == 2:
            break
    coughs = sorted(require_dir(COVID19_COUGH_DIR / "raw").glob("*.mp3"))[:2]
    return [*by_length.values(), *coughs]


def clips_at(paths, rate: int) -> list[tuple[str, np.ndarray]]:
    """(name, samples at `rate`) for each recording, whole and cut to each of `PIECE_SECONDS`."""
    clips = []
    for path in paths:
        audio, _ = load_audio(path, rate)
        for seconds in PIECE_SECONDS:
            piece = audio if seconds is None else audio[: int(seconds * rate)]
            if seconds is None or piece.size < audio.size:
                clips.append((f"{Path(path).name}[{piece.size / rate:.2f}s]", piece))
    return clips


def compare(model, feature_extractor, folder, clips) -> dict[str, float]:
    """Max |eager - ONNX Runtime| per output: every clip alone, then all clips in one padded batch."""
    runtime = OnnxAudioModel(folder)
    rate = feature_extractor.sampling_rate
    worst: dict[str, float] = {}
    batches = [[audio] for _, audio in clips] + [[audio for _, audio in clips]]
    for batch in batches:
        features = feature_extractor(batch, sampling_rate=rate, return_tensors="pt")
        expected = eager_outputs(model, features)
        got = runtime(features["input_values"].numpy(), features["attention_mask"].numpy())
        assert set(got) == set(expected)
        for name, values in expected.items():
            assert got[name].shape == values.shape
            worst[name] = max(worst.get(name, 0.0), float(np.abs(values - got[name]).max()))
    return worst


@pytest.fixture(scope="module")
def mn04_export(tmp_path_factory):
    model, feature_extractor = load_model_for_export(str(MN04_DIR))
    folder = tmp_path_factory.mktemp("onnx") / "mn04"
    export_onnx(model, feature_extractor, folder)
    return model, feature_extractor, folder


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_vit_export_matches_eager_on_real_clips(preset, pooling, real_recordings, tmp_path, single_torch_thread):
    model, feature_extractor = load_model_for_export(preset=preset, pooling=pooling)
    exported = export_onnx(model, feature_extractor, tmp_path / "onnx")
    assert exported.input_names == ("input_values", "attention_mask")
    assert {p.name for p in exported.folder.iterdir()} == {"model.onnx", "config.json", "preprocessor_config.json"}
    assert json.loads((exported.folder / "config.json").read_text())["pooling"] == pooling
    clips = clips_at(real_recordings, feature_extractor.sampling_rate)
    window_seconds = model.config.window_frames * feature_extractor.hop_length / feature_extractor.sampling_rate
    assert min(a.size for _, a in clips) < window_seconds * feature_extractor.sampling_rate  # one window, padded
    assert max(a.size for _, a in clips) > 5 * window_seconds * feature_extractor.sampling_rate  # many windows
    worst = compare(model, feature_extractor, exported.folder, clips)
    print(f"{preset} {pooling}: max |eager - onnx| {worst}")
    assert worst["pooler_output"] < ONNX_TOLERANCE


def test_vit_classifier_export_gives_the_eager_logits(real_recordings, tmp_path, single_torch_thread):
    config = RespAudioConfig.from_preset("tiny-passt", num_labels=5, pooling="cls")
    torch.manual_seed(1)
    model = RespAudioForAudioClassification(config).eval()
    feature_extractor = RespAudioFeatureExtractor.from_model_config(config)
    exported = export_onnx(model, feature_extractor, tmp_path / "onnx")
    assert exported.output_names == ("pooler_output", "logits")
    worst = compare(model, feature_extractor, exported.folder, clips_at(real_recordings[:2], 32000))
    assert max(worst.values()) < ONNX_TOLERANCE, worst


def test_mn04_export_matches_eager_on_real_clips(mn04_export, real_recordings, single_torch_thread):
    model, feature_extractor, folder = mn04_export
    runtime = OnnxAudioModel(folder)
    assert runtime.input_names == ("input_values",) and not runtime.takes_mask
    assert runtime.output_names == ("pooler_output", "logits")
    clips = clips_at(real_recordings, feature_extractor.sampling_rate)
    worst = compare(model, feature_extractor, folder, clips)
    print(f"mn04: max |eager - onnx| {worst}")
    assert max(worst.values()) < ONNX_TOLERANCE, worst


def test_mn04_mean_pooling_export(real_recordings, tmp_path, single_torch_thread):
    model, feature_extractor = load_model_for_export(str(MN04_DIR), pooling="mean", with_head=False)
    exported = export_onnx(model, feature_extractor, tmp_path / "onnx")
    assert exported.output_names == ("pooler_output",)
    worst = compare(model, feature_extractor, exported.folder, clips_at(real_recordings[2:], 32000))
    assert worst["pooler_output"] < ONNX_TOLERANCE
    assert OnnxAudioModel(exported.folder)(np.zeros((1, 300, 128), np.float32))["pooler_output"].shape == (1, 384)


def test_runtime_runs_without_torch(mn04_export, real_recordings, tmp_path):
    """Features computed here; the session run in a process where importing torch (or transformers) fails."""
    folders = {"mn04": mn04_export[2]}
    model, feature_extractor = load_model_for_export(preset="tiny-m2d")
    folders["tiny-m2d"] = export_onnx(model, feature_extractor, tmp_path / "m2d").folder
    models = {"mn04": (mn04_export[0], mn04_export[1]), "tiny-m2d": (model, feature_extractor)}
    expected = {}
    for name, (model, feature_extractor) in models.items():
        rate = feature_extractor.sampling_rate
        clips = [audio for _, audio in clips_at(real_recordings[:1], rate)]
        features = feature_extractor(clips, sampling_rate=rate, return_tensors="np")
        np.savez(tmp_path / f"{name}.npz", **features)
        expected[name] = eager_outputs(model, feature_extractor(clips, sampling_rate=rate, return_tensors="pt"))
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        sys.modules["torch"] = None
        sys.modules["transformers"] = None
        import numpy as np
        spec = importlib.util.spec_from_file_location("onnx_runtime", {onnx_runtime.__file__!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, folder in {({k: str(v) for k, v in folders.items()})!r}.items():
            features = np.load({str(tmp_path)!r} + f"/{{name}}.npz")
            outputs = module.OnnxAudioModel(folder)(features["input_values"], features["attention_mask"])
            np.savez({str(tmp_path)!r} + f"/{{name}}.out.npz", **outputs)
        assert not any(sys.modules.get(m) for m in ("torch", "transformers"))
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, outputs in expected.items():
        got = np.load(tmp_path / f"{name}.out.npz")
        for key, values in outputs.items():
            assert np.abs(got[key] - values).max() < ONNX_TOLERANCE, (name, key)


def test_embed_backend_onnxruntime_equals_torch(real_recordings, tmp_path, capsys):
    folder = tmp_path / "m2d-onnx"
    assert cli_main(["export", "--format", "onnx", "--preset", "tiny-m2d", "--pooling", "mean", str(folder)]) == 0
    wavs = [str(p) for p in real_recordings]
    common = ["--quiet", "--no-cache", "--batch-size", "3"]
    assert cli_main(["embed", *wavs, "--preset", "tiny-m2d", "--pooling", "mean", "-o", str(tmp_path / "t.npy"),
                     *common]) == 0
    assert cli_main(["embed", *wavs, "--model", str(folder), "--backend", "onnxruntime", "-o",
                     str(tmp_path / "o.npy"), *common]) == 0
    eager, exported = np.load(tmp_path / "t.npy"), np.load(tmp_path / "o.npy")
    assert eager.shape == exported.shape == (len(wavs), RespAudioConfig.from_preset("tiny-m2d").hidden_size)
    assert np.abs(eager - exported).max() < ONNX_TOLERANCE
    capsys.readouterr()
    # The pooling is in the graph: another one is refused, and so is a folder that is not an export.
    assert cli_main(["embed", *wavs, "--model", str(folder), "--backend", "onnxruntime", "--pooling", "cls",
                     "-o", str(tmp_path / "x.npy"), *common]) == 2
    assert "exported with pooling 'mean'" in capsys.readouterr().err
    assert cli_main(["embed", *wavs, "--model", str(MN04_DIR), "--backend", "onnxruntime",
                     "-o", str(tmp_path / "x.npy"), *common]) == 2
    assert "not an exported ONNX folder" in capsys.readouterr().err


def test_export_command_checks_real_files_and_refuses_a_full_folder(real_recordings, tmp_path, capsys):
    folder = tmp_path / "mn04"
    check = [str(p) for p in real_recordings[1:3]]
    assert cli_main(["export", "--model", str(MN04_DIR), str(folder), "--check", *check]) == 0
    printed = capsys.readouterr().out
    assert "outputs pooler_output, logits" in printed and printed.count("max |eager - onnxruntime|") == 2
    assert cli_main(["export", "--model", str(MN04_DIR), str(folder)]) == 1
    assert "is not empty" in capsys.readouterr().err


def test_pipeline_with_onnxruntime_gives_the_eager_scores(mn04_export, real_recordings, hub_offline):
    from transformers import pipeline

    from resp_audio_hf.extraction.onnx_encoder import onnx_audio_classification_pipeline

    onnx_pipe = onnx_audio_classification_pipeline(mn04_export[2])
    eager_pipe = pipeline("audio-classification", model=str(MN04_DIR))
    for path in real_recordings[2:]:
        got, expected = onnx_pipe(str(path), top_k=5), eager_pipe(str(path), top_k=5)
        assert [g["label"] for g in got] == [e["label"] for e in expected]
        assert np.allclose([g["score"] for g in got], [e["score"] for e in expected], atol=ONNX_TOLERANCE)
