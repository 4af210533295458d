"""scripts/convert_checkpoint.py and resp_audio_hf.convert: saved folders, safe loading and failure behaviour."""

import contextlib
import importlib.util
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _paths import REPO_ROOT

from resp_audio_hf.convert import convert_m2d, convert_passt, resize_time_axis, save_converted

pytest.importorskip("timm")
from test_fidelity_m2d import HEADS, NORM_STATS, m2d_forward_encoder, make_fake_m2d_checkpoint  # noqa: E402

SCRIPT = REPO_ROOT / "scripts" / "convert_checkpoint.py"
REMOTE_CODE = ("configuration_resp_audio.py", "modeling_resp_audio.py", "feature_extraction_resp_audio.py")


class Payload:
    """Stands for any Python object a malicious or merely old pickle could carry besides tensors."""


def load_cli():
    spec = importlib.util.spec_from_file_location("convert_checkpoint", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return load_cli().main(list(args))


def run_cli_error(*args: str) -> tuple[int, str]:
    """The exit code and stderr of a conversion that fails."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        code = run_cli(*args)
    return code, errors.getvalue()


def leftovers(folder: Path) -> list[str]:
    """Temporary folders a conversion might have left next to its output."""
    return [path.name for path in folder.iterdir() if path.name.startswith(".")]


@pytest.fixture(scope="module")
def fake_m2d(tmp_path_factory):
    return make_fake_m2d_checkpoint(tmp_path_factory.mktemp("m2d"))


def test_cli_writes_a_folder_the_auto_classes_load(fake_m2d, tmp_path):
    """The real command line in a fresh process; the folder then loads with AutoModel/AutoFeatureExtractor."""
    from transformers import AutoFeatureExtractor, AutoModel

    vit, source = fake_m2d
    output = tmp_path / "converted"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--family", "m2d", str(source), str(output), "--num-attention-heads", str(HEADS)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "decoder_embed.weight" in result.stdout  # it says what it left out
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", *REMOTE_CODE):
        assert (output / name).is_file(), name
    assert leftovers(tmp_path) == []

    preprocessor = json.loads((output / "preprocessor_config.json").read_text())
    assert (preprocessor["mean"], preprocessor["std"]) == pytest.approx(NORM_STATS)
    model = AutoModel.from_pretrained(output).eval()
    fe = AutoFeatureExtractor.from_pretrained(output)
    assert fe.frontend == "m2d" and fe.mean == pytest.approx(NORM_STATS[0])
    spectrogram = torch.randn(1, 1, 80, 208, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = m2d_forward_encoder(vit, spectrogram)
        ours = model(spectrogram[:, 0].transpose(1, 2)).last_hidden_state
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=0)


def test_pickle_with_python_objects_is_refused(tmp_path):
    source = tmp_path / "passt.pt"
    torch.save({"cls_token": torch.zeros(1, 1, 8), "extra": Payload()}, source)
    with pytest.raises(ValueError, match=r"cannot be loaded safely.*Payload|Payload.*cannot be loaded safely"):
        convert_passt(source)
    output = tmp_path / "out"
    code, errors = run_cli_error("--family", "passt", str(source), str(output))
    assert code == 2 and "cannot be loaded safely" in errors
    assert not output.exists()


def test_truncated_download_is_a_clear_error(fake_m2d, tmp_path):
    _, source = fake_m2d
    truncated = tmp_path / source.parent.name / source.name
    truncated.parent.mkdir()
    truncated.write_bytes(source.read_bytes()[:2000])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        convert_m2d(truncated, num_attention_heads=HEADS)


def test_wrong_family_fails_before_writing_anything(fake_m2d, tmp_path):
    _, source = fake_m2d
    output = tmp_path / "out"
    code, errors = run_cli_error("--family", "passt", str(source), str(output))
    assert code == 2 and "Not a PaSST state dict" in errors
    assert not output.exists() and leftovers(tmp_path) == []


def test_existing_output_is_kept_unless_overwrite(fake_m2d, tmp_path):
    _, source = fake_m2d
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("someone's work")
    code, errors = run_cli_error("--family", "m2d", str(source), str(output), "--num-attention-heads", str(HEADS))
    assert code == 2 and "not empty" in errors
    assert (output / "notes.txt").read_text() == "someone's work"

    assert run_cli("--family", "m2d", str(source), str(output), "--num-attention-heads", str(HEADS), "--overwrite") == 0
    assert (output / "model.safetensors").is_file() and not (output / "notes.txt").exists()
    assert leftovers(tmp_path) == []


def test_failed_save_leaves_the_previous_folder(fake_m2d, tmp_path, monkeypatch):
    """An error while writing (here: a full disk, simulated) must not leave a half-written or missing folder."""
    _, source = fake_m2d
    converted = convert_m2d(source, num_attention_heads=HEADS)
    output = tmp_path / "out"
    save_converted(converted, output)
    before = sorted(path.name for path in output.iterdir())

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(converted.feature_extractor), "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_converted(converted, output, overwrite=True)
    assert sorted(path.name for path in output.iterdir()) == before
    assert leftovers(tmp_path) == []


def passt_shaped_state(width: int) -> dict[str, torch.Tensor]:
    """A complete one-block state dict in hear21passt's layout (zeros; only names and shapes matter here)."""
    state = {
        "patch_embed.proj.weight": torch.zeros(width, 1, 16, 16), "patch_embed.proj.bias": torch.zeros(width),
        "cls_token": torch.zeros(1, 1, width), "dist_token": torch.zeros(1, 1, width),
        "new_pos_embed": torch.zeros(1, 2, width), "freq_new_pos_embed": torch.zeros(1, width, 12, 1),
        "time_new_pos_embed": torch.zeros(1, width, 1, 19), "norm.weight": torch.ones(width),
        "norm.bias": torch.zeros(width),
    }
    for name, shape in {
        "norm1.weight": (width,), "norm1.bias": (width,), "attn.qkv.weight": (3 * width, width),
        "attn.qkv.bias": (3 * width,), "attn.proj.weight": (width, width), "attn.proj.bias": (width,),
        "norm2.weight": (width,), "norm2.bias": (width,), "mlp.fc1.weight": (2 * width, width),
        "mlp.fc1.bias": (2 * width,), "mlp.fc2.weight": (width, 2 * width), "mlp.fc2.bias": (width,),
    }.items():
        state[f"blocks.0.{name}"] = torch.zeros(shape)
    return state


def test_incomplete_state_dict_names_the_missing_weights():
    """A state dict with a weight cut out fails with the missing key rather than a randomly initialised layer."""
    state = passt_shaped_state(64)
    convert_passt(state, num_attention_heads=4)  # complete: converts
    del state["blocks.0.mlp.fc2.bias"]
    with pytest.raises(ValueError, match=r"missing \['encoder\.layers\.0\.mlp\.fc2\.bias'\]"):
        convert_passt(state, num_attention_heads=4)


def test_heads_must_be_given_when_the_width_is_not_a_vit_size():
    """The weights do not store the head count; 64-dim heads fit every released model but not a 48-wide one."""
    with pytest.raises(ValueError, match="num-attention-heads"):
        convert_passt(passt_shaped_state(48))
    assert convert_passt(passt_shaped_state(48), num_attention_heads=3).model.config.num_attention_heads == 3


def test_resize_time_axis_crops_and_interpolates():
    table = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)  # time on the last axis
    torch.testing.assert_close(resize_time_axis(table, 4, dim=3), table)
    torch.testing.assert_close(resize_time_axis(table, 2, dim=3), table[..., :2])
    stretched = resize_time_axis(table, 8, dim=3)
    assert stretched.shape == (1, 2, 3, 8)
    # Linear interpolation of the ramp 0, 1, 2, 3 on half-pixel centres, clamped at the ends.
    expected_row = torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    torch.testing.assert_close(stretched[0, 1, 2], expected_row + table[0, 1, 2, 0])


@pytest.mark.parametrize("wrapper", ("module.", "model.", "module.net."))
def test_known_wrapper_prefixes_are_unwrapped(wrapper):
    """DataParallel (`module.`), Lightning (`model.`) and nested wrappers give the same model as the bare state."""
    bare = passt_shaped_state(64)
    for name, value in bare.items():
        value.copy_(torch.randn(value.shape, generator=torch.Generator().manual_seed(len(name))))
    expected = convert_passt(bare, num_attention_heads=4).model.state_dict()
    wrapped = convert_passt({wrapper + key: value for key, value in bare.items()}, num_attention_heads=4)
    assert wrapped.model.state_dict().keys() == expected.keys()
    for key, value in wrapped.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_a_prefix_shared_with_unknown_keys_is_not_stripped():
    """`net.` next to keys of no known wrapper entry is not a wrapper: the converter says what it found."""
    state = {"net." + key: value for key, value in passt_shaped_state(64).items()}
    state["optimizer_step"] = torch.zeros(())
    with pytest.raises(ValueError, match=r"Not a PaSST state dict.*net\."):
        convert_passt(state, num_attention_heads=4)


@pytest.mark.parametrize("umask", (0o022, 0o077))
def test_output_folder_follows_the_umask(fake_m2d, tmp_path, umask):
    """The folder and its files get the permissions `mkdir` and `open` give under the caller's umask (not 0700)."""
    _, source = fake_m2d
    converted = convert_m2d(source, num_attention_heads=HEADS)
    previous = os.umask(umask)
    try:
        save_converted(converted, tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
    files = list((tmp_path / "out").iterdir())
    assert {path.name for path in files} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name
