"""The `Trainer` that `finetune.py` runs, and its callbacks.

`FinetuneTrainer` is transformers' `Trainer` with two hooks and nothing else of its own: the training DataLoader may
use another sampler (the class-balanced one of `.class_balance`) and another collator (one that augments, see
`.augmentation`) than evaluation, which keeps the plain collator. Optimisation, evaluation, checkpointing,
resumption and multi-process training stay the Trainer's (Accelerate underneath).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from transformers import Trainer, TrainerCallback

from ..data.file_io import atomic_write_json

COMPLETE_MARKER = "checkpoint_complete.json"
METRICS_NAME = "metrics.jsonl"
TRAINER_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class FinetuneTrainer(Trainer):
    """
    Args:
        train_collator: collator of the training DataLoader (default: `data_collator`, which evaluation uses).
        train_sampler: sampler of the training DataLoader (default: the Trainer's random sampler).
        *args, **kwargs: `transformers.Trainer`'s.
    """

    def __init__(self, *args, train_collator=None, train_sampler=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_collator = train_collator
        self.train_sampler = train_sampler

    def _get_train_sampler(self, train_dataset=None):
        if self.train_sampler is not None:
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self):
        if self.train_collator is None:
            return super().get_train_dataloader()
        # The DataLoader keeps the collator it is built with, so evaluation keeps the plain one.
        evaluation_collator = self.data_collator
        self.data_collator = self.train_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = evaluation_collator


class CheckpointCompletionCallback(TrainerCallback):
    """
    Marks a Trainer checkpoint complete once every process has written its part. The Trainer writes
    `checkpoint-<step>` in place, so a run killed mid-save leaves a partial folder; `--resume auto` skips folders
    without the marker.
    """

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            atomic_write_json(folder / COMPLETE_MARKER, {"global_step": state.global_step}, sort_keys=True)
        PartialState().wait_for_everyone()
        return control


class MetricsLogCallback(TrainerCallback):
    """Appends every Trainer log (training loss and learning rate, evaluation metrics) to `output_dir/metrics.jsonl`,
    one JSON object per line with its `step` and `epoch`. A resumed run appends to the same file."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return control
        path = Path(args.output_dir) / METRICS_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"step": state.global_step, "epoch": state.epoch, **logs}
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        return control


__all__ = [
    "COMPLETE_MARKER",
    "METRICS_NAME",
    "CheckpointCompletionCallback",
    "FinetuneTrainer",
    "MetricsLogCallback",
]
