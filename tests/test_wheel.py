"""The package works from a wheel, not only from a checkout: the wheel is built from the tracked sources, installed into
a fresh virtual environment (seeing the test environment's packages for torch & co., the package itself from the
wheel only), and
`push --dry-run`, `embed`, `demo` and the shipped `evaluate` metrics run there from outside the source tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest
from _paths import REPO_ROOT

RATE = 16000


def _run(args, env, cwd, timeout=600) -> subprocess.CompletedProcess:
    completed = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert completed.returncode == 0, f"{args}\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
    return completed


def _see_this_environments_packages(python: Path, env: dict, cwd: Path) -> None:
    """
    Let the new venv import the packages of the environment pytest runs in (torch & co.), through a `.pth` file that
    adds its site-packages folders. `system_site_packages=True` would give the base interpreter's instead: inside a
    virtualenv, not the one whose packages the tests need.
    """
    import site

    folders = [folder for folder in site.getsitepackages() if os.path.isdir(folder)]
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        folders.append(site.getusersitepackages())
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env, cwd=cwd)
    line = "import site; " + "; ".join(f"site.addsitedir({folder!r})" for folder in folders)
    (Path(purelib.stdout.strip()) / "_test_environment_packages.pth").write_text(line + "\n")


def _environment() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> tuple[Path, Path]:
    """(working folder, wheel) built from a copy of the tracked layout: pyproject.toml, README.md, src/ and the
    top-level model_cards/ that src/resp_audio_hf/model_cards links to (copied as links, as a checkout has them)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "model_cards", source / "model_cards", symlinks=True)
    shutil.copytree(REPO_ROOT / "src", source / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # The build dependencies (setuptools) are already installed: build without network or isolation.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
          str(root / "dist"), str(source)], _environment(), cwd=root)
    shutil.rmtree(source)  # nothing can be read from a source tree any more
    return root, next((root / "dist").glob("resp_audio_hf-*.whl"))


def test_the_wheel_holds_the_model_card_templates_of_the_top_level_folder(built_wheel):
    import zipfile

    _, wheel = built_wheel
    assert (REPO_ROOT / "src" / "resp_audio_hf" / "model_cards").resolve() == (REPO_ROOT / "model_cards").resolve()
    sources = sorted(path for path in (REPO_ROOT / "model_cards").iterdir() if path.suffix in (".md", ".yaml"))
    assert {path.name for path in sources} >= {"template.md", "resp-passt.yaml", "resp-ast.yaml", "resp-m2d.yaml"}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith("resp_audio_hf/model_cards/")}
        assert shipped == {f"resp_audio_hf/model_cards/{path.name}" for path in sources}
        for path in sources:
            assert archive.read(f"resp_audio_hf/model_cards/{path.name}") == path.read_bytes(), path.name
        # The shipped models' cards beside the templates: one per folder of pretrained/. The wheel carries the MIT
        # ones in its model folders; the GPL-3.0 SPRSound classifiers stay in the repository.
        cards = sorted((REPO_ROOT / "model_cards" / "shipped").glob("*.md"))
        assert [card.stem for card in cards] == sorted(
            path.name for path in (REPO_ROOT / "pretrained").iterdir() if path.is_dir()
        )
        in_wheel = {path.name for path in (REPO_ROOT / "src" / "resp_audio_hf" / "pretrained").iterdir() if path.is_dir()}
        assert in_wheel and in_wheel <= {card.stem for card in cards}
        for card in cards:
            assert card.read_bytes() == (REPO_ROOT / "pretrained" / card.stem / "README.md").read_bytes(), card.name
            if card.stem in in_wheel:
                assert archive.read(f"resp_audio_hf/pretrained/{card.stem}/README.md") == card.read_bytes(), card.name
        assert not any("sprsound" in name for name in archive.namelist() if name.startswith("resp_audio_hf/pretrained/"))


@pytest.fixture(scope="module")
def installed(built_wheel):
    """(python, scripts folder, environment) of a fresh venv holding the package only as an installed wheel."""
    root, wheel = built_wheel
    env = _environment()
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(root / "venv")
    scripts = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = scripts / "python"
    _see_this_environments_packages(python, env, root)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
         env, cwd=root)
    work = root / "work"
    work.mkdir()
    env = {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf_home"), "PATH": f"{scripts}{os.pathsep}{env['PATH']}"}
    return python, scripts, env, work


def test_the_package_is_imported_from_the_wheel(installed):
    python, _, env, work = installed
    code = (
        "import json, resp_audio_hf, resp_audio_hf.hub.card as card\n"
        "from resp_audio_hf.metrics import load_metric\n"
        "auroc = load_metric('opera_auroc').compute(predictions=[[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], references=[0, 1, 1])\n"
        "print(json.dumps({'file': resp_audio_hf.__file__, 'templates': str(card.DEFAULT_TEMPLATE_DIR), **auroc}))"
    )
    report = json.loads(_run([str(python), "-c", code], env, cwd=work).stdout.strip().splitlines()[-1])
    venv_root = python.parent.parent
    assert Path(report["file"]).is_relative_to(venv_root)
    assert Path(report["templates"]).is_relative_to(venv_root) and (Path(report["templates"]) / "template.md").is_file()
    assert report["roc_auc"] == 1.0


def test_push_dry_run_embed_and_demo_from_the_wheel(installed):
    import soundfile
    import torch

    from resp_audio_hf import RespAudioConfig, RespAudioFeatureExtractor, RespAudioModel

    python, scripts, env, work = installed
    torch.manual_seed(0)
    config = RespAudioConfig.from_preset("tiny-m2d")
    model_dir = work / "model"
    model = RespAudioModel(config).eval()
    model.save_pretrained(model_dir)
    extractor = RespAudioFeatureExtractor.from_model_config(config)
    extractor.save_pretrained(model_dir)

    # push --dry-run: the card is rendered from the templates shipped in the wheel.
    staged = work / "staged"
    completed = _run([str(scripts / "resp-audio-hf"), "push", str(model_dir), "--repo-id", "org/resp-m2d",
                      "--dry-run", "--output-dir", str(staged)], env, cwd=work)
    assert "files for org/resp-m2d staged in" in completed.stdout and (staged / "config.json").is_file()
    card = (staged / "README.md").read_text()
    assert "**M2D** family" in card and "**Not a medical device.**" in card

    # embed: a folder of recordings into Parquet, equal to the model run here.
    recordings = work / "recordings"
    recordings.mkdir()
    rng = np.random.default_rng(0)
    clips = [(0.2 * rng.standard_normal(int(RATE * seconds))).astype(np.float32) for seconds in (0.7, 1.9)]
    for i, clip in enumerate(clips):
        soundfile.write(recordings / f"{i}.wav", clip, RATE)
    output = work / "embeddings.parquet"
    _run([str(scripts / "resp-audio-hf"), "embed", str(recordings), "--model", str(model_dir), "-o", str(output),
          "--quiet"], env, cwd=work)
    import pyarrow.parquet as pq

    table = pq.read_table(output)
    assert table.column("path").to_pylist() == [str(recordings / "0.wav"), str(recordings / "1.wav")]
    with torch.no_grad():
        expected = [model(**extractor([clip], sampling_rate=RATE, return_tensors="pt")).pooler_output[0].numpy()
                    for clip in clips]
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist()), np.stack(expected), atol=2e-5,
                               rtol=1e-4)

    # demo, from an empty folder with nothing but the wheel: the AudioSet model shipped in the wheel tags the coughs
    # bundled in it and counts the coughs of a recording assembled from them, offline.
    empty = work / "empty"
    empty.mkdir()
    _run([str(scripts / "resp-audio-hf"), "demo", "--output-dir", str(empty / "demo"), "--quiet"], env, cwd=empty)
    results = json.loads((empty / "demo" / "results.json").read_text())
    venv_root = python.parent.parent
    assert Path(results["model"]).is_relative_to(venv_root) and Path(results["data"]).is_relative_to(venv_root)
    assert results["tagging"]["n_clips"] == 96
    assert results["timeline"]["true_count"] == 10 and (empty / "demo" / "cough_timeline.png").is_file()
