"""Fine-tuning an encoder or classifier of either family (`resp_audio`: `RespAudioForAudioClassification`;
`efficientat`: `EfficientATForAudioClassification`, e.g. `pretrained/efficientat-mn04-as` with its 527-class AudioSet
head replaced), or a preset from scratch, on a benchmark task with transformers' `Trainer`.

The data is either a task of the `resp_audio_hf.data` registry (`S1`, `T1` ... `T19`, the SPRSound challenge's
`SPRSound-1-1` ... `SPRSound-2-2`, with the task's labels and splits) or any `datasets` DatasetDict with an audio and a
label column (a `save_to_disk` folder, a Hub id, an `audiofolder`...). Clips keep their own length:
`RespAudioCollator` pads them per batch and the model masks the padding out. SPRSound challenge tasks are scored with
the challenge's Score, SE and SP (`sprsound_score`), the best checkpoint is chosen on the validation Score, and each
test part (`test_inter`, `test_intra`) is scored apart with it. Class imbalance (`imbalance`) and waveform
augmentation (`augmentation`) are options. The run writes `metrics.jsonl` (every Trainer log), `command.txt` (the
exact command, one line per start or resumption) and `finetune_results.json`.

    python training/finetune.py --config training/configs/finetune_sprsound.yaml
    python training/finetune.py --config training/configs/finetune_sprsound_challenge.yaml task.id=SPRSound-2-1
    accelerate launch --num_processes 4 training/finetune.py --config ... model.name_or_path=runs/m2d/model
    python training/finetune.py --config ... --resume auto       # continue from the newest complete checkpoint

`key.sub=value` arguments override the YAML; everything under `training_args` goes to `TrainingArguments`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.file_io import atomic_write_json, atomic_write_text
from ..logging_setup import configure_logging
from .augmentation import AugmentationConfig
from .batch_norm import hold_batch_norm_statistics
from .checkpointing import save_final_model
from .class_balance import IMBALANCE_REMEDIES
from .config import load_config, to_plain_dict, training_argument_parser
from .finetune_trainer import COMPLETE_MARKER, TRAINER_CHECKPOINT

logger = logging.getLogger(__name__)


@dataclass
class FinetuneModelConfig:
    """
    Args:
        name_or_path: a saved encoder or classifier folder of either family: a `RespAudioModel` /
            `RespAudioForAudioClassification` (e.g. the `model` folder `pretrain.py` writes), an `EfficientATModel` /
            `EfficientATForAudioClassification` (e.g. `pretrained/efficientat-mn04-as`, whose AudioSet head is
            replaced by one for the task's classes); or a `RespAudioConfig` preset name (`tiny-m2d`, `resp-m2d`...)
            to start from random weights.
        config_overrides: config fields to change (dropout, pooling, patchout...).
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
        train_split, eval_split: split names (`eval_split` may be absent from the data).
        test_splits: splits scored after training with the best checkpoint, each apart; None: the registry task's
            own (`test`; SPRSound: `test_inter`, `test_intra`), or `test` for a `dataset`. Absent ones are skipped.
        sprsound_task: score with the SPRSound challenge's Score/SE/SP of this task (`SPRSound-1-1` ...; the labels
            must be its class ids). Set by itself for the registry's challenge tasks; give it for a `dataset`.
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
    test_splits: list[str] | None = None
    sprsound_task: str | None = None
    max_seconds: float | None = None
    limit: int | None = None

    def __post_init__(self):
        if (self.id is None) == (self.dataset is None):
            raise ValueError(
                "task: give exactly one of `id` (a registry task) and `dataset` (a datasets folder or id); the default "
                "`id` is S1, so a YAML or override giving `dataset` also sets `task.id: null`."
            )


@dataclass
class FinetuneConfig:
    """Everything `finetune.py` reads; `training_args` are `transformers.TrainingArguments` fields.

    Args:
        imbalance: how class imbalance is handled (classification): `none`, `weighted_loss` (cross-entropy weighted
            by `n / (classes * n_class)`) or `balanced_sampler` (training examples drawn with probability
            `1 / n_class`); see `training/class_balance.py`.
        augmentation: waveform augmentation of the training clips (off by default); see `training/augmentation.py`.
        freeze_batch_norm_statistics: keep the model's BatchNorm layers (EfficientAT's) in evaluation mode while it
            trains: their running statistics stay the pre-trained ones and their affine parameters still train. In
            train mode EfficientAT normalises each group of equal-length clips by its own statistics, so batches of
            recordings of different lengths are normalised clip by clip; see `training/batch_norm.py`.
    """

    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    task: TaskConfig = field(default_factory=lambda: TaskConfig(id="S1"))
    imbalance: str = "none"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    freeze_batch_norm_statistics: bool = False
    training_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.imbalance not in IMBALANCE_REMEDIES:
            raise ValueError(f"imbalance must be one of {IMBALANCE_REMEDIES}, got {self.imbalance!r}.")


@dataclass
class LabelledSplits:
    """The splits to train and evaluate on, what the labels mean, the splits to test on and, for the SPRSound
    challenge's tasks, which one (its `ChallengeTask`, for the score)."""

    splits: dict[str, Any]
    problem_type: str
    label_names: list[str] | None
    test_splits: tuple[str, ...] = ("test",)
    challenge: Any = None


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
            (task.test_splits or ["test"])[0]: table.select(indices[np.asarray(held_out)]),
        }
    test_splits = tuple(task.test_splits or task_data.test_splits)
    if spec.kind == "classification":
        return LabelledSplits(dict(tables), "single_label_classification", list(spec.class_names), test_splits)
    return LabelledSplits(dict(tables), "regression", None, test_splits)


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
    return LabelledSplits(dict(tables), problem_type, names, tuple(task.test_splits or ["test"]))


def load_splits(task: TaskConfig, sampling_rate: int) -> LabelledSplits:
    """Train/eval/test tables with an undecoded `Audio` column (`{"path", "bytes"}`), which `RespAudioCollator` decodes
    as `bench` decodes files."""
    import datasets

    labelled = _registry_splits(task, sampling_rate) if task.id else _dataset_splits(task, sampling_rate)
    labelled.challenge = _challenge_of(task, labelled)
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


def _challenge_of(task: TaskConfig, labelled: LabelledSplits):
    """The SPRSound `ChallengeTask` scoring this task (None for other tasks), its class names checked."""
    from resp_audio_hf.data.corpora.sprsound_challenge import CHALLENGE_TASKS, challenge_task

    name = task.sprsound_task or (task.id if task.id in CHALLENGE_TASKS else None)
    if name is None:
        return None
    challenge = challenge_task(name)
    if labelled.label_names != list(challenge.class_names):
        raise ValueError(
            f"task.sprsound_task={name}: the labels must be its classes {list(challenge.class_names)} in id order, "
            f"got {labelled.label_names}."
        )
    return challenge


# ---------------------------------------------------------------------------------------------- model and metrics


def build_model(config: FinetuneModelConfig, labelled: LabelledSplits):
    """The classifier to fine-tune: a preset from scratch, or the saved model's family's classifier with a head for
    the task's labels (an encoder-only folder gets a new head; a classifier with other labels gets its head
    replaced, e.g. mn04's 527 AudioSet classes)."""
    from resp_audio_hf import MODEL_TYPES, PRESETS, RespAudioConfig, RespAudioForAudioClassification

    if labelled.problem_type == "regression":
        label_kwargs = {"num_labels": 1, "problem_type": "regression"}
    else:
        names = labelled.label_names
        label_kwargs = {  # num_labels follows from id2label (passing both warns about the checkpoint's old map)
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
            "problem_type": labelled.problem_type,
        }
    if config.name_or_path in PRESETS and not Path(config.name_or_path).exists():
        model_config = RespAudioConfig.from_preset(config.name_or_path, **config.config_overrides, **label_kwargs)
        return RespAudioForAudioClassification(model_config)
    from transformers import AutoConfig

    model_type = AutoConfig.from_pretrained(config.name_or_path).model_type
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"{config.name_or_path} is a {model_type!r} model; fine-tuning takes the families {sorted(MODEL_TYPES)}."
        )
    classifier_class = MODEL_TYPES[model_type].classifier_class
    return classifier_class.from_pretrained(
        config.name_or_path, ignore_mismatched_sizes=True, **config.config_overrides, **label_kwargs
    )


def make_compute_metrics(problem_type: str, challenge=None):
    """
    `Trainer.compute_metrics` scoring as OPERA does, through the package's `evaluate` modules (`opera_auroc`,
    `opera_mae`), which call the benchmark's own metric functions. With a SPRSound `ChallengeTask` (`challenge`) the
    predicted classes (arg-max) are also scored with the challenge's Score, SE and SP (`sprsound_scores`, Poor Quality
    excluded from SE, the `sprsound_score` module's default): `score`, `sensitivity`, `specificity`, and for the
    record tasks `score_poor_quality_abnormal` (the other convention).
    """
    from resp_audio_hf.benchmark.metrics import sprsound_scores
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
        if challenge is not None:
            predicted = logits.argmax(axis=1)
            scores = sprsound_scores(labels, predicted, poor_quality_class=challenge.poor_quality_class)
            metrics.update({key: scores[key] for key in ("score", "sensitivity", "specificity")})
            if challenge.poor_quality_class is not None:
                metrics["score_poor_quality_abnormal"] = sprsound_scores(
                    labels, predicted, poor_quality_class=challenge.poor_quality_class, poor_quality="abnormal"
                )["score"]
        return metrics

    return compute_metrics


# ---------------------------------------------------------------------------------------------- checkpoints


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """Newest `checkpoint-<step>` of a Trainer run that holds the completion marker."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    complete = []
    for child in output_dir.iterdir():
        match = TRAINER_CHECKPOINT.match(child.name)
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


def run(config: FinetuneConfig, resume: str | None = None, command: str | None = None) -> dict:
    """Fine-tune, save `<output_dir>/model` (the best checkpoint's weights with `load_best_model_at_end`) and return
    the metrics of the evaluation split and of each test split, each scored apart.

    Args:
        resume: a Trainer checkpoint folder, or `auto` for the newest complete one in `output_dir`.
        command: the command line that started the run, appended to `output_dir/command.txt`.
    """
    import torch
    from transformers import TrainingArguments, set_seed

    from resp_audio_hf.collation import RespAudioCollator

    from .finetune_trainer import CheckpointCompletionCallback, FinetuneTrainer, MetricsLogCallback

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

    feature_extractor = _feature_extractor(config.model)
    labelled = load_splits(config.task, feature_extractor.sampling_rate)
    splits = labelled.splits
    eval_split = config.task.eval_split if config.task.eval_split in splits else None
    if labelled.challenge is not None:
        if eval_split is None:
            raise ValueError(
                f"{labelled.challenge.task_id}: no {config.task.eval_split!r} split to choose the checkpoint on; "
                "the challenge's model selection uses the validation patients only (never a test part)."
            )
        # Model selection on the validation Score only.
        args_dict.setdefault("metric_for_best_model", "score")
        args_dict.setdefault("greater_is_better", True)
    elif eval_split is None and args_dict["eval_strategy"] != "no":
        eval_split = next((name for name in labelled.test_splits if name in splits), None)
    training_args = TrainingArguments(**args_dict)
    configure_logging(
        logging.INFO if training_args.process_index == 0 else logging.WARNING,
        timestamps=True,
        rank=training_args.process_index,
    )
    if training_args.process_index == 0 and command:
        _record_command(Path(training_args.output_dir), command)

    set_seed(training_args.seed)  # the new head's initialisation is part of the run's seed
    model = build_model(config.model, labelled)
    if config.freeze_batch_norm_statistics:
        hold_batch_norm_statistics(model)
    collator = RespAudioCollator(
        feature_extractor,
        audio_column=config.task.audio_column,
        label_column=config.task.label_column,
        max_seconds=config.task.max_seconds,
    )
    train_table = splits[config.task.train_split]
    trainer = FinetuneTrainer(
        model=model,
        args=training_args,
        train_dataset=train_table,
        eval_dataset=splits[eval_split] if eval_split else None,
        data_collator=collator,
        compute_metrics=make_compute_metrics(labelled.problem_type, labelled.challenge),
        callbacks=[CheckpointCompletionCallback(), MetricsLogCallback()],
        **_training_extras(config, labelled, train_table, collator, training_args.seed),
    )
    trainer.train(resume_from_checkpoint=_resume_path(resume, training_args.output_dir))

    results: dict[str, Any] = {}
    for name in dict.fromkeys(s for s in (eval_split, *labelled.test_splits) if s in splits):
        results[name] = trainer.evaluate(splits[name], metric_key_prefix=name)
    if trainer.is_world_process_zero():
        final = save_final_model(training_args.output_dir, trainer.model, feature_extractor)
        atomic_write_json(
            Path(training_args.output_dir) / "finetune_results.json",
            {
                "config": to_plain_dict(config),
                "metrics": results,
                "model": str(final),
                "best_checkpoint": trainer.state.best_model_checkpoint,
                "best_metric": trainer.state.best_metric,
                "metric_for_best_model": training_args.metric_for_best_model,
                "eval_split": eval_split,
                "test_splits": [s for s in labelled.test_splits if s in splits],
                "sprsound_task": labelled.challenge.task_id if labelled.challenge is not None else None,
                "num_train_examples": len(train_table),
                "command": command,
            },
            sort_keys=True,
        )
        logger.info("Saved the fine-tuned model to %s; metrics %s", final, results)
    trainer.accelerator.wait_for_everyone()
    return results


def _training_extras(config: FinetuneConfig, labelled: LabelledSplits, train_table, collator, seed: int) -> dict:
    """The `FinetuneTrainer` arguments of the imbalance remedy and the augmentation."""
    import dataclasses

    from .augmentation import LungSoundAugmentation
    from .class_balance import BalancedClassSampler, balanced_class_weights, weighted_cross_entropy

    extras: dict[str, Any] = {}
    classification = labelled.problem_type == "single_label_classification"
    labels = np.asarray(train_table[config.task.label_column]) if classification else None
    if config.imbalance != "none":
        if not classification:
            raise ValueError(f"imbalance={config.imbalance!r} applies to single-label classification only.")
        num_classes = len(labelled.label_names)
        if config.imbalance == "weighted_loss":
            weights = balanced_class_weights(labels, num_classes)
            logger.info("Class weights of the cross-entropy: %s", dict(zip(labelled.label_names, weights.round(3))))
            extras["compute_loss_func"] = weighted_cross_entropy(weights)
        else:
            extras["train_sampler"] = BalancedClassSampler(labels, num_classes, seed=seed)
    if config.augmentation.enabled:
        augmentation = LungSoundAugmentation(
            config.augmentation, seed=seed, dataset=train_table, labels=labels, label_column=config.task.label_column
        )
        extras["train_collator"] = dataclasses.replace(collator, waveform_transform=augmentation)
    return extras


def _record_command(output_dir: Path, command: str) -> None:
    """Append the command to `command.txt` (a resumed run adds its own line)."""
    path = output_dir / "command.txt"
    previous = path.read_text(encoding="utf-8") if path.is_file() else ""
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, previous + command.strip() + "\n")


def _feature_extractor(config: FinetuneModelConfig):
    """The model's front end: the saved one of a model folder, else the one matching the preset."""
    from resp_audio_hf import PRESETS, RespAudioConfig, RespAudioFeatureExtractor

    path = Path(config.name_or_path)
    if (path / "preprocessor_config.json").is_file():
        return RespAudioFeatureExtractor.from_pretrained(str(path))
    if config.name_or_path in PRESETS and not path.exists():
        model_config = RespAudioConfig.from_preset(config.name_or_path, **config.config_overrides)
    else:
        from transformers import AutoConfig

        # Every family's configuration states its front end (`feature_extractor_settings`).
        model_config = AutoConfig.from_pretrained(config.name_or_path, **config.config_overrides)
    return RespAudioFeatureExtractor.from_model_config(model_config)


def main(argv=None) -> None:
    args = training_argument_parser(
        __doc__,
        FinetuneConfig,
        resume_help="A Trainer checkpoint folder to continue from, or 'auto': the newest complete one in output_dir.",
        override_example="training_args.max_steps=100",
    ).parse_args(argv)
    config = load_config(FinetuneConfig, args.config, args.overrides)
    command = shlex.join(["python", *(sys.argv if argv is None else ["training/finetune.py", *argv])])
    run(config, resume=args.resume, command=command)


__all__ = ["FinetuneConfig", "LabelledSplits", "TaskConfig", "build_model", "latest_complete_checkpoint", "run"]

if __name__ == "__main__":
    main()
