"""Self-supervised pre-training, from scratch or further from a pre-trained encoder: Masked Modeling Duo (M2D) of a
`RespAudioModel`, or OPERA-CT's contrastive objective with an optional frozen teacher for any encoder (`method`).

Run on any number of processes and nodes with Accelerate (or torchrun):

    accelerate launch training/pretrain.py --config training/configs/resp_m2d_further_pretraining.yaml
    accelerate launch --num_processes 8 training/pretrain.py --config ... train.output_dir=runs/m2d --resume auto
    torchrun --nproc_per_node 2 training/pretrain.py --config ... data.batch_size=32

`key.sub=value` arguments override the YAML. The online encoder is saved as a Hugging Face folder
(`<output_dir>/model`, loadable with `AutoModel.from_pretrained`) together with its feature extractor.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data.file_io import atomic_write_json, atomic_write_text
from ..logging_setup import configure_logging
from .checkpointing import (
    BEST_MODEL_NAME,
    resolve_resume,
    restore_training_checkpoint,
    save_checkpoint,
    save_final_model,
)
from .config import OptimizerConfig, PretrainConfig, load_config, to_plain_dict, training_argument_parser
from .data import build_batch_stream
from .m2d_objective import M2DObjective, ema_decay_at, resolve_ema_decays
from .monitors import MonitorSelection, RepresentationMonitor, load_monitor_clips
from .normalization_statistics import apply_log_mel_statistics, resolve_training_statistics

logger = logging.getLogger(__name__)
METRICS_NAME = "metrics.jsonl"
UNUSABLE_FILES_NAME = "unusable_files.json"
DATA_FILES_NAME = "data_files.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = training_argument_parser(
        __doc__,
        PretrainConfig,
        resume_help="Continue from a checkpoint folder, or with 'auto' from the newest one in train.output_dir "
        "(starting afresh when there is none, so a preempted job can be relaunched unchanged).",
        override_example="train.max_steps=100",
    )
    parser.add_argument(
        "--stop-after-steps",
        type=int,
        default=None,
        help="Testing aid: SIGKILL every process right after this optimizer step (and its checkpoint, if one is due).",
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------- model and optimizer


def build_encoder(config: PretrainConfig):
    """The encoder to train: a saved folder of any family (`init_from`), a folder's configuration with random weights
    (`config_from`), or a `RespAudioConfig` preset."""
    from transformers import AutoConfig, AutoModel

    from resp_audio_hf import RespAudioConfig, RespAudioModel

    model_config = config.model
    if model_config.init_from:
        encoder = AutoModel.from_pretrained(model_config.init_from, **model_config.config_overrides)
    elif model_config.config_from:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(model_config.config_from, **model_config.config_overrides))
    elif model_config.preset:
        encoder = RespAudioModel(RespAudioConfig.from_preset(model_config.preset, **model_config.config_overrides))
    else:
        raise ValueError(
            "Set model.init_from (a saved encoder folder), model.config_from (its configuration, random weights) or "
            "model.preset (training from scratch)."
        )
    if config.method == "m2d" and not isinstance(encoder, RespAudioModel):
        raise ValueError(
            f"M2D pre-training needs a RespAudioModel (ViT); {type(encoder).__name__} can use method=contrastive."
        )
    if config.train.gradient_checkpointing:
        encoder.activation_checkpointing_enable()
    return encoder


def build_feature_extractor(config: PretrainConfig, encoder):
    """The encoder's front end: the folder's own (`init_from` / `config_from`), else the preset's."""
    from transformers import AutoFeatureExtractor

    from resp_audio_hf import RespAudioFeatureExtractor

    folder = config.model.init_from or config.model.config_from
    if folder:
        return AutoFeatureExtractor.from_pretrained(folder)
    return RespAudioFeatureExtractor.from_model_config(encoder.config)


def build_objective(config: PretrainConfig, encoder):
    """The objective module wrapping `encoder`: M2D, or the contrastive objective with its frozen teacher."""
    if config.method == "m2d":
        return M2DObjective(encoder, config.objective)
    from transformers import AutoModel

    from .contrastive_objective import ContrastiveObjective

    teacher = None
    if config.contrastive.teacher_weight > 0:
        teacher_from = config.contrastive.teacher_from or config.model.init_from
        if not teacher_from:
            raise ValueError("contrastive.teacher_weight > 0 needs contrastive.teacher_from or model.init_from.")
        teacher = AutoModel.from_pretrained(teacher_from, **config.model.config_overrides)
    return ContrastiveObjective(encoder, config.contrastive, teacher)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """timm's split: no decay for biases, norms (1-D tensors), and class/mask tokens and position embeddings."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim <= 1 or name.endswith(("token", "position_embeddings"))
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, peak: float, minimum: float) -> float:
    """Linear warm-up to `peak`, then a half cosine down to `minimum` (M2D's `adjust_learning_rate`, per step)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def resolve_schedule(config: PretrainConfig, batches_per_epoch: int | None, world_size: int) -> dict:
    """Total steps, warm-up steps and peak learning rate from the config and the data size."""
    train, optimizer = config.train, config.optimizer
    accumulation = train.gradient_accumulation_steps
    steps_per_epoch = None if batches_per_epoch is None else batches_per_epoch // accumulation
    if train.max_steps is not None:
        total_steps = train.max_steps
    elif steps_per_epoch is not None:
        total_steps = train.epochs * steps_per_epoch
    else:
        raise ValueError("Streaming data has no epoch length: set train.max_steps.")
    if optimizer.warmup_steps is not None:
        warmup_steps = optimizer.warmup_steps
    elif steps_per_epoch is not None:
        warmup_steps = round(optimizer.warmup_epochs * steps_per_epoch)
    elif optimizer.warmup_epochs:
        raise ValueError("Streaming data has no epoch length: set optimizer.warmup_steps instead of warmup_epochs.")
    else:
        warmup_steps = 0
    effective_batch = config.data.batch_size * accumulation * world_size
    peak = optimizer.lr if optimizer.lr is not None else optimizer.blr * effective_batch / 256
    ema_start, ema_end = resolve_ema_decays(config.objective, total_steps)
    return {
        "total_steps": total_steps,
        "warmup_steps": min(warmup_steps, total_steps),
        "steps_per_epoch": steps_per_epoch,
        "effective_batch_size": effective_batch,
        "peak_lr": peak,
        "ema_decay_start": ema_start,
        "ema_decay_end": ema_end,
    }


def build_optimizer(model: torch.nn.Module, config: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=0.0, betas=tuple(config.betas))


def mask_seed(seed: int, process_index: int, step: int, micro_step: int) -> int:
    """Seed of the patch masks of one micro-batch: a pure function of the position, so resumes redraw them exactly."""
    return int(np.random.SeedSequence([seed, process_index, step, micro_step]).generate_state(1, np.uint64)[0])


# ---------------------------------------------------------------------------------------------- logging


class MetricsLog:
    """JSON lines on the main process; on resume, lines past the checkpoint (work that is redone) are dropped."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.exists():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by the kill
                    continue
                if record.get("step", 0) <= resume_step:
                    kept.append(line)
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")


class UnusableFileLog:
    """
    Files the run could not use, named in `unusable_files.json` (`{path: reason}`, rewritten atomically when one is
    added, kept across resumes) and counted in every metrics line; each is logged once, when first met.
    """

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled
        self.files: dict[str, str] = {}
        if enabled and path.exists():
            self.files = json.loads(path.read_text(encoding="utf-8"))

    def add(self, found: dict[str, str]) -> None:
        new = {path: reason for path, reason in found.items() if path not in self.files}
        if not self.enabled or not new:
            return
        for path, reason in new.items():
            logger.warning("Skipping unusable file %s: %s", path, reason)
        self.files.update(new)
        atomic_write_json(self.path, self.files, sort_keys=True)


def file_list_sha256(paths) -> str:
    """SHA-256 of the sorted paths, one per line: identifies the exact file list a run saw."""
    return hashlib.sha256("".join(f"{path}\n" for path in sorted(paths)).encode("utf-8")).hexdigest()


def data_files_record(files: dict[str, list[str]] | None) -> dict:
    """Per corpus and overall: the files listed and the SHA-256 of the sorted list (`None` for streams)."""
    if files is None:
        return {"files": None, "sha256": None}
    every = [path for paths in files.values() for path in paths]
    return {
        "sha256": file_list_sha256(every),
        "num_files": len(every),
        "corpora": {
            name: {"num_files": len(paths), "sha256": file_list_sha256(paths), "files": sorted(paths)}
            for name, paths in files.items()
        },
    }


def _peak_memory_mb(device: torch.device) -> dict:
    import resource

    memory = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        memory["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return memory


# ---------------------------------------------------------------------------------------------- training


class ThroughputWindow:
    """Losses and wall time of the optimizer steps since the last log line."""

    def __init__(self):
        self.restart()

    def restart(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.extras: dict[str, list[torch.Tensor]] = {}
        self.steps = 0
        self.restart_clock()

    def restart_clock(self) -> None:
        self._start = time.perf_counter()

    def add(self, losses: list[torch.Tensor], extras: dict[str, list[torch.Tensor]] | None = None) -> None:
        self.losses.extend(losses)
        for name, values in (extras or {}).items():
            self.extras.setdefault(name, []).extend(values)
        self.steps += 1

    def seconds(self) -> float:
        return time.perf_counter() - self._start


def accumulate_gradients(
    accelerator, objective, batch_iterator, mask_generator, config, step: int
) -> tuple[list, list[tuple[str, str]], dict[str, list]]:
    """
    Forward and backward `gradient_accumulation_steps` micro-batches; returns their (detached) losses, the
    `(path, reason)` of the unusable files their batches replaced, and the objective's other scalar outputs
    (e.g. the contrastive and teacher terms).
    """
    accumulation = config.train.gradient_accumulation_steps
    losses, unusable, extras = [], [], {}
    for micro_step in range(accumulation):
        batch = next(batch_iterator)
        unusable.extend(batch.get("unusable_files", []))
        mask_generator.manual_seed(mask_seed(config.train.seed, accelerator.process_index, step, micro_step))
        # Gradients are all-reduced once per optimizer step, on its last micro-batch.
        sync = micro_step == accumulation - 1
        with contextlib.nullcontext() if sync else accelerator.no_sync(objective):
            output = objective(batch["input_values"].to(accelerator.device), generator=mask_generator)
            if not torch.isfinite(output.loss):
                raise FloatingPointError(
                    f"Non-finite {config.method} loss ({output.loss.item()}) at step {step} on process "
                    f"{accelerator.process_index}; lower the learning rate, keep gradient clipping on, or use bf16 "
                    "rather than fp16."
                )
            accelerator.backward(output.loss / accumulation)
        losses.append(output.loss.detach())
        for name, value in output.items():
            if name != "loss" and isinstance(value, torch.Tensor) and value.ndim == 0:
                extras.setdefault(name, []).append(value.detach())
    return losses, unusable, extras


def use_cpu_backend() -> bool:
    """
    Accelerate only sets up multi-process CPU training (gloo) when asked for the CPU explicitly; under torchrun on a
    machine without GPUs it would otherwise start one independent run per process.
    """
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def train(
    config: PretrainConfig, resume: str | None = None, stop_after_steps: int | None = None, command: str | None = None
) -> Path | None:
    """Run pre-training; returns the final model folder (None on non-main processes). `command` (the command line
    that started the run) is recorded in `pretrain_config.json`."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    from resp_audio_hf.progress import progress_bar

    output_dir = Path(config.train.output_dir)
    accelerator = Accelerator(
        mixed_precision=config.train.mixed_precision,
        cpu=use_cpu_backend(),
        project_config=ProjectConfiguration(project_dir=str(output_dir)),
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"Launched as {launched} processes but Accelerate set up {accelerator.num_processes}; every process would "
            "train alone. Launch with torchrun, or with `accelerate launch` on GPUs."
        )
    configure_logging(
        logging.INFO if accelerator.is_main_process else logging.WARNING,
        timestamps=True,
        rank=accelerator.process_index,
    )
    set_seed(config.train.seed)  # identical initial weights on every process

    encoder = build_encoder(config)
    objective = build_objective(config, encoder)
    feature_extractor = build_feature_extractor(config, encoder)
    # Random crops may fall on silence; the saved front end keeps refusing silent recordings.
    crop_features = copy.deepcopy(feature_extractor)
    crop_features.reject_silent_audio = False
    monitor = None
    if config.monitor.enabled:
        clips, patients = load_monitor_clips(config.monitor, feature_extractor)
        for spec in config.data.corpora:
            if spec.label in config.monitor.hold_out_from_corpora:
                spec.exclude_subjects = sorted(set(spec.exclude_subjects) | patients)
    if config.data.normalization_statistics == "training":
        # Measured after the monitor's patients are held out, so they never inform the normalisation either.
        crop_frames = getattr(encoder.config, "window_frames", None) or feature_extractor.max_length
        with accelerator.main_process_first():
            statistics = resolve_training_statistics(
                config.data, feature_extractor, crop_frames, config.train.seed, output_dir,
                write=accelerator.is_main_process,
            )
        for extractor in (feature_extractor, crop_features):
            apply_log_mel_statistics(extractor, statistics)
        if config.monitor.enabled:  # featurise the monitor's clips as the model will now see them
            clips, _ = load_monitor_clips(config.monitor, feature_extractor)
    if config.monitor.enabled:
        monitor = RepresentationMonitor(config.monitor, clips)
    with accelerator.main_process_first():  # the main process fills data.cache_dir; the others then read it
        if config.method == "contrastive":
            from .view_pairs import build_view_pair_stream

            build_stream, window_frames = build_view_pair_stream, getattr(encoder.config, "window_frames", None)
        else:
            build_stream, window_frames = build_batch_stream, encoder.config.window_frames
        batches = build_stream(
            config.data,
            crop_features,
            window_frames,
            seed=config.train.seed,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            gradient_accumulation_steps=config.train.gradient_accumulation_steps,
        )
    schedule = resolve_schedule(config, batches.batches_per_epoch, accelerator.num_processes)
    optimizer = build_optimizer(objective, config.optimizer)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    online = accelerator.unwrap_model(objective)

    start_step = 0
    selection = MonitorSelection(config.monitor.select_on, config.monitor.patience)
    checkpoint = resolve_resume(resume, output_dir)
    if checkpoint is not None:
        training_state, data_state = restore_training_checkpoint(accelerator, checkpoint)
        selection.load_state_dict(training_state.get("selection"))
        if training_state["world_size"] != accelerator.num_processes:
            raise ValueError(
                f"{checkpoint} was written by {training_state['world_size']} processes; this run has "
                f"{accelerator.num_processes}. Resume with the same process count to continue the same data order."
            )
        batches.load_state_dict(data_state)
        start_step = int(training_state["step"])
        logger.info("Resumed from %s at step %d.", checkpoint, start_step)
        if training_state["schedule"] != schedule:
            logger.warning(
                "The schedule changed since the checkpoint (%s, now %s): the run continues, but not as the "
                "interrupted one would have.",
                training_state["schedule"],
                schedule,
            )
    elif resume is not None:
        logger.info("No checkpoint in %s; starting afresh.", output_dir)

    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            output_dir / "pretrain_config.json",
            {"config": to_plain_dict(config), "schedule": schedule, "command": command},
            sort_keys=True,
        )
        atomic_write_json(output_dir / DATA_FILES_NAME, data_files_record(batches.files), sort_keys=True)
        logger.info("Schedule: %s", schedule)
    metrics = MetricsLog(output_dir / METRICS_NAME, accelerator.is_main_process, start_step if checkpoint else None)
    unusable_files = UnusableFileLog(output_dir / UNUSABLE_FILES_NAME, accelerator.is_main_process)
    unusable_files.add(batches.unusable_files)
    pending_unusable: list[tuple[str, str]] = []

    total_steps = schedule["total_steps"]

    def run_monitor(done: int) -> bool:
        """Evaluate the monitors (main process), keep the best encoder; True when patience has run out."""
        stop = False
        if accelerator.is_main_process:
            figures = monitor(online.encoder_model, accelerator.device)
            improved = selection.update(done, figures)
            metrics.write({"step": done, **{f"monitor/{name}": value for name, value in figures.items()},
                           "monitor/best_step": selection.best_step})
            logger.info("Monitor at step %d: %s", done, {k: round(v, 4) for k, v in figures.items()})
            if improved:
                save_final_model(output_dir, online.encoder_model, feature_extractor, name=BEST_MODEL_NAME)
            stop = selection.exhausted
        objective.train()
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            stop = broadcast_object_list([stop])[0]
        return stop

    if monitor is not None and start_step == 0:
        run_monitor(0)
    clips_per_step = schedule["effective_batch_size"]
    progress = progress_bar(
        total_steps, desc=config.method, unit="step", enabled=accelerator.is_main_process, initial=start_step,
        dynamic_ncols=True,
    )
    mask_generator = torch.Generator()
    batch_iterator = iter(batches)
    window = ThroughputWindow()
    objective.train()
    for step in range(start_step, total_steps):
        lr = learning_rate_at(step, total_steps, schedule["warmup_steps"], schedule["peak_lr"], config.optimizer.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if hasattr(online, "set_step"):
            online.set_step(step)
        losses, unusable, extras = accumulate_gradients(
            accelerator, objective, batch_iterator, mask_generator, config, step
        )
        pending_unusable.extend(unusable)
        grad_norm = None
        if config.optimizer.clip_grad is not None:
            grad_norm = float(accelerator.clip_grad_norm_(objective.parameters(), config.optimizer.clip_grad))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        decay = None
        if config.method == "m2d":
            decay = ema_decay_at(step, total_steps, config.objective)
            online.update_target(decay)
        done = step + 1
        window.add(losses, extras)
        progress.update(1)

        if done % config.train.log_every_steps == 0 or done == total_steps:
            loss = accelerator.reduce(torch.stack(window.losses).mean(), reduction="mean").item()
            if accelerator.num_processes > 1:
                from accelerate.utils import gather_object

                pending_unusable = gather_object(pending_unusable)
            unusable_files.add(dict(pending_unusable))
            pending_unusable = []
            record = {
                "step": done,
                "epoch": done / schedule["steps_per_epoch"] if schedule["steps_per_epoch"] else None,
                "loss": loss,
                **{
                    name: accelerator.reduce(torch.stack(values).mean(), reduction="mean").item()
                    for name, values in window.extras.items()
                },
                "lr": lr,
                "ema_decay": decay,
                "grad_norm": grad_norm,
                "unusable_files": len(unusable_files.files),
                "clips_per_second": window.steps * clips_per_step / window.seconds(),
                **_peak_memory_mb(accelerator.device),
            }
            metrics.write(record)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", clips_s=f"{record['clips_per_second']:.1f}")
            window.restart()

        stop_early = False
        # While only a head trains, the encoder (all the monitors see) has not changed: nothing to evaluate.
        encoder_trained = not hasattr(online, "encoder_trains_at") or online.encoder_trains_at(step)
        if monitor is not None and encoder_trained and (done % config.monitor.every_steps == 0 or done == total_steps):
            stop_early = run_monitor(done)
            window.restart_clock()
        if done % config.train.save_every_steps == 0 or done == total_steps or stop_early:
            state = {
                "step": done, "world_size": accelerator.num_processes, "schedule": schedule,
                "selection": selection.state_dict(),
            }
            path = save_checkpoint(accelerator, output_dir, done, state, batches.state_dict(), config.train.keep_last)
            logger.info("Saved %s.", path)
            window.restart_clock()  # checkpoint time is not training throughput
        if stop_after_steps is not None and done == stop_after_steps:
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no cleanup, no flushing, no atexit
        if stop_early:
            logger.info(
                "Stopping early at step %d: %s has not improved for %d evaluations (best at step %d).",
                done, selection.metric, selection.patience, selection.best_step,
            )
            break
    progress.close()

    final = None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = save_final_model(output_dir, online.encoder_model, feature_extractor)
        logger.info("Saved the pre-trained encoder to %s.", final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def main(argv=None) -> None:
    args = parse_args(argv)
    config = load_config(PretrainConfig, args.config, args.overrides)
    command = shlex.join(["python", *(sys.argv if argv is None else ["training/pretrain.py", *argv])])
    train(config, resume=args.resume, stop_after_steps=args.stop_after_steps, command=command)


if __name__ == "__main__":
    main()
