"""Atomic checkpoints around Accelerate's `save_state`, and atomic final folders.

A checkpoint is written into `.tmp-checkpoint-<step>` and renamed to `checkpoint-<step>` only once every process has
finished writing, so a run killed at any moment leaves either the previous complete checkpoints or the new one,
never a half-written `checkpoint-*` that `--resume` would pick up.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from ..data.file_io import atomic_folder, atomic_write_json, publish_folder, remove_tree

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINING_STATE_NAME = "training_state.json"
FINAL_MODEL_NAME = "model"
BEST_MODEL_NAME = "best_model"


def data_state_name(process_index: int) -> str:
    return f"data_state_{process_index}.json"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (`checkpoint-<step>` holding a training state), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and child.is_dir() and (child / TRAINING_STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_resume(resume: str | None, output_dir: str | os.PathLike) -> Path | None:
    """`--resume` value -> checkpoint folder: `auto`/`latest` = newest in `output_dir` (None if there is none)."""
    if resume is None:
        return None
    if resume in ("auto", "latest"):
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if not (path / TRAINING_STATE_NAME).is_file():
        raise FileNotFoundError(
            f"--resume {resume}: not a complete checkpoint (no {TRAINING_STATE_NAME}). Pass a checkpoint-<step> folder "
            "or --resume auto to continue from the newest one in the output directory."
        )
    return path


def save_checkpoint(
    accelerator,
    output_dir: str | os.PathLike,
    step: int,
    training_state: dict,
    data_state: dict,
    keep_last: int,
) -> Path:
    """
    Collective: every process must call it. Writes Accelerate's state (model, optimizer, per-process RNG), this
    process's data position and the training state into a temporary folder, then publishes it as
    `checkpoint-<step>` and prunes all but the newest `keep_last`.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_tree(tmp)  # left behind by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    atomic_write_json(tmp / data_state_name(accelerator.process_index), data_state, sort_keys=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # Written last: its presence marks the folder complete (see `list_checkpoints`).
        atomic_write_json(tmp / TRAINING_STATE_NAME, training_state, sort_keys=True)
        publish_folder(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep_last]:
            remove_tree(old)
    accelerator.wait_for_everyone()
    return final


def restore_training_checkpoint(accelerator, checkpoint: Path) -> tuple[dict, dict]:
    """Restore Accelerate's state; return the training state and this process's data position."""
    accelerator.load_state(str(checkpoint))
    with open(checkpoint / TRAINING_STATE_NAME, encoding="utf-8") as handle:
        training_state = json.load(handle)
    data_path = checkpoint / data_state_name(accelerator.process_index)
    if not data_path.is_file():
        raise FileNotFoundError(
            f"{checkpoint} has no data position for process {accelerator.process_index} ({data_path.name}); it was "
            "written by a run with fewer processes. Resume with the same number of processes."
        )
    with open(data_path, encoding="utf-8") as handle:
        return training_state, json.load(handle)


def save_final_folder(output_dir: str | os.PathLike, name: str, write: Callable[[Path], None]) -> Path:
    """Main process only: `write(tmp_folder)` then publish it atomically as `output_dir/name`."""
    final = Path(output_dir) / name
    with atomic_folder(final) as folder:
        write(folder)
    return final


def save_final_model(output_dir: str | os.PathLike, model, feature_extractor, name: str = FINAL_MODEL_NAME) -> Path:
    """
    Main process only: publish `model` and its `feature_extractor` as one Hugging Face folder, `output_dir/<name>`
    (`model`, or `best_model` for the monitor's choice), which `from_pretrained` (and `pipeline`) load directly.
    Written atomically by `save_final_folder`.
    """

    def write_model(folder: Path) -> None:
        model.save_pretrained(folder)
        feature_extractor.save_pretrained(folder)

    return save_final_folder(output_dir, name, write_model)
