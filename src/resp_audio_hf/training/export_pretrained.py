"""Turn a finished `pretrain.py` run into a self-contained, committable `pretrained/<name>/` folder.

    python training/export_pretrained.py --run /work/runs/small-m2d-resp --name small-m2d-resp \\
        --config training/configs/small_m2d_resp.yaml

The folder holds:
- the online encoder and its feature extractor at the top level (`AutoModel.from_pretrained("pretrained/<name>")`,
  `AutoFeatureExtractor.from_pretrained(...)`, `pipeline(...)` load it directly with the package imported); git
  ignores the remote-code copies `save_pretrained` writes there, the package being their single source;
- `metrics.jsonl` (the run's log), `loss_curve.png` (loss and learning rate per logged step);
- `command.txt` (the exact command of the run), `pretrain_config.json` (the resolved configuration and schedule),
  the YAML the run was started from (`--config`);
- `file_list.json`: the number of files per corpus and the SHA-256 of the sorted list of every file the run listed
  (paths one per line, each ending in a newline), plus `unusable_files.json` (the files it skipped and why);
- `README.md`: a model card stating the data, their licences and the licence of the weights;
- with `--evaluation LABEL=results.json` (repeatable): `resp-audio-hf bench` results, copied as
  `evaluation_<LABEL>.json` and tabulated in the card (e.g. the trained encoder beside its random start).

Never audio: only the weights, logs and file-list hashes. The folder is written under a temporary name and renamed when
complete; it must stay under `--max-megabytes` (25 MB by default) or nothing is written.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from ..benchmark.results import BenchmarkResult, load_results
from .checkpointing import BEST_MODEL_NAME, FINAL_MODEL_NAME, save_final_folder

# Files of the run copied as they are.
RUN_FILES = ("metrics.jsonl", "pretrain_config.json", "unusable_files.json")
DEFAULT_MAX_MEGABYTES = 25.0

# Corpora this project pre-trains on, recognised by a folder name in their paths (lower case): (source, licence).
KNOWN_SOURCES = {
    "sprsound": (
        "SPRSound 2022 (SJTU Paediatric Respiratory Sound database)",
        "GPL-3.0 (https://github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound)",
    ),
    "covid19-cough": (
        "COVID-19 cough recordings (crowd-sourced, released into the public domain)",
        "CC0-1.0",
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="train.output_dir of a finished pretrain.py run.")
    parser.add_argument("--name", required=True, help="Name of the exported model (folder name).")
    parser.add_argument(
        "--output-root", default="pretrained", help="Folder that receives <name>/ (default: %(default)s)."
    )
    parser.add_argument("--config", help="The YAML the run was started from, copied next to the weights.")
    parser.add_argument(
        "--command",
        help="The exact command of the run (default: the command pretrain.py recorded in pretrain_config.json).",
    )
    parser.add_argument(
        "--license",
        default="gpl-3.0",
        help="Licence of the weights (default: %(default)s, as SPRSound's GPL-3.0 audio is in the training data).",
    )
    parser.add_argument(
        "--evaluation",
        action="append",
        default=[],
        metavar="LABEL=RESULTS_JSON",
        help="results.json of `resp-audio-hf bench` for this model or a baseline, shown in the card (repeatable).",
    )
    parser.add_argument(
        "--checkpoint",
        choices=(FINAL_MODEL_NAME, BEST_MODEL_NAME),
        default=FINAL_MODEL_NAME,
        help="Export the encoder of the last step (`model`) or the one the validation monitor chose (`best_model`).",
    )
    parser.add_argument("--max-megabytes", type=float, default=DEFAULT_MAX_MEGABYTES)
    return parser.parse_args(argv)


def parse_evaluations(items: list[str]) -> dict[str, Path]:
    evaluations = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path or not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
            raise ValueError(
                f"--evaluation {item!r}: expected LABEL=path/to/results.json with LABEL in [A-Za-z0-9_.-]."
            )
        evaluations[label] = Path(path)
    return evaluations


def evaluation_section(evaluations: dict[str, BenchmarkResult]) -> str:
    """The bench results as a table: one row per (label, task), with the bench command that produced them."""
    if not evaluations:
        return ""
    rows, commands = [], []
    for label, result in evaluations.items():
        tasks = sorted(result.tasks)
        # `bench --preset P` records its model as `preset:P:seed0`.
        preset = re.fullmatch(r"preset:(.+):seed0", result.model)
        source = f"--preset {preset.group(1)}" if preset else f"--model {result.model}"
        commands.append(f"resp-audio-hf bench {source} --tasks {','.join(tasks)} --data-root DATA")
        for task_id in tasks:
            task = result.tasks[task_id]
            scores = ", ".join(f"{score:.3f}" for score in task.scores)
            rows.append(f"| {label} | {task_id} | {task.metric} | {task.mean:.3f} ± {task.std:.3f} | {scores} |")
    table = "\n".join(rows)
    command_lines = "\n".join(commands)
    return f"""
## Evaluation

Frozen embeddings scored by `resp-audio-hf bench` (linear probe, the protocol and seeds recorded in each
`evaluation_<label>.json`):

| model | task | metric | mean ± std over seeds | per seed |
| --- | --- | --- | --- | --- |
{table}

A difference smaller than the spread over probe seeds is not evidence of a better encoder. `DATA` is the folder
holding the corpora (`sprsound/` for S1).

```bash
{command_lines}
```
"""


def file_list_summary(data_files: dict) -> dict:
    """`data_files.json` of the run without the paths themselves: counts and SHA-256 per corpus and overall."""
    return {
        "definition": "SHA-256 of the sorted file paths the run listed (unusable ones included), one per line, each "
        "followed by a newline",
        "sha256": data_files["sha256"],
        "num_files": data_files["num_files"],
        "corpora": {
            name: {"num_files": corpus["num_files"], "sha256": corpus["sha256"]}
            for name, corpus in data_files["corpora"].items()
        },
    }


LOSS_LABELS = {"m2d": "M2D loss (2 - 2 cos), log scale", "contrastive": "contrastive + teacher loss, log scale"}


def split_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """`metrics.jsonl` lines -> (training steps, monitor evaluations)."""
    training = [r for r in records if "loss" in r]
    monitor = [r for r in records if any(key.startswith("monitor/") for key in r)]
    return training, monitor


def plot_loss_curve(records: list[dict], path: Path, title: str, method: str = "m2d") -> None:
    """Loss and learning rate per logged step and, when the run was monitored, the validation monitors beside them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    training, monitor = split_records(records)
    steps = [r["step"] for r in training]
    panels = 2 if monitor else 1
    figure, axes = plt.subplots(1, panels, figsize=(7 * panels, 4), dpi=100, squeeze=False)
    loss_axis = axes[0][0]
    loss_axis.plot(steps, [r["loss"] for r in training], color="tab:blue", label="loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel(LOSS_LABELS.get(method, "loss"), color="tab:blue")
    loss_axis.set_yscale("log")  # the loss falls by orders of magnitude
    rate_axis = loss_axis.twinx()
    rate_axis.plot(steps, [r["lr"] for r in training], color="tab:orange", linewidth=1, label="learning rate")
    rate_axis.set_ylabel("learning rate", color="tab:orange")
    loss_axis.set_title(title)
    loss_axis.grid(alpha=0.3)
    if monitor:
        probe_axis = axes[0][1]
        monitor_steps = [r["step"] for r in monitor]
        for key in sorted(k for k in monitor[0] if k.endswith("_auroc")):
            probe_axis.plot(monitor_steps, [r[key] for r in monitor], marker="o", label=key.removeprefix("monitor/"))
        probe_axis.set_xlabel("optimizer step")
        probe_axis.set_ylabel("validation probe AUROC")
        probe_axis.legend(loc="lower left")
        rank_axis = probe_axis.twinx()
        rank_axis.plot(monitor_steps, [r["monitor/effective_rank"] for r in monitor], color="grey", linestyle="--")
        rank_axis.set_ylabel("effective rank (dashed)", color="grey")
        probe_axis.set_title("validation monitors (patients held out of SPRSound's train part)")
        probe_axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def data_sources(data_files: dict) -> list[tuple[str, int, str, str, str]]:
    """`(corpus name, files, folder, source, licence)` of each corpus, recognised by where its files live."""
    import os

    sources = []
    for name, corpus in data_files["corpora"].items():
        description, licence = f"corpus `{name}`", "unknown: check before publishing"
        for marker, known in KNOWN_SOURCES.items():
            if any(f"/{marker}/" in path.lower() for path in corpus["files"]):
                description, licence = known
        folder = os.path.commonpath([os.path.dirname(path) for path in corpus["files"]])
        sources.append((name, corpus["num_files"], folder, description, licence))
    return sources


def sprsound_test_files(data_files: dict) -> list[str]:
    """Listed files of SPRSound's test part (a `test*` folder under a `sprsound` one), which S1 evaluates on."""
    found = []
    for corpus in data_files["corpora"].values():
        for path in corpus["files"]:
            parts = [part.lower() for part in Path(path).parts]
            if "sprsound" in parts and any(part.startswith("test") for part in parts[parts.index("sprsound") + 1 :]):
                found.append(path)
    return found


def architecture_line(model) -> str:
    """What the encoder is, in one sentence, as its configuration describes its family."""
    return model.config.describe_architecture(sum(p.numel() for p in model.parameters()))


def objective_line(config: dict, schedule: dict) -> str:
    """The self-supervised objective and its settings, in one line."""
    if config.get("method", "m2d") == "contrastive":
        settings = config["contrastive"]
        crops = ", ".join(
            f"{corpus.get('name') or corpus.get('corpus')} {corpus['crop_seconds']:g} s"
            for corpus in config["data"]["corpora"] if corpus.get("crop_seconds")
        )
        return (
            f"objective: OPERA-CT contrastive (two crops of a recording, other recordings of the batch as negatives, "
            f"one corpus per batch; crops {crops}), projection {settings['projection_size']}, frame masking and gain "
            f"augmentation; frozen teacher weight lambda = {settings['teacher_weight']:g} (1 - cos to the starting "
            f"encoder's embedding); BatchNorm statistics "
            f"{'frozen' if settings['freeze_batch_norm_statistics'] else 'updated'}"
        )
    objective = config["objective"]
    return (
        f"objective: M2D, mask ratio {objective['mask_ratio']}, predictor {objective['predictor_hidden_size']} wide x "
        f"{objective['predictor_num_layers']} layers, EMA decay {schedule['ema_decay_start']:.5f} -> "
        f"{schedule['ema_decay_end']:.5f} ({objective['ema_schedule']})"
    )


def monitor_section(records: list[dict], checkpoint: str) -> str:
    """The validation monitors at the start, the chosen step and the end, and which encoder the folder holds."""
    _, monitor = split_records(records)
    if not monitor:
        return ""
    figures = [k for k in ("S1_auroc", "S2_auroc", "mean_auroc", "effective_rank", "between_clip_variance_share")
               if f"monitor/{k}" in monitor[0]]
    best_step = monitor[-1].get("monitor/best_step")
    shown = {r["step"]: r for r in monitor if r["step"] in (monitor[0]["step"], best_step, monitor[-1]["step"])}
    rows = "\n".join(
        f"| {step}{' (chosen)' if step == best_step else ''} | "
        + " | ".join(f"{record['monitor/' + k]:.3f}" for k in figures) + " |"
        for step, record in sorted(shown.items())
    )
    which = "the encoder of the step the monitor chose" if checkpoint == BEST_MODEL_NAME else "the last step's encoder"
    return f"""
## Validation monitors

Linear probes (patient-grouped 5-fold) on clips of the patients held out of SPRSound's train part (never its test
parts), and collapse measures, every `monitor.every_steps` steps (`metrics.jsonl`). This folder holds {which}.

| step | {' | '.join(figures)} |
| --- | {' | '.join('---:' for _ in figures)} |
{rows}
"""


def model_card(
    name: str,
    model,
    run_config: dict,
    records: list[dict],
    sources,
    test_files: list[str],
    unusable: dict,
    command: str,
    license_id: str,
    evaluations: dict[str, BenchmarkResult] | None = None,
    checkpoint: str = FINAL_MODEL_NAME,
) -> str:
    config, schedule = run_config["config"], run_config["schedule"]
    training, monitor = split_records(records)
    first, last = training[0], training[-1]
    method = config.get("method", "m2d")
    optimisation_line = (
        f"{last['step']:,} of {schedule['total_steps']:,} planned steps of {schedule['effective_batch_size']} "
        f"{'recordings (two crops each)' if method == 'contrastive' else 'clips'}, AdamW, peak learning rate "
        f"{schedule['peak_lr']:g} after {schedule['warmup_steps']} warm-up steps, cosine to "
        f"{config['optimizer']['min_lr']:g}"
    )
    loss_line = (
        f"loss {first['loss']:.4f} at step {first['step']}, {last['loss']:.4f} at step {last['step']} "
        f"(`metrics.jsonl`, `loss_curve.png`); {last['clips_per_second']:.1f} clips/s at the end (on a shared CPU: "
        "not a speed figure)"
    )
    data_rows = "\n".join(
        f"| `{corpus}` | {files:,} | `{folder}` | {description} | {licence} |"
        for corpus, files, folder, description, licence in sources
    )
    if test_files:
        test_note = (
            f"**{len(test_files)} SPRSound test recordings were in the training data: do not evaluate this model on "
            "SPRSound's test part (task S1).**"
        )
    else:
        test_note = "No SPRSound test recording (the evaluation of task S1) was in the training data."
    return f"""---
license: {license_id}
library_name: transformers
pipeline_tag: feature-extraction
tags:
  - audio
  - respiratory-sounds
  - {config["model"].get("init_from") and "further-pretraining" or "from-scratch"}
  - {method}
  - self-supervised
---

# {name}

{architecture_line(model)} pre-trained {start_phrase(config)} with {METHOD_NAMES[method]} on respiratory audio by
`training/pretrain.py` of resp_audio_hf. It is the trained encoder; load it with the package installed:

```python
import resp_audio_hf  # registers the Auto classes
from transformers import AutoFeatureExtractor, AutoModel

model = AutoModel.from_pretrained("pretrained/{name}")
feature_extractor = AutoFeatureExtractor.from_pretrained("pretrained/{name}")
```

## Training data

| corpus | files listed | folder (on the training machine) | source | licence |
| --- | ---: | --- | --- | --- |
{data_rows}

{test_note} {len(unusable)} listed file(s) could not be
decoded and were skipped (`unusable_files.json`). `file_list.json` holds the SHA-256 of the sorted list of the files
the run listed.

## Licence

The weights are released under **{license_id.upper()}**: they are trained on SPRSound audio (GPL-3.0) together with
CC0 coughs, and keep the GPL's terms for anything derived from them. No audio is included.

## Training

- {objective_line(config, schedule)}
- {optimisation_line}
- {loss_line}
{monitor_section(records, checkpoint)}
Command (`command.txt`; configuration in `pretrain_config.json`):

```bash
{command}
```
{evaluation_section(evaluations or {})}"""


METHOD_NAMES = {"m2d": "Masked Modeling Duo", "contrastive": "OPERA-CT's contrastive objective"}


def start_phrase(config: dict) -> str:
    """Where the run started: a saved encoder (further pre-training) or random weights."""
    init_from = config["model"].get("init_from")
    return f"**further from `{init_from}`**" if init_from else "**from a random start**"


def export(
    run: Path,
    name: str,
    output_root: Path,
    config_path: Path | None = None,
    command: str | None = None,
    license_id: str = "gpl-3.0",
    max_megabytes: float = DEFAULT_MAX_MEGABYTES,
    evaluations: dict[str, Path] | None = None,
    checkpoint: str = FINAL_MODEL_NAME,
) -> Path:
    """Write `output_root/name` from the finished run in `run`; returns the folder. `evaluations`: label ->
    results.json of `resp-audio-hf bench`; `checkpoint`: `model` (last step) or `best_model` (the monitor's choice)."""
    from transformers import AutoFeatureExtractor, AutoModel

    if not (run / FINAL_MODEL_NAME / "config.json").is_file():
        raise FileNotFoundError(f"{run} has no final model ({run / FINAL_MODEL_NAME}): the run has not finished.")
    model_folder = run / checkpoint
    if not (model_folder / "config.json").is_file():
        raise FileNotFoundError(f"{run} has no {checkpoint} folder: was the run monitored (monitor.every_steps)?")
    run_config = json.loads((run / "pretrain_config.json").read_text(encoding="utf-8"))
    command = command or run_config.get("command")
    if not command:
        raise ValueError(f"{run}/pretrain_config.json records no command; pass the run's exact command with --command.")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    training, _ = split_records(records)
    if not training:
        raise ValueError(f"{run}/metrics.jsonl logs no training step.")
    data_files = json.loads((run / "data_files.json").read_text(encoding="utf-8"))
    unusable_path = run / "unusable_files.json"
    unusable = json.loads(unusable_path.read_text(encoding="utf-8")) if unusable_path.exists() else {}
    model = AutoModel.from_pretrained(model_folder)
    evaluations = evaluations or {}
    evaluation_results = {label: load_results(path) for label, path in evaluations.items()}

    def write(folder: Path) -> None:
        # Saved again rather than copied, so the folder's remote code is this checkout's (the weights are unchanged).
        model.save_pretrained(folder)
        # Silent input is refused by the published folder, whatever the training run set (it reads silent crops).
        AutoFeatureExtractor.from_pretrained(model_folder, reject_silent_audio=True).save_pretrained(folder)
        for file_name in RUN_FILES:
            if (run / file_name).exists():
                shutil.copy2(run / file_name, folder / file_name)
        if not unusable_path.exists():
            (folder / "unusable_files.json").write_text("{}\n", encoding="utf-8")
        if config_path is not None:
            shutil.copy2(config_path, folder / config_path.name)
        (folder / "command.txt").write_text(command.strip() + "\n", encoding="utf-8")
        (folder / "file_list.json").write_text(
            json.dumps(file_list_summary(data_files), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        method = run_config["config"].get("method", "m2d")
        plot_loss_curve(records, folder / "loss_curve.png", f"{name}: {method} pre-training", method)
        sources, test_files = data_sources(data_files), sprsound_test_files(data_files)
        for label, path in evaluations.items():
            shutil.copy2(path, folder / f"evaluation_{label}.json")
        card = model_card(
            name, model, run_config, records, sources, test_files, unusable, command, license_id, evaluation_results,
            checkpoint,
        )
        (folder / "README.md").write_text(card, encoding="utf-8")
        size = sum(path.stat().st_size for path in folder.iterdir())
        if size > max_megabytes * 2**20:
            raise ValueError(f"The export of {run} takes {size / 2**20:.1f} MB, over the {max_megabytes} MB limit.")

    output_root.mkdir(parents=True, exist_ok=True)
    return save_final_folder(output_root, name, write)


def main(argv=None) -> None:
    args = parse_args(argv)
    folder = export(
        Path(args.run),
        args.name,
        Path(args.output_root),
        Path(args.config) if args.config else None,
        args.command,
        args.license,
        args.max_megabytes,
        parse_evaluations(args.evaluation),
        args.checkpoint,
    )
    print(f"Exported {args.run} to {folder}.")


if __name__ == "__main__":
    main()
