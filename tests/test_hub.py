"""Publishing to the Hub (resp_audio_hf.hub, scripts/push_to_hub.py, `resp-audio-hf push`) without network.

The real `huggingface_hub` client talks over HTTP, through `HF_ENDPOINT`, to a Hub-compatible server on 127.0.0.1
(tests/hub_server.py): the push creates the repository and uploads one commit, as regular files or through the LFS
batch API, and a fresh Python process that cannot import resp_audio_hf downloads the repository by id and revision,
as a Hub user would.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import inspect
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _paths import REPO_ROOT
from hub_server import HubServer
from huggingface_hub import ModelCard

import resp_audio_hf
from resp_audio_hf import (
    MODEL_TYPES,
    RespAudioConfig,
    RespAudioFeatureExtractor,
    RespAudioForAudioClassification,
    RespAudioModel,
    hub,
)
from resp_audio_hf.commands.push import add_push_arguments

SECRET_TOKEN = "hf_TestSecretTokenThatMustNeverBeShown0123"
LABELS = ("healthy", "copd", "other")
EXPECTED_FILES = {
    "README.md",
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "configuration_resp_audio.py",
    "pipeline_resp_audio.py",
    "modeling_resp_audio.py",
    "feature_extraction_resp_audio.py",
    "resampling.py",
    "cut_wav.py",
    "auto_classes.py",
    "pipeline_entry.py",
    "pooling.py",
    "model_inputs.py",
    "audio_classifier.py",
}
# Per-run test scores of four tasks, written to results.json by the benchmark harness's own writer. T5 and T6 share
# a corpus on purpose: the model-index must keep them apart.
BENCHMARK_SCORES = {
    "T1": [0.701, 0.688, 0.715, 0.694, 0.707],
    "T5": [0.605, 0.633, 0.587, 0.611, 0.598],
    "T6": [0.779, 0.771, 0.785, 0.776, 0.783],
    "T14": [0.871, 0.902, 0.845, 0.866, 0.893, 0.859],
}
# The corpus of each task, from OPERA's paper (Zhang et al., 2024, Table 2).
TASK_CORPORA = {"T1": "UK COVID-19 Vocal Audio", "T5": "CoughVID", "T6": "CoughVID", "T14": "MMlung"}


def _load_push_script():
    spec = importlib.util.spec_from_file_location("push_to_hub", REPO_ROOT / "scripts" / "push_to_hub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


push_to_hub = _load_push_script()


def _tiny_classifier(preset: str = "tiny-passt") -> RespAudioForAudioClassification:
    torch.manual_seed(0)
    config = RespAudioConfig.from_preset(
        preset,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    return RespAudioForAudioClassification(config).eval()


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    """A trained-looking checkpoint: tiny PaSST classifier with its feature extractor, as save_pretrained writes it."""
    folder = tmp_path_factory.mktemp("checkpoint")
    model = _tiny_classifier()
    model.save_pretrained(folder)
    RespAudioFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def benchmark_file(classifier_dir, tmp_path_factory) -> Path:
    """results.json of the classifier as `resp-audio-hf bench` writes it (harness dataclasses and writer)."""
    return _write_benchmark_file(classifier_dir, tmp_path_factory.mktemp("bench"))


def _write_benchmark_file(classifier_dir: Path, output_dir: Path, **encoder_options) -> Path:
    from resp_audio_hf.benchmark import BenchmarkResult, TaskResult, write_reports
    from resp_audio_hf.benchmark.runner import encoder_settings
    from resp_audio_hf.data.tasks import get_task_spec
    from resp_audio_hf.extraction import AudioEncoder

    encoder = AudioEncoder.from_pretrained(str(classifier_dir), **encoder_options)
    result = BenchmarkResult(
        model=str(classifier_dir), model_fingerprint=encoder.fingerprint(), encoder=encoder_settings(encoder)
    )
    for task_id, scores in BENCHMARK_SCORES.items():
        spec = get_task_spec(task_id)
        result.tasks[task_id] = TaskResult(
            task_id=task_id, name=spec.name, metric=spec.metric, mean=float(np.mean(scores)), std=float(np.std(scores)),
            scores=scores, embedding_dim=encoder.embedding_dim,
        )
    result.unavailable["T3"] = "COVID-19 Sounds not found under /home/someone/private/data"
    return write_reports(result, output_dir)["json"]


@pytest.fixture(scope="module")
def benchmark_rows(benchmark_file) -> dict:
    """The task entries of the results file, read with json alone."""
    return json.loads(benchmark_file.read_text())["tasks"]


@dataclass
class DryRun:
    path: Path
    stdout: str


@pytest.fixture(scope="module")
def hub_server():
    """The test Hub on 127.0.0.1 (and its CDN-like LFS origin), for the whole module; stops by itself."""
    with HubServer(SECRET_TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def staged(classifier_dir, benchmark_file, hub_server, tmp_path_factory) -> DryRun:
    """`push_to_hub.py --dry-run` of the classifier: the staged folder (validated, including the isolated
    remote-code load) and what the script printed. The client points at the test Hub, which must get no request."""
    target = tmp_path_factory.mktemp("staging") / "org--resp-passt"
    stdout = io.StringIO()
    before = len(hub_server.requests)
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        _point_client_at(patch, hub_server)
        _remove_token(patch, tmp_path_factory.mktemp("no-login"))
        code = push_to_hub.main([
            str(classifier_dir), "--repo-id", "org/resp-passt", "--dry-run", "--output-dir", str(target),
            "--benchmark", str(benchmark_file),
        ])
    assert code == 0
    assert hub_server.requests[before:] == []
    return DryRun(target, stdout.getvalue())


def _remove_token(patch: pytest.MonkeyPatch, empty_dir: Path) -> None:
    from huggingface_hub import constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        patch.delenv(name, raising=False)
    patch.setattr(constants, "HF_TOKEN_PATH", str(empty_dir / "no-such-token"))
    patch.setattr(constants, "HF_STORED_TOKENS_PATH", str(empty_dir / "no-such-stored-tokens"))


def _point_client_at(patch: pytest.MonkeyPatch, server: HubServer) -> None:
    """This process's huggingface_hub talks to `server` (as HF_ENDPOINT does for a new process), online, without xet."""
    from huggingface_hub import constants

    patch.setattr(constants, "ENDPOINT", server.url)
    patch.setattr(constants, "HF_HUB_OFFLINE", False)
    patch.setattr(constants, "HF_HUB_DISABLE_XET", True)


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No HF_TOKEN and no cached login."""
    _remove_token(monkeypatch, tmp_path)


@pytest.fixture
def hub_endpoint(monkeypatch, hub_server):
    """The client points at the test Hub; yields a function returning the requests the test has sent it so far."""
    _point_client_at(monkeypatch, hub_server)
    before = len(hub_server.requests)
    return lambda: hub_server.requests[before:]


def _client_env(server: HubServer, home: Path, token: str | None = SECRET_TOKEN) -> dict[str, str]:
    """Environment of a new client process: the test Hub through HF_ENDPOINT, online, a fresh HF_HOME, verbose logs."""
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1",
           "HF_HOME": str(home), "HF_HUB_VERBOSITY": "debug", "TRANSFORMERS_VERBOSITY": "info"}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _test_clips(sampling_rate: int) -> list[np.ndarray]:
    """A linear chirp (0.9 s) and amplitude-modulated noise (2.7 s, longer than one tiny-passt window)."""
    generator = np.random.default_rng(123)
    t = np.arange(int(0.9 * sampling_rate)) / sampling_rate
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 2000 * t**2))
    t2 = np.arange(int(2.7 * sampling_rate)) / sampling_rate
    noise = generator.standard_normal(t2.size) * (0.2 + 0.1 * np.sin(2 * np.pi * 3 * t2))
    return [chirp.astype(np.float32), noise.astype(np.float32)]


# Loads the pushed repository as a user without resp_audio_hf would: by repo id and revision, over HTTP from the Hub
# that HF_ENDPOINT names, into the HF_HOME cache.
FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "resp_audio_hf":
                raise ImportError("resp_audio_hf is not installed here")

    sys.meta_path.insert(0, Blocked())
    import numpy as np, torch
    from huggingface_hub import snapshot_download
    from transformers import AutoFeatureExtractor, AutoModel, pipeline

    repo_id, clips_file, output_file, *revisions = sys.argv[1:]
    data = np.load(clips_file)
    clips, rate = [data["clip0"], data["clip1"]], int(data["rate"])
    results = {}
    for revision in revisions:
        extractor = AutoFeatureExtractor.from_pretrained(repo_id, revision=revision, trust_remote_code=True)
        model = AutoModel.from_pretrained(repo_id, revision=revision, trust_remote_code=True).eval()
        with torch.no_grad():
            pooled = model(**extractor(clips, sampling_rate=rate, return_tensors="pt")).pooler_output
        classifier = pipeline("audio-classification", model=repo_id, revision=revision, trust_remote_code=True)
        scores = [classifier({"raw": clip, "sampling_rate": rate}, top_k=None) for clip in clips]
        results[revision] = {
            "pooler_output": pooled.tolist(),
            "scores": scores,
            "snapshot": snapshot_download(repo_id, revision=revision),
            "model_module": type(model).__module__,
            "pipeline_model_class": type(classifier.model).__name__,
            "extractor_module": type(extractor).__module__,
        }
    results["package_imported"] = any(m.split(".")[0] == "resp_audio_hf" for m in sys.modules)
    json.dump(results, open(output_file, "w"))
    """
)


# ---------------------------------------------------------------------------------------------------------------------
# Model card


def _front_matter(text: str) -> dict:
    """The YAML front matter, parsed with PyYAML alone (independent of huggingface_hub's parser)."""
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.mark.parametrize(
    "preset, family, license_, citation_key",
    [
        ("tiny-passt", "resp-passt", "apache-2.0", "koutini2022passt"),
        ("tiny-ast", "resp-ast", "bsd-3-clause", "gong2021ast"),
        ("tiny-m2d", "resp-m2d", "other", "niizumi2024m2dx"),
    ],
)
def test_card_front_matter_and_results_round_trip(
    preset, family, license_, citation_key, benchmark_file, benchmark_rows, tmp_path
):
    config = RespAudioConfig.from_preset(preset)
    card = hub.render_model_card(config, "org/" + family, benchmark=hub.load_benchmark_results(benchmark_file))
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")

    data = loaded.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "audio-classification"
    assert data.license == license_
    assert "custom_code" in data.tags and "respiratory-sounds" in data.tags
    assert data.datasets == ["AudioSet"]
    if family == "resp-m2d":
        assert data.license_link == "https://github.com/nttcslab/m2d/blob/master/LICENSE.pdf"
    assert data.model_name == family

    # Each benchmark task comes back as one result with the file's values, T5/T6 (same corpus) included.
    parsed = {result.dataset_config: result for result in data.eval_results}
    assert sorted(parsed) == sorted(BENCHMARK_SCORES)
    for task_id, row in benchmark_rows.items():
        result = parsed[task_id]
        assert result.metric_value == row["mean"] == pytest.approx(np.mean(BENCHMARK_SCORES[task_id]))
        assert result.dataset_name == TASK_CORPORA[task_id]
        assert result.task_name == f"{task_id}: {row['name']}"
        assert result.metric_type == {"auroc": "roc_auc", "mae": "mae"}[row["metric"]]
        assert result.task_type == ("audio-classification" if row["metric"] == "auroc" else "audio-regression")
        assert result.dataset_split == "test"
    raw = _front_matter(str(loaded))
    assert len(raw["model-index"][0]["results"]) == len(BENCHMARK_SCORES)

    # The body: the frequency-preserving pooling size from the config, the results table with std and number of
    # runs, the tasks not scored (without the local path of the reason), the medical disclaimer and the citations.
    body = loaded.text
    assert f"{config.num_frequency_rows} x {config.hidden_size} = {config.pooled_size} features" in body
    for task_id, row in benchmark_rows.items():
        arrow = "↑" if row["metric"] == "auroc" else "↓"
        assert (
            f"| {task_id} | {row['name']} | {TASK_CORPORA[task_id]} | {row['metric'].upper()} {arrow} | "
            f"{row['mean']:.3f} ± {row['std']:.3f} | {len(BENCHMARK_SCORES[task_id])} |"
        ) in body
    assert "evaluation failed): T3." in body and "/home/someone" not in body
    assert "**Not a medical device.**" in body
    assert f"@inproceedings{{{citation_key}," in body or f"@article{{{citation_key}," in body
    assert "@inproceedings{zhang2024opera," in body and "@inproceedings{niizumi2025respiratory," in body
    assert "{{ " not in body and "{%" not in body  # nothing left unrendered


def test_card_without_benchmark_has_no_model_index():
    config = RespAudioConfig.from_preset("tiny-ast")
    card = hub.render_model_card(config, "org/resp-ast")
    assert "model-index" not in _front_matter(str(card))
    assert not card.data.eval_results
    assert "No benchmark results were attached to this card." in card.text
    assert "pipeline(" not in card.text  # an encoder has no classification head to run in a pipeline


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda tasks: tasks["T1"].pop("std"), "T1 lacks ['std']"),
        (lambda tasks: tasks["T5"].update(metric="accuracy"), "metric 'accuracy' is not one of"),
        (lambda tasks: tasks["T6"].update(task_id="T9"), "filed under 'T6' but says task_id='T9'"),
        (lambda tasks: tasks["T14"].update(mean=float("nan")), "need a finite mean"),
        (lambda tasks: tasks["T14"].update(scores=[]), "at least one score"),
        (lambda tasks: tasks.update(T99=dict(tasks["T1"], task_id="T99")), "Unknown task 'T99'"),
        (lambda tasks: tasks.clear(), "no scored task"),
    ],
)
def test_bad_benchmark_json_is_refused(mutate, message, benchmark_file, tmp_path):
    payload = json.loads(benchmark_file.read_text())
    mutate(payload["tasks"])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(hub.HubPublishError, match=re.escape(message)):
        hub.load_benchmark_results(path)


def test_results_of_other_weights_are_refused(benchmark_file, tmp_path):
    other = _tiny_classifier()
    with torch.no_grad():
        other.classifier.dense.bias.zero_()
        other.resp_audio.layernorm.bias.add_(0.01)  # a different encoder than the benchmarked one
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(hub.HubPublishError, match="holds results for other weights"):
        hub.stage_for_hub(tmp_path / "other", tmp_path / "staged", "org/resp-passt", benchmark=benchmark_file)
    assert not (tmp_path / "staged").exists()


def test_results_of_a_pooling_ablation_are_refused(classifier_dir, tmp_path):
    """`bench --pooling mean` on the same weights: the fingerprint matches, but these are not the checkpoint's scores."""
    ablation = _write_benchmark_file(classifier_dir, tmp_path / "bench", pooling="mean")
    assert json.loads(ablation.read_text())["encoder"]["pooling"] == "mean"
    with pytest.raises(hub.HubPublishError, match="embedded with {'pooling': 'mean', 'embedding_dim'"):
        hub.stage_for_hub(classifier_dir, tmp_path / "staged", "org/resp-passt", benchmark=ablation)
    assert not (tmp_path / "staged").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Staging and validation


def test_every_publish_parameter_is_a_push_flag_of_the_same_name():
    """`push` hands its arguments to `publish` by name: a new parameter of `publish` needs its flag, or `push` fails."""
    parser = argparse.ArgumentParser()
    add_push_arguments(parser)
    flags = vars(parser.parse_args(["model-folder", "--repo-id", "org/resp-passt"]))
    assert set(inspect.signature(hub.publish).parameters) <= set(flags)


def test_dry_run_stages_exact_folder_without_contacting_hub(staged, no_token, hub_endpoint, capsys, tmp_path):
    assert {p.name for p in staged.path.iterdir()} == EXPECTED_FILES
    listed = staged.stdout.splitlines()
    assert listed[0] == f"Dry run: {len(EXPECTED_FILES)} files for org/resp-passt staged in {staged.path}"
    assert sorted(line.split()[-1] for line in listed[1:]) == sorted(EXPECTED_FILES)
    for line in listed[1:]:
        size, name = line.split()
        assert int(size.replace(",", "")) == (staged.path / name).stat().st_size
    config = json.loads((staged.path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_resp_audio.RespAudioConfig",
        "AutoModel": "modeling_resp_audio.RespAudioModel",
        "AutoModelForAudioClassification": "modeling_resp_audio.RespAudioForAudioClassification",
        "AutoFeatureExtractor": "feature_extraction_resp_audio.RespAudioFeatureExtractor",
    }
    # The remote code is the installed package's code, byte for byte.
    for name in MODEL_TYPES["resp_audio"].remote_code_files:
        assert (staged.path / name).read_bytes() == (Path(resp_audio_hf.__file__).parent / name).read_bytes()

    # The CLI dry run needs no token, lists every file, and refuses to overwrite without --overwrite.
    output = tmp_path / "dry"
    shutil.copytree(staged.path, output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    code = push_to_hub.main([str(staged.path), "--repo-id", "org/resp-passt", "--dry-run", "--output-dir", str(output)])
    assert code == 1
    assert "already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    # --overwrite only ever replaces an earlier staging folder, never a folder holding other files.
    (output / "notes.txt").write_text("keep me")
    code = push_to_hub.main(
        [str(staged.path), "--repo-id", "org/resp-passt", "--dry-run", "--output-dir", str(output), "--overwrite"]
    )
    assert code == 1
    assert "refusing to replace it" in capsys.readouterr().err
    assert (output / "notes.txt").read_text() == "keep me"


def _hf_command() -> list[str]:
    """The `hf` command of this Python's huggingface_hub."""
    script = Path(sys.executable).with_name("hf")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "huggingface_hub.cli.hf"]


def _outputs_of(folder: Path, clips: list[np.ndarray], rate: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The encoder's pooled output and the classifier's per-clip probabilities, computed here from a local folder."""
    model = RespAudioForAudioClassification.from_pretrained(folder).eval()
    extractor = RespAudioFeatureExtractor.from_pretrained(folder)
    with torch.no_grad():
        pooled = model.resp_audio(**extractor(clips, sampling_rate=rate, return_tensors="pt")).pooler_output
        probabilities = [model(**extractor([clip], sampling_rate=rate, return_tensors="pt")).logits.softmax(-1)[0]
                         for clip in clips]
    return pooled, probabilities


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(folder).parts}


def test_push_over_http_in_both_upload_modes_then_download_by_revision(
    classifier_dir, benchmark_file, hub_server, tmp_path
):
    """
    Two pushes to one private repository through scripts/push_to_hub.py, the real client and HF_ENDPOINT: the first
    as regular files, the second (other weights) through the LFS batch API. A fresh process without resp_audio_hf then
    loads both revisions by repo id (AutoModel, AutoFeatureExtractor, pipeline, snapshot_download), and `hf download`
    fetches them: everything equals the local folders. The token travels in Authorization headers only.
    """
    repo_id = "org/resp-passt"
    second_dir = tmp_path / "second"
    torch.manual_seed(1)
    other = _tiny_classifier()
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    other.save_pretrained(second_dir)
    RespAudioFeatureExtractor.from_model_config(other.config).save_pretrained(second_dir)

    transcripts = []
    pushes = [("regular", classifier_dir, ["--benchmark", str(benchmark_file)]), ("lfs", second_dir, [])]
    commits = []
    for mode, folder, extra in pushes:
        hub_server.set_upload_mode(mode)
        before = len(hub_server.requests)
        completed = _run(
            [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), str(folder), "--repo-id", repo_id,
             "--private", "--output-dir", str(tmp_path / f"staged-{mode}"), *extra],
            _client_env(hub_server, tmp_path / f"home-push-{mode}"), cwd=tmp_path,
        )
        transcripts.append(completed.stdout + completed.stderr)
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert f"Uploaded {len(EXPECTED_FILES)} files to {repo_id} in one commit" in completed.stdout
        sent = [(r.method, r.path.split("?")[0]) for r in hub_server.requests[before:]]
        # One repository creation (exist_ok on the second push) and exactly one commit per push.
        assert sent.count(("POST", "/api/repos/create")) == 1
        assert sent.count(("POST", f"/api/models/{repo_id}/commit/main")) == 1
        lfs_requests = [path for _, path in sent if path.endswith("/info/lfs/objects/batch") or "/lfs-" in path]
        assert bool(lfs_requests) == (mode == "lfs")
        repo = hub_server.state.repos[repo_id]
        commits.append(repo.branches["main"])
        files = repo.commits[commits[-1]].files
        assert set(files) == EXPECTED_FILES | {".gitattributes"}
        staged = tmp_path / f"staged-{mode}"
        assert {name: files[name].data for name in EXPECTED_FILES} == _folder_bytes(staged)
        assert files["model.safetensors"].lfs == (mode == "lfs")
        assert not files["config.json"].lfs  # small text files stay regular in both modes
    first, second = commits
    repo = hub_server.state.repos[repo_id]
    assert repo.private and first != second and len(repo.commits) == 3  # the initial commit, then one per push

    # The uploaded card parses and carries the benchmark JSON's results.
    card = ModelCard(repo.commits[first].files["README.md"].data.decode())
    assert {r.dataset_config: r.metric_value for r in card.data.eval_results} == {
        task_id: row["mean"] for task_id, row in json.loads(benchmark_file.read_text())["tasks"].items()
    }

    # A fresh process, online against the test Hub only, loads the pinned first commit and main (the second push).
    rate = RespAudioFeatureExtractor.from_pretrained(classifier_dir).sampling_rate
    clips = _test_clips(rate)
    np.savez(tmp_path / "clips.npz", clip0=clips[0], clip1=clips[1], rate=rate)
    env = _client_env(hub_server, tmp_path / "home-user")
    completed = _run([sys.executable, "-c", FRESH_PROCESS, repo_id, str(tmp_path / "clips.npz"),
                      str(tmp_path / "fresh.json"), first, "main"], env, cwd=tmp_path)
    transcripts.append(completed.stdout + completed.stderr)
    assert completed.returncode == 0, completed.stderr[-3000:]
    fresh = json.loads((tmp_path / "fresh.json").read_text())
    assert not fresh["package_imported"]
    for revision, folder, staged in ((first, classifier_dir, "staged-regular"), ("main", second_dir, "staged-lfs")):
        result = fresh[revision]
        assert result["model_module"].startswith("transformers_modules.")
        assert result["extractor_module"].startswith("transformers_modules.")
        assert result["pipeline_model_class"] == "RespAudioForAudioClassification"
        pooled, probabilities = _outputs_of(folder, clips, rate)
        torch.testing.assert_close(torch.tensor(result["pooler_output"]), pooled, atol=1e-5, rtol=1e-4)
        for scores, expected in zip(result["scores"], probabilities):
            by_label = {entry["label"]: entry["score"] for entry in scores}
            assert set(by_label) == set(LABELS)
            torch.testing.assert_close(torch.tensor([by_label[name] for name in LABELS]), expected, atol=1e-5,
                                       rtol=1e-4)
        snapshot = Path(result["snapshot"])
        assert snapshot.name == (first if revision == first else second)
        assert {k: v for k, v in _folder_bytes(snapshot).items() if k != ".gitattributes"} == _folder_bytes(
            tmp_path / staged
        )
    # The two revisions really differ (other weights), so the pins above were honoured.
    assert fresh[first]["pooler_output"] != fresh["main"]["pooler_output"]

    # `hf download`, pinned and on main, into local folders: the staged files, byte for byte.
    for revision, staged in ((first, "staged-regular"), ("main", "staged-lfs")):
        target = tmp_path / f"download-{revision[:7]}"
        completed = _run([*_hf_command(), "download", repo_id, "--revision", revision, "--local-dir", str(target)],
                         _client_env(hub_server, tmp_path / "home-cli"), cwd=tmp_path)
        transcripts.append(completed.stdout + completed.stderr)
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert {k: v for k, v in _folder_bytes(target).items() if k != ".gitattributes"} == _folder_bytes(
            tmp_path / staged
        )

    # The token: in Authorization headers only, never in a URL, another header, a request body, the CDN's
    # requests, or anything the clients printed or logged (HF_HUB_VERBOSITY=debug, TRANSFORMERS_VERBOSITY=info).
    requests = hub_server.requests
    assert any((name.lower(), value) == ("authorization", f"Bearer {SECRET_TOKEN}")
               for r in requests for name, value in r.headers)
    for request in requests:
        assert SECRET_TOKEN not in request.path
        assert SECRET_TOKEN.encode() not in request.body
        for name, value in request.headers:
            assert SECRET_TOKEN not in value or name.lower() == "authorization", (request.method, request.path, name)
        if request.origin == "cdn" or "/lfs-upload/" in request.path:
            assert all(name.lower() != "authorization" for name, _ in request.headers)
    assert any(r.origin == "cdn" for r in requests)  # LFS files were served by the CDN-like origin
    for transcript in transcripts:
        assert SECRET_TOKEN not in transcript


def test_push_with_a_wrong_token_fails_without_showing_it(classifier_dir, hub_server, tmp_path):
    wrong = "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9876"
    before = len(hub_server.requests)
    completed = _run(
        [sys.executable, "-m", "resp_audio_hf.cli", "push", str(classifier_dir), "--repo-id", "org/refused"],
        _client_env(hub_server, tmp_path / "home", token=wrong), cwd=tmp_path,
    )
    assert completed.returncode == 1
    assert "401" in completed.stderr and "Invalid credentials" in completed.stderr
    assert wrong not in completed.stdout + completed.stderr
    sent = hub_server.requests[before:]
    paths = [r.path for r in sent]
    assert "/api/repos/create" in paths and not any("/preupload/" in p or "/commit/" in p for p in paths)
    assert all(wrong not in value for r in sent for name, value in r.headers if name.lower() != "authorization")
    assert "org/refused" not in hub_server.state.repos


def test_missing_token_fails_fast_with_instructions(classifier_dir, no_token, hub_endpoint, capsys, tmp_path):
    code = push_to_hub.main([str(classifier_dir), "--repo-id", "org/resp-passt", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "No Hugging Face token found" in err and "hf auth login" in err and "HF_TOKEN" in err
    assert not (tmp_path / "out").exists()
    assert hub_endpoint() == []


@pytest.mark.parametrize("missing", MODEL_TYPES["resp_audio"].remote_code_files + ("model.safetensors", "README.md"))
def test_upload_refuses_folder_missing_a_file(staged, missing, monkeypatch, hub_endpoint, tmp_path):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    folder = tmp_path / "staged"
    shutil.copytree(staged.path, folder)
    (folder / missing).unlink()
    with pytest.raises(hub.HubPublishError, match=f"lacks \\['{missing}'\\]"):
        hub.upload_staged_folder(folder, "org/resp-passt")
    assert hub_endpoint() == []


def test_upload_refuses_incomplete_auto_map(staged, monkeypatch, hub_endpoint, tmp_path):
    monkeypatch.setenv("HF_TOKEN", SECRET_TOKEN)
    folder = tmp_path / "staged"
    shutil.copytree(staged.path, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]["AutoModel"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(hub.HubPublishError, match=r"auto_map lacks \['AutoModel'\]"):
        hub.upload_staged_folder(folder, "org/resp-passt")
    assert hub_endpoint() == []


def test_isolated_check_catches_remote_code_needing_the_package(staged, tmp_path):
    # Remote code that leans on the installed package works here but not for Hub users; the check must see that.
    folder = tmp_path / "staged"
    shutil.copytree(staged.path, folder)
    modeling = folder / "modeling_resp_audio.py"
    modeling.write_text("import resp_audio_hf.modeling_resp_audio\n" + modeling.read_text())
    hub.check_staged_folder(folder)  # structurally complete
    with pytest.raises(hub.HubPublishError, match="does not load with trust_remote_code=True"):
        hub.validate_staged_folder(folder, isolated=True)


def test_remote_code_check_script_imports_nothing_from_the_package():
    # The child process blocks resp_audio_hf before loading the folder; a module imported before the block would slip
    # through it, so the script itself must not import the package (nor its siblings, relatively).
    script = hub.validation.REMOTE_CODE_CHECK_SCRIPT
    tree = ast.parse(script.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {"." * node.level + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and not [name for name in imported if name.startswith((".", "resp_audio_hf"))], imported
    assert script.parent == Path(hub.__file__).parent


def test_staging_refuses_non_finite_weights_and_leaves_nothing(tmp_path):
    model = _tiny_classifier("tiny-ast")
    with torch.no_grad():
        model.resp_audio.layernorm.weight[0] = float("nan")  # e.g. a diverged training run
    model.save_pretrained(tmp_path / "checkpoint")
    with pytest.raises(hub.HubPublishError, match="non-finite"):
        hub.stage_for_hub(tmp_path / "checkpoint", tmp_path / "staged", "org/resp-ast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_staging_refuses_checkpoint_with_missing_weights(tmp_path):
    from safetensors.torch import load_file, save_file

    model = _tiny_classifier("tiny-m2d")
    model.save_pretrained(tmp_path / "checkpoint")
    weights = load_file(tmp_path / "checkpoint" / "model.safetensors")
    dropped = next(name for name in weights if name.startswith("classifier.dense"))
    save_file({k: v for k, v in weights.items() if k != dropped}, tmp_path / "checkpoint" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(hub.HubPublishError, match="partly random"):
        hub.stage_for_hub(tmp_path / "checkpoint", tmp_path / "staged", "org/resp-m2d")
    assert not (tmp_path / "staged").exists()


def test_encoder_checkpoint_stages_without_classification_head(tmp_path):
    torch.manual_seed(1)
    model = RespAudioModel(RespAudioConfig.from_preset("tiny-m2d")).eval()
    model.save_pretrained(tmp_path / "encoder")
    # The remote code is the same for every family; its isolated load is tested on the PaSST classifier.
    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "README.md").write_text("an earlier staging")
    staged = hub.stage_for_hub(
        tmp_path / "encoder", tmp_path / "staged", "org/resp-m2d", check_remote_code=False, overwrite=True
    )
    assert set(staged.files) == EXPECTED_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder", "staged"]  # no temporary folder left
    auto_map = json.loads((staged.path / "config.json").read_text())["auto_map"]
    assert "AutoModelForAudioClassification" not in auto_map and auto_map["AutoModel"].endswith(".RespAudioModel")
    card = ModelCard.load(staged.path / "README.md")
    assert card.data.license == "other" and "**M2D** family" in card.text
    assert "pipeline(" not in card.text
    # The feature extractor was built from the configuration (the checkpoint had none) and matches it.
    preprocessor = json.loads((staged.path / "preprocessor_config.json").read_text())
    assert (preprocessor["frontend"], preprocessor["num_mel_bins"], preprocessor["sampling_rate"]) == ("m2d", 80, 16000)


def test_invalid_repo_id_is_refused(classifier_dir, tmp_path):
    for repo_id in ("resp-passt", "org/resp passt", "a/b/c"):
        with pytest.raises(hub.HubPublishError, match="repository id|Repository id"):
            hub.stage_for_hub(classifier_dir, tmp_path / "staged", repo_id)


@pytest.mark.parametrize("umask", (0o022, 0o077))
def test_staged_folder_and_files_follow_the_umask(tmp_path, umask):
    """The staging folder and every file in it get the modes `mkdir` and `open` give under the umask, although
    transformers writes the weights through a private (0600) temporary file."""
    model = RespAudioModel(RespAudioConfig.from_preset("tiny-m2d")).eval()
    model.save_pretrained(tmp_path / "encoder")
    previous = os.umask(umask)
    try:
        staged = hub.stage_for_hub(tmp_path / "encoder", tmp_path / "staged", "org/resp-m2d", check_remote_code=False)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(staged.path.stat().st_mode) == 0o777 & ~umask
    assert set(staged.files) == EXPECTED_FILES
    for name in staged.files:
        assert stat.S_IMODE((staged.path / name).stat().st_mode) == 0o666 & ~umask, name


def test_push_publishes_the_efficientat_folder(hub_server, tmp_path):
    """
    `push_to_hub.py` stages the shipped EfficientAT folder (its remote code, its own card, the isolated
    trust_remote_code check) and uploads it in one commit to the test Hub: the uploaded files are the staged ones,
    the EfficientAT modules are among them and the ViT's are not.
    """
    model_dir = REPO_ROOT / "pretrained" / "efficientat-mn04-as"
    repo_id = "org/efficientat-mn04-as"
    staged = tmp_path / "staged"
    hub_server.set_upload_mode("regular")
    completed = _run(
        [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), str(model_dir), "--repo-id", repo_id,
         "--output-dir", str(staged)],
        _client_env(hub_server, tmp_path / "home-push"), cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    expected = (EXPECTED_FILES - {"modeling_resp_audio.py"}) | {"configuration_efficientat.py", "modeling_efficientat.py"}
    assert f"Uploaded {len(expected)} files to {repo_id} in one commit" in completed.stdout
    repo = hub_server.state.repos[repo_id]
    files = repo.commits[repo.branches["main"]].files
    assert set(files) == expected | {".gitattributes"}
    assert {name: files[name].data for name in expected} == _folder_bytes(staged)
    assert files["README.md"].data == (model_dir / "README.md").read_bytes()
    assert files["model.safetensors"].data == (model_dir / "model.safetensors").read_bytes()
