"""Configuration of the training commands: dataclasses filled from a YAML file plus `key.sub=value` overrides, merged
and type-checked as OmegaConf structured configs."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contrastive_objective import ContrastiveObjectiveConfig
from .m2d_objective import M2DObjectiveConfig
from .monitors import MonitorConfig

MIXED_PRECISION = ("no", "bf16", "fp16")
PRETRAINING_METHODS = ("m2d", "contrastive")
POSITIVE_PAIRS = ("same_recording", "same_subject")


@dataclass
class CorpusConfig:
    """
    One pre-training corpus. Exactly one of `corpus` and `path` says where it comes from.

    Args:
        name: label used in logs (defaults to `corpus` or the last part of `path`).
        corpus: a corpus of the `resp_audio_hf.data` registry (`icbhi`, `coughvid`, `sprsound`, ...), found in
            `root`, or under `data_root` by its usual folder names.
        root: folder of a registry corpus.
        data_root: folder holding registry corpus folders.
        path: a folder of audio files (searched recursively), a folder written by `datasets.save_to_disk`, or
            anything `datasets.load_dataset` accepts (a Hub id, a builder name with `data_dir`...).
        data_dir: `data_dir` argument of `datasets.load_dataset`.
        dataset_config: configuration name of a `datasets.load_dataset` dataset.
        split: split to use (`train`, or `test_inter` for SPRSound...); `None` joins every split of the corpus.
        audio_column: column holding the audio.
        metadata: for a folder of audio files, a CSV/JSON/JSONL table with one row per file (other columns can then
            be filtered on).
        file_column: column of `metadata` naming the file (relative path, file name, or stem without extension).
        filters: conditions rows must meet, `"<column> <op> <value>"` with op in `> >= < <= == !=`, e.g.
            `"cough_detected > 0.95"` (CoughVID as in the paper) or `"official_split == train"`.
        repeat: times the corpus is listed per epoch (fractions draw a random subset for the remainder).
        weight: mixing weight; when any corpus has one, every corpus needs one and an epoch holds
            `data.epoch_size` clips drawn in these proportions (streaming corpora always mix by weight).
        limit: keep only the first `limit` rows (smoke tests).
        crop_seconds: length of this corpus's random crops for the contrastive objective (OPERA: about 6.4 s for
            lung and breathing sounds, 1.6 s for coughs); `None` uses the model's window (`window_frames`).
        exclude_subjects: subjects (values of `subject_column`) whose rows are left out, e.g. the patients a
            validation monitor is scored on (pre-training fills it from `monitor.hold_out_from_corpora`).
        subject_column: column naming each row's subject (registry corpora: `subject_id`).
        positives: what the contrastive objective pairs: `"same_recording"` (two crops of one recording, OPERA-CT) or
            `"same_subject"` (a crop of the recording and a crop of another recording of the same subject, e.g.
            another chest location of the same child; a subject with one recording falls back to the same recording).
    """

    name: str | None = None
    corpus: str | None = None
    root: str | None = None
    data_root: str | None = None
    path: str | None = None
    data_dir: str | None = None
    dataset_config: str | None = None
    split: str | None = None
    audio_column: str = "audio"
    metadata: str | None = None
    file_column: str = "file"
    filters: list[str] = field(default_factory=list)
    repeat: float = 1.0
    weight: float | None = None
    limit: int | None = None
    crop_seconds: float | None = None
    exclude_subjects: list[str] = field(default_factory=list)
    subject_column: str = "subject_id"
    positives: str = "same_recording"

    def __post_init__(self):
        if self.positives not in POSITIVE_PAIRS:
            raise ValueError(f"Corpus {self.label}: positives must be one of {POSITIVE_PAIRS}, got {self.positives!r}.")
        if self.crop_seconds is not None and self.crop_seconds <= 0:
            raise ValueError(f"Corpus {self.label}: crop_seconds must be positive, got {self.crop_seconds}.")
        if (self.corpus is None) == (self.path is None):
            raise ValueError(f"Corpus {self.name!r}: give exactly one of `corpus` (a registry name) and `path`.")
        if self.repeat <= 0 or (self.weight is not None and self.weight <= 0):
            raise ValueError(f"Corpus {self.label}: repeat and weight must be positive.")
        if self.metadata is not None and self.path is None:
            raise ValueError(f"Corpus {self.label}: `metadata` applies to a `path` folder of audio files.")

    @property
    def label(self) -> str:
        return self.name or self.corpus or Path(str(self.path)).name


@dataclass
class DataConfig:
    """
    Pre-training data.

    Args:
        corpora: the corpora to mix.
        batch_size: clips per process and micro-batch.
        num_workers: DataLoader worker processes per training process (decoding, resampling, log-mel).
        streaming: read the corpora as `datasets.IterableDataset` streams (Hub datasets too large to download);
            local folders and `save_to_disk` datasets are memory-mapped and need no streaming.
        shuffle_buffer: examples in the shuffle buffer of a stream.
        epoch_size: clips per epoch when corpora are mixed by weight (default: the sum of their sizes).
        short_clips: `"repeat"` tiles clips shorter than a crop (M2D's `repeat_short`), `"pad"` zero-pads them.
        cache_dir: decode every clip of the (local, map-style) corpora once, resampled to the model's rate, into this
            folder as float32 (`audio_cache.py`; keyed by each file's path, size and mtime, so never stale) and crop
            from there: no decoding or resampling per step. Unusable files are then left out before training.
        normalization_statistics: the mean and std that normalise the log-mel: `"preset"` keeps the feature
            extractor's (the preset's published values, or those of the `init_from` folder); `"training"` measures them
            on `normalization_clips` random crops of these corpora before training, as M2D does on its own data
            (`normalization_statistics.py`), and saves them with the model.
        normalization_clips: crops measured for `normalization_statistics: training` (M2D: 10,000).
    """

    corpora: list[CorpusConfig] = field(default_factory=list)
    batch_size: int = 64
    num_workers: int = 0
    streaming: bool = False
    shuffle_buffer: int = 1000
    epoch_size: int | None = None
    short_clips: str = "repeat"
    cache_dir: str | None = None
    normalization_statistics: str = "preset"
    normalization_clips: int = 10_000

    def __post_init__(self):
        from .normalization_statistics import NORMALIZATION_STATISTICS

        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be positive, got {self.batch_size}.")
        if self.normalization_statistics not in NORMALIZATION_STATISTICS:
            raise ValueError(
                f"data.normalization_statistics must be one of {NORMALIZATION_STATISTICS}, got "
                f"{self.normalization_statistics!r}."
            )
        if self.normalization_clips < 1:
            raise ValueError(f"data.normalization_clips must be positive, got {self.normalization_clips}.")
        if self.short_clips not in ("repeat", "pad"):
            raise ValueError(f"data.short_clips must be 'repeat' or 'pad', got {self.short_clips!r}.")


@dataclass
class ModelConfig:
    """
    The encoder to train.

    Args:
        init_from: folder of a saved encoder of any family (e.g. an AudioSet-pre-trained M2D encoder, or
            `pretrained/efficientat-mn04-as`) to start from; loaded with `AutoModel`.
        config_from: folder whose configuration is built with random weights (e.g. mn04 from a random start), when
            `init_from` is unset; its feature extractor is used too.
        preset: `RespAudioConfig` preset used when training from scratch (`init_from` and `config_from` unset).
        config_overrides: configuration fields to change (e.g. `{window_frames: 608}`).
    """

    init_from: str | None = None
    config_from: str | None = None
    preset: str | None = "resp-m2d"
    config_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """
    AdamW with a cosine schedule after a linear warm-up (M2D's `util/lr_sched.py`).

    Args:
        blr: base learning rate; the actual rate is `blr * effective_batch_size / 256` (M2D: 3e-4).
        lr: absolute learning rate, overriding `blr`.
        min_lr: rate at the end of the cosine.
        weight_decay: decoupled weight decay of matrices (biases, norms and tokens get none, as in timm).
        betas: AdamW betas (M2D: 0.9, 0.95).
        warmup_epochs: warm-up length in epochs (ignored when `warmup_steps` is set).
        warmup_steps: warm-up length in optimizer steps.
        clip_grad: maximum global gradient norm (M2D: 3.0); `None` disables clipping.
    """

    blr: float = 3e-4
    lr: float | None = None
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 5.0
    warmup_steps: int | None = None
    clip_grad: float | None = 3.0


@dataclass
class TrainConfig:
    """
    The training loop.

    Args:
        output_dir: where checkpoints, logs and the final model go.
        epochs: passes over the mixed corpora (ignored when `max_steps` is set; streams need `max_steps`).
        max_steps: optimizer steps to run.
        gradient_accumulation_steps: micro-batches per optimizer step.
        mixed_precision: `"no"`, `"bf16"` or `"fp16"` autocast (Accelerate).
        seed: seed of weights, data order, crops and masks.
        save_every_steps: checkpoint period in optimizer steps (a final checkpoint is always written).
        keep_last: checkpoints kept on disk.
        log_every_steps: logging period in optimizer steps.
        gradient_checkpointing: recompute encoder activations in the backward pass to save memory.
    """

    output_dir: str = "runs/pretrain"
    epochs: int = 50
    max_steps: int | None = None
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    save_every_steps: int = 1000
    keep_last: int = 3
    log_every_steps: int = 10
    gradient_checkpointing: bool = False

    def __post_init__(self):
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"train.mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}.")
        if self.gradient_accumulation_steps < 1 or self.save_every_steps < 1 or self.keep_last < 1:
            raise ValueError("train.gradient_accumulation_steps, save_every_steps and keep_last must be positive.")


@dataclass
class PretrainConfig:
    """
    Everything `pretrain.py` reads.

    Args:
        method: the self-supervised objective: `"m2d"` (Masked Modeling Duo, settings in `objective`; ViT encoders)
            or `"contrastive"` (OPERA-CT with an optional frozen teacher, settings in `contrastive`; any encoder).
        monitor: the validation monitors (collapse measures and a probe), and selection on them.
    """

    method: str = "m2d"
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: M2DObjectiveConfig = field(default_factory=M2DObjectiveConfig)
    contrastive: ContrastiveObjectiveConfig = field(default_factory=ContrastiveObjectiveConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.method not in PRETRAINING_METHODS:
            raise ValueError(f"method must be one of {PRETRAINING_METHODS}, got {self.method!r}.")
        unknown = set(self.monitor.hold_out_from_corpora) - {spec.label for spec in self.data.corpora}
        if unknown:
            raise ValueError(f"monitor.hold_out_from_corpora names no corpus of data.corpora: {sorted(unknown)}.")
        # Checked here rather than in DataConfig, whose empty default is the schema OmegaConf merges the YAML into.
        if not self.data.corpora:
            raise ValueError("data.corpora is empty: list at least one corpus to pre-train on.")


# ---------------------------------------------------------------------------------------------- YAML + CLI


def parse_overrides(overrides: list[str]):
    """`a.b.c=value` entries as an OmegaConf config; values are parsed as YAML (`3`, `1e-4`, `true`, `[1, 2]`)."""
    from omegaconf import OmegaConf

    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Override {item!r} is not of the form section.key=value (e.g. train.max_steps=100).")
    return OmegaConf.from_dotlist(list(overrides))


def build_dataclass(cls, *sources):
    """
    Instantiate dataclass `cls` from its defaults merged with `sources` (nested dicts, OmegaConf configs), in order,
    through an OmegaConf structured config: unknown keys and values of the wrong type are refused with the key and
    the valid keys or the expected type; each dataclass's `__post_init__` checks the values it is built with.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), *(source or {} for source in sources))
        return OmegaConf.to_object(merged)
    except ConfigKeyError as error:
        valid = sorted(f.name for f in dataclasses.fields(error.object_type)) if error.object_type else []
        raise ValueError(f"Unknown key {error.full_key!r} in {cls.__name__}; valid keys there: {valid}.") from None
    except OmegaConfBaseException as error:
        raise ValueError(f"{cls.__name__}: {error.msg} (at {error.full_key!r}).") from None


def training_argument_parser(
    description: str, config_class, resume_help: str, override_example: str
) -> argparse.ArgumentParser:
    """
    The command line the training scripts share: `--config` (YAML with the sections of `config_class`, a dataclass),
    `--resume` (a checkpoint folder or `auto`) and positional `section.key=value` overrides such as
    `override_example`, the first and last read by [`load_config`]. Scripts add their own options.
    """
    sections = ", ".join(f.name for f in dataclasses.fields(config_class))
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"YAML file with the sections {sections}.")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT|auto", help=resume_help)
    overrides_help = f"section.key=value overrides of the YAML (e.g. {override_example})."
    parser.add_argument("overrides", nargs="*", help=overrides_help)
    return parser


def load_config(cls, path: str | None, overrides: list[str] | None = None):
    """Build `cls` from its defaults, the YAML file `path` (optional) and the `section.key=value` `overrides`."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(path) if path is not None else None
    return build_dataclass(cls, raw, parse_overrides(list(overrides or [])))


def to_plain_dict(config) -> dict:
    """Nested plain-Python copy of a config dataclass, for logs and checkpoints."""
    return dataclasses.asdict(config)
