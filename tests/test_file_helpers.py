"""resp_audio_hf.data.file_io: the one set of atomic-write, cache-root and table-reading helpers the package, training/
and benchmarks/ share."""

from __future__ import annotations

import csv
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest

from resp_audio_hf.data.file_io import (
    atomic_folder,
    atomic_path,
    atomic_save_npy,
    atomic_write_json,
    cache_root,
    publish_folder,
    read_table_rows,
    remove_tree,
)


def test_atomic_file_writes_replace_whole_files_and_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_json(target, {"b": 1, "a": np.float32(0.5)})
    assert json.loads(target.read_text()) == {"b": 1, "a": "0.5"}  # default=str for what JSON cannot hold
    atomic_write_json(target, {"b": 2, "a": 1}, sort_keys=True)
    assert target.read_text() == json.dumps({"a": 1, "b": 2}, indent=2, sort_keys=True) + "\n"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1, "b": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]
    atomic_save_npy(tmp_path / "x.npy", np.arange(3))
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), np.arange(3))


def test_atomic_folder_publishes_or_leaves_the_previous_folder(tmp_path):
    final = tmp_path / "model"
    with atomic_folder(final) as folder:
        (folder / "weights.bin").write_bytes(b"v1")
    assert (final / "weights.bin").read_bytes() == b"v1"
    with pytest.raises(OSError), atomic_folder(final) as folder:
        (folder / "weights.bin").write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert (final / "weights.bin").read_bytes() == b"v1"
    with atomic_folder(final) as folder:
        (folder / "other.bin").write_bytes(b"v2")
    assert sorted(p.name for p in final.iterdir()) == ["other.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_publish_folder_gives_the_old_folder_its_name_back_when_the_move_fails(tmp_path, monkeypatch):
    final, ready = tmp_path / "checkpoint-4", tmp_path / ".tmp-checkpoint-4"
    final.mkdir()
    (final / "state.json").write_text("old")
    ready.mkdir()
    (ready / "state.json").write_text("new")
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(src) == ready:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        publish_folder(ready, final)
    monkeypatch.setattr(os, "replace", real_replace)
    assert (final / "state.json").read_text() == "old"
    publish_folder(ready, final)
    assert (final / "state.json").read_text() == "new"
    remove_tree(final)
    assert list(tmp_path.iterdir()) == []


def _mode(path) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


@pytest.mark.parametrize("umask", (0o022, 0o077))
def test_atomic_files_and_folders_get_the_modes_the_umask_gives(tmp_path, umask):
    """Everything the helpers write ends up as `open`/`mkdir` would make it under the caller's umask: files
    0666 & ~umask, folders 0777 & ~umask, never the 0600/0700 of the private temporary files they go through,
    also when a writer inside an atomic folder uses private temporary files itself (as safetensors does)."""
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "new" / "results.json", {"a": 1})
        atomic_save_npy(tmp_path / "x.npy", np.arange(3))
        with atomic_path(tmp_path / "plot.png", suffix=".png") as tmp:
            tmp.write_bytes(b"png")
        with atomic_folder(tmp_path / "model") as folder:
            private, name = tempfile.mkstemp(dir=folder)  # 0600, like a writer staging through mkstemp
            os.close(private)
            os.replace(name, folder / "model.safetensors")
            (folder / "run.sh").write_text("#!/bin/sh\n")
            (folder / "run.sh").chmod(0o755)
            Path(tempfile.mkdtemp(dir=folder)).rename(folder / "sub")  # 0700
            (folder / "sub" / "config.json").write_text("{}")
        ready = Path(tempfile.mkdtemp(dir=tmp_path))  # 0700
        (ready / "state.json").write_text("{}")
        publish_folder(ready, tmp_path / "checkpoint-1")
    finally:
        os.umask(previous)
    for file in ("new/results.json", "x.npy", "plot.png", "model/model.safetensors", "model/sub/config.json",
                 "checkpoint-1/state.json"):
        assert _mode(tmp_path / file) == 0o666 & ~umask, file
    assert _mode(tmp_path / "model" / "run.sh") == 0o777 & ~umask  # executable bits are kept
    for folder in ("new", "model", "model/sub", "checkpoint-1"):
        assert _mode(tmp_path / folder) == 0o777 & ~umask, folder


def test_read_table_rows_reads_csv_json_and_json_lines_alike(tmp_path):
    rows = [{"file": "a.wav", "label": "1"}, {"file": "b.wav", "label": "0"}]
    with open(tmp_path / "t.csv", "w", newline="", encoding="utf-8-sig") as handle:  # with a byte-order mark
        writer = csv.DictWriter(handle, fieldnames=["file", "label"], delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    assert read_table_rows(tmp_path / "t.csv", delimiter=";") == rows
    (tmp_path / "t.json").write_text(json.dumps(rows))
    (tmp_path / "columns.json").write_text(json.dumps({"file": ["a.wav", "b.wav"], "label": ["1", "0"]}))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + "\n")
    for name in ("t.json", "columns.json", "t.jsonl"):
        assert read_table_rows(tmp_path / name) == rows
    (tmp_path / "t.tsv").write_text("file\tlabel\n")
    with pytest.raises(ValueError, match=r"t\.tsv"):
        read_table_rows(tmp_path / "t.tsv")


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RESP_AUDIO_HF_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    from resp_audio_hf.benchmark.arguments import default_cache_dir
    from resp_audio_hf.data.opera_files import OPERA_COMMIT, default_opera_cache_dir

    assert default_cache_dir() == tmp_path / "embeddings"
    assert default_opera_cache_dir() == tmp_path / "opera" / OPERA_COMMIT[:7]
    monkeypatch.delenv("RESP_AUDIO_HF_CACHE")
    assert cache_root() == Path.home() / ".cache" / "resp_audio_hf"
