"""Conventions of the command line: every `--help` shows an example, and one progress-bar helper that follows
huggingface_hub's switch (HF_HUB_DISABLE_PROGRESS_BARS / disable_progress_bars)."""

from __future__ import annotations

import io

import pytest

from resp_audio_hf.cli import SUBCOMMANDS, build_parser
from resp_audio_hf.progress import progress_bar


def _help(argv: list[str]) -> str:
    parser = build_parser()
    buffer = io.StringIO()
    with pytest.raises(SystemExit) as exit_info:
        import contextlib

        with contextlib.redirect_stdout(buffer):
            parser.parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    return buffer.getvalue()


@pytest.mark.parametrize("command", [c.name for c in SUBCOMMANDS])
def test_every_subcommand_help_shows_an_example(command):
    text = _help([command])
    examples = text.split("examples:", 1)[1]
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    assert lines and all(line.split()[0] in ("resp-audio-hf", "HF_TOKEN=hf_...") for line in lines)
    assert any(f"resp-audio-hf {command}" in line for line in lines)
    # Every example parses with this parser (it names only options that exist).
    for line in lines:
        words = line.split()
        words = words[words.index("resp-audio-hf") + 1:]
        build_parser().parse_args([word.strip('"') for word in words])


def test_top_level_help_lists_commands_and_examples():
    text = _help([])
    for command in SUBCOMMANDS:
        assert command.name in text
    assert "examples:" in text and "resp-audio-hf embed" in text


def test_progress_bar_follows_huggingface_hub_switch(monkeypatch):
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    if are_progress_bars_disabled():
        pytest.skip("progress bars are disabled in this environment (HF_HUB_DISABLE_PROGRESS_BARS)")
    bar = progress_bar(3, desc="test", file=io.StringIO())
    assert not bar.disable
    bar.close()
    assert progress_bar(3, desc="test", enabled=False).disable
    disable_progress_bars()
    try:
        assert progress_bar(3, desc="test").disable
    finally:
        enable_progress_bars()


def test_bench_help_lists_the_dashed_spelling_of_each_option_first():
    from resp_audio_hf.cli import build_parser

    parser = build_parser()
    bench = parser._subparsers._group_actions[0].choices["bench"]
    help_text = bench.format_help()
    assert "--data-root DATA_ROOT" in help_text and "--data_root" not in help_text.split("options:")[0]
    for action in bench._actions:
        dashed = [o for o in action.option_strings if o.startswith("--") and "_" not in o]
        if dashed and any("_" in o for o in action.option_strings):
            assert "_" not in action.option_strings[0], action.option_strings
    assert str(parser.parse_args(["bench", "--data_root", "x", "--tasks", "S1"]).data_root) == "x"  # still accepted


def _not_a_model(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bogus-net"}')
    return folder


def _a_recording(tmp_path):
    import numpy as np
    import soundfile

    wav = tmp_path / "a.wav"
    soundfile.write(wav, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    return wav


@pytest.mark.parametrize("command", ["embed", "bench", "convert", "export", "tag"])
def test_a_model_that_fails_to_load_exits_2_in_every_command(command, tmp_path, capsys):
    from resp_audio_hf.cli import main
    from resp_audio_hf.commands.errors import EXIT_CODES, ModelLoadError

    model, wav, out = _not_a_model(tmp_path), _a_recording(tmp_path), tmp_path / "out"
    not_a_checkpoint = tmp_path / "checkpoint.pt"
    not_a_checkpoint.write_bytes(b"not a pickle")
    argv = {
        "embed": ["embed", str(wav), "--model", str(model), "-o", str(tmp_path / "e.npy"), "--quiet"],
        "bench": ["bench", "--model", str(model), "--tasks", "S1", "--data-root", str(tmp_path)],
        "convert": ["convert", "--family", "passt", str(not_a_checkpoint), str(out)],
        "export": ["export", "--model", str(model), str(out)],
        "tag": ["tag", str(wav), "--model", str(model), "--output-dir", str(out)],
    }[command]
    assert EXIT_CODES[ModelLoadError] == 2
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not out.exists()


def test_every_typed_error_has_an_exit_code_and_usage_errors_are_argparse_s_2():
    import resp_audio_hf.commands.errors as errors

    typed = [value for value in vars(errors).values()
             if isinstance(value, type) and issubclass(value, errors.CommandError) and value is not errors.CommandError]
    assert sorted(cls.__name__ for cls in typed) == sorted(cls.__name__ for cls in errors.EXIT_CODES)
    assert errors.EXIT_CODES[errors.UsageError] == 2 and errors.EXIT_CODES[errors.CommandFailed] == 1

    class Subclass(errors.UsageError):
        pass

    assert errors.exit_code(Subclass("x")) == 2
    with pytest.raises(TypeError, match="no exit code"):
        errors.exit_code(errors.CommandError("x"))
