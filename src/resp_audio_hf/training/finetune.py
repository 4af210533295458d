"""Fine-tuning a `RespAudioModel` encoder (or a preset from scratch) on a benchmark task with transformers' `Trainer`.

The data is either a task of the `resp_audio_hf.data` registry (`S1`, `T1` ... `T19`, with the task's labels and
splits) or any `datasets` DatasetDict with an audio and a label column (a `save_to_disk` folder, a Hub id, an
`audiofolder`...). Clips keep their own length: `RespAudioCollator` pads them per batch and the model masks the
padding out.

    python training/finetune.py --config training/configs/finetune_sprsound.yaml
    accelerate launch --num_processes 4 training/finetune.py --config ... model.name_or_path=runs/m2d/model
    python training/finetune.py --config ... --resume auto       # continue from the newest complete checkpoint

`key.sub=value` arguments override the YAML; everything under `training_args` goes to `TrainingArguments`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data._io import atomic_write_json
from .checkpointing import save_final_model
from .config import load_config, to_plain_dict, training_argument_parser

logger = logging.getLogger("finetune")
COMPLETE_MARKER = "checkpoint_complete.json"
_TRAINER_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class FinetuneModelConfig:
    """
    Args:
        name_or_path: a saved `RespAudioModel` / `RespAudioForAudioClassification` folder (e.g. the `model` folder
            `pretrain.py` writes), or a `RespAudioConfig` preset name (`tiny-m2d`, `resp-m2d`...) to start from
            random weights.
        config_overrides: `RespAudioConfig` fields to change (dropout, pooling, patchout...).
    """

    name_or_path: str = "resp-m2d"
    config_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskConfig:
    """
    Args:
        id: a registry task (`S1`, `T7`...; see `resp_audio_hf.data.TASKS`), built from the corpora under
            `data_root`. Leave unset to use `dataset`.
        data_root: folder holding the corpus folders (`icbhi/`, `sprsound/`...).
        verify_audio: probe every file of a registry task before training and drop undecodable ones.
        fold: for cross-validated registry tasks (one `all` split with a `fold` column), the fold held out for
            evaluation; the other rows train.
        dataset: a `datasets.save_to_disk` folder, or anything `datasets.load_dataset` takes, with audio and labels.
        dataset_config: configuration name for `datasets.load_dataset`.
        data_dir: `data_dir` for `datasets.load_dataset` (e.g. with `dataset: audiofolder`).
        audio_column: column holding the audio.
        label_column: column holding the label (class id, class name, or float target for regression).
        train_split, eval_split, test_split: split names (`eval_split`/`test_split` may be absent from the data).
        max_seconds: crop training and evaluation clips to their first `max_seconds` seconds (None keeps them whole).
        limit: keep a random subset of at most this many rows per split (smoke tests).
    """

    id: str | None = None
    data_root: str | None = None
    verify_audio: bool = True
    fold: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    data_dir: str | None = None
    audio_column: str = "audio"
    label_column: str = "label"
    train_split: str = "train"
    eval_split: str | None = "validation"
    test_split: str | None = "test"
    max_seconds: float | None = None
    limit: int | None = None

    def __post_init__(self):
        if (self.id is None) == (self.dataset is None):
            raise ValueError(
                "task: give exactly one of `id` (a registry task) and `dataset` (a datasets folder or id)."
            )


@dataclass
class FinetuneConfig:
    """Everything `finetune.py` reads; `training_args` are `transformers.TrainingArguments` fields."""

    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    task: TaskConfig = field(default_factory=lambda: TaskConfig(id="S1"))
    training_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class LabelledSplits:
    """The splits to train and evaluate on, and what the labels mean."""

    splits: dict[str, Any]
    problem_type: str
    label_names: list[str] | None


# ---------------------------------------------------------------------------------------------- data


def _registry_splits(task: TaskConfig, sampling_rate: int) -> LabelledSplits:
    from resp_audio_hf.data import load_task

    task_data = load_task(task.id, task.data_root, verify_audio=task.verify_audio)
    spec = task_data.spec
    tables = task_data.to_dataset_dict(sampling_rate=sampling_rate)
    if spec.evaluation != "holdout":
        if task.fold is None:
            raise ValueError(
                f"Task {spec.task_id} is cross-validated ({spec.evaluation}); set task.fold to the fold to hold out "
                f"(one of the values of its `fold` column)."
            )
        table = tables["all"]
        held_out = [str(f) == str(task.fold) for f in table["fold"]]
        if not any(held_out):
            raise ValueError(f"Task {spec.task_id} has no fold {task.fold!r}.")
        indices = np.arange(len(table))
        tables = {
            task.train_split: table.select(indices[~np.asarray(held_out)]),
            task.test_split or "test": table.select(indices[np.asarray(held_out)]),
        }
    if spec.kind == "classification":
        return LabelledSplits(dict(tables), "single_label_classification", list(spec.class_names))
    return LabelledSplits(dict(tables), "regression", None)


def _dataset_splits(task: TaskConfig, sampling_rate: int) -> LabelledSplits:
    import datasets

    path = Path(task.dataset)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "state.json").exists()):
        tables = datasets.load_from_disk(str(path))
    else:
        tables = datasets.load_dataset(task.dataset, name=task.dataset_config, data_dir=task.data_dir)
    if not isinstance(tables, datasets.DatasetDict):
        raise ValueError(f"{task.dataset} holds a single split; fine-tuning needs a DatasetDict with a train split.")
    first = tables[task.train_split] if task.train_split in tables else next(iter(tables.values()))
    for column in (task.audio_column, task.label_column):
        if column not in first.column_names:
            raise ValueError(f"{task.dataset} has no column {column!r}; its columns are {first.column_names}.")
    feature = first.features[task.label_column]
    if isinstance(feature, datasets.Value) and feature.dtype == "string":
        tables = tables.class_encode_column(task.label_column)
        feature = tables[task.train_split].features[task.label_column]
    if isinstance(feature, datasets.ClassLabel):
        names, problem_type = list(feature.names), "single_label_classification"
    elif isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        count = max(int(max(table[task.label_column])) for table in tables.values()) + 1
        names, problem_type = [str(i) for i in range(count)], "single_label_classification"
    elif isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        names, problem_type = None, "regression"
    else:
        raise ValueError(
            f"Label column {task.label_column!r} has type {feature}; use class ids, class names, or float targets."
        )
    return LabelledSplits(dict(tables), problem_type, names)


def load_splits(task: TaskConfig, sampling_rate: int) -> LabelledSplits:
    """Train/eval/test tables with an undecoded `Audio` column (`{"path", "bytes"}`), which `RespAudioCollator` decodes
    as `bench` decodes files."""
    import datasets

    labelled = _registry_splits(task, sampling_rate) if task.id else _dataset_splits(task, sampling_rate)
    if task.train_split not in labelled.splits:
        raise ValueError(f"No split {task.train_split!r}; available: {sorted(labelled.splits)}.")
    audio = datasets.Audio(decode=False)
    splits = {}
    for name, table in labelled.splits.items():
        if task.limit is not None:  # a seeded random subset keeps every class in small smoke runs
            table = table.shuffle(seed=0).select(range(min(task.limit, len(table))))
        splits[name] = table.cast_column(task.audio_column, audio)
    labelled.splits = splits
    return labelled


# ---------------------------------------------------------------------------------------------- model and metrics


def build_model(config: FinetuneModelConfig, labelled: LabelledSplits):
    from resp_audio_hf import PRESETS, RespAudioConfig, RespAudioForAudioClassification

    if labelled.problem_type == "regression":
        label_kwargs = {"num_labels": 1, "problem_type": "regression"}
    else:
        names = labelled.label_names
        label_kwargs = {
            "num_labels": len(names),
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": labelled.problem_type,
        }
    if config.name_or_path in PRESETS and not Path(config.name_or_path).exists():
        model_config = RespAudioConfig.from_preset(config.name_or_path, **config.config_overrides, **label_kwargs)
        return RespAudioForAudioClassification(model_config)
    # An encoder-only folder gets a new head; a classifier with other labels gets its head replaced.
    return RespAudioForAudioClassification.from_pretrained(
        config.name_or_path, ignore_mismatched_sizes=True, **config.config_overrides, **label_kwargs
    )


def make_compute_metrics(problem_type: str):
    """
    `Trainer.compute_metrics` scoring as OPERA does, through the package's `evaluate` modules (`opera_auroc`,
    `opera_mae`), which call the benchmark's own metric functions.
    """
    from resp_audio_hf.metrics import load_metric

    if problem_type == "regression":
        mae = load_metric("opera_mae")
    else:
        auroc = load_metric("opera_auroc")

    def compute_metrics(prediction) -> dict[str, float]:
        logits = np.asarray(prediction.predictions, dtype=np.float64)
        labels = np.asarray(prediction.label_ids)
        if problem_type == "regression":
            return mae.compute(predictions=logits.reshape(-1), references=labels.reshape(-1))
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        metrics = {"accuracy": float((logits.argmax(axis=1) == labels).mean())}
        if len(np.unique(labels)) > 1:  # AUROC is undefined on a split with one class
            metrics["auroc"] = auroc.compute(predictions=probabilities, references=labels)["roc_auc"]
        return metrics

    return compute_metrics


# ---------------------------------------------------------------------------------------------- checkpoints


def _checkpoint_completion_callback():
    from transformers import TrainerCallback

    class CheckpointCompletionCallback(TrainerCallback):
        """
        Marks a Trainer checkpoint complete once every process has written its part. The Trainer writes
        `checkpoint-<step>` in place, so a run killed mid-save leaves a partial folder; `--resume auto` skips
        folders without the marker.
        """

        def on_save(self, args, state, control, **kwargs):
            from accelerate import PartialState

            PartialState().wait_for_everyone()
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                atomic_write_json(folder / COMPLETE_MARKER, {"global_step": state.global_step}, sort_keys=True)
            PartialState().wait_for_everyone()
            return control

    return CheckpointCompletionCallback()


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """Newest `checkpoint-<step>` of a Trainer run that holds the completion marker."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = []
    for child in output_dir.iterdir():
        match = _TRAINER_CHECKPOINT.match(child.name)
        if match and (child / COMPLETE_MARKER).is_file():
            complete.append((int(match.group(1)), child))
    return max(complete)[1] if complete else None


def _resume_path(resume: str | None, output_dir: str) -> str | None:
    if resume is None:
        return None
    if resume in ("auto", "latest"):
        found = latest_complete_checkpoint(output_dir)
        if found is None:
            logger.info("No complete checkpoint in %s; starting afresh.", output_dir)
        return None if found is None else str(found)
    if not (Path(resume) / COMPLETE_MARKER).is_file():
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint (no {COMPLETE_MARKER}).")
    return resume


# ---------------------------------------------------------------------------------------------- run


def run(config: FinetuneConfig, resume: str | None = None) -> dict:
    """Fine-tune, save `<output_dir>/model` and return the evaluation metrics."""
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from resp_audio_hf.collation import RespAudioCollator

    args_dict = {
        "output_dir": "runs/finetune",
        "remove_unused_columns": False,  # the collator needs the audio column, which `forward` does not name
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "report_to": "none",
        "dataloader_pin_memory": torch.cuda.is_available(),
        **config.training_args,
    }
    if args_dict["remove_unused_columns"]:
        raise ValueError("training_args.remove_unused_columns must stay false: the collator reads the audio column.")
    # Without a GPU, Accelerate only sets up multi-process CPU training when asked for the CPU.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        args_dict.setdefault("use_cpu", True)
    training_args = TrainingArguments(**args_dict)
    logging.basicConfig(level=logging.INFO if training_args.process_index == 0 else logging.WARNING)

    feature_extractor = _feature_extractor(config.model)
    labelled = load_splits(config.task, feature_extractor.sampling_rate)
    set_seed(training_args.seed)  # the new head's initialisation is part of the run's seed
    model = build_model(config.model, labelled)
    splits = labelled.splits
    eval_split = config.task.eval_split if config.task.eval_split in splits else None
    if eval_split is None and training_args.eval_strategy != "no":
        eval_split = config.task.test_split if config.task.test_split in splits else None
    collator = RespAudioCollator(
        feature_extractor,
        audio_column=config.task.audio_column,
        label_column=config.task.label_column,
        max_seconds=config.task.max_seconds,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits[config.task.train_split],
        eval_dataset=splits[eval_split] if eval_split else None,
        data_collator=collator,
        compute_metrics=make_compute_metrics(labelled.problem_type),
        callbacks=[_checkpoint_completion_callback()],
    )
    trainer.train(resume_from_checkpoint=_resume_path(resume, training_args.output_dir))

    results: dict[str, Any] = {}
    for name in dict.fromkeys(s for s in (eval_split, config.task.test_split) if s in splits):
        results[name] = trainer.evaluate(splits[name], metric_key_prefix=name)
    if trainer.is_world_process_zero():
        final = save_final_model(training_args.output_dir, trainer.model, feature_extractor)
        atomic_write_json(
            Path(training_args.output_dir) / "finetune_results.json",
            {"config": to_plain_dict(config), "metrics": results, "model": str(final)},
            sort_keys=True,
        )
        logger.info("Saved the fine-tuned model to %s; metrics %s", final, results)
    trainer.accelerator.wait_for_everyone()
    return results


def _feature_extractor(config: FinetuneModelConfig):
    """The model's front end: the saved one of a model folder, else the one matching the preset."""
    from resp_audio_hf import PRESETS, RespAudioConfig, RespAudioFeatureExtractor

    path = Path(config.name_or_path)
    if (path / "preprocessor_config.json").is_file():
        return RespAudioFeatureExtractor.from_pretrained(str(path))
    if config.name_or_path in PRESETS and not path.exists():
        model_config = RespAudioConfig.from_preset(config.name_or_path, **config.config_overrides)
    else:
        model_config = RespAudioConfig.from_pretrained(config.name_or_path, **config.config_overrides)
    return RespAudioFeatureExtractor.from_model_config(model_config)


def main(argv=None) -> None:
    args = training_argument_parser(
        __doc__,
        FinetuneConfig,
        resume_help="A Trainer checkpoint folder to continue from, or 'auto': the newest complete one in output_dir.",
        override_example="training_args.max_steps=100",
    ).parse_args(argv)
    config = load_config(FinetuneConfig, args.config, args.overrides)
    run(config, resume=args.resume)


__all__ = ["FinetuneConfig", "TaskConfig", "latest_complete_checkpoint", "run"]

if __name__ == "__main__":
    main()
