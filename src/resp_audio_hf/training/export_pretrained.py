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
from .checkpointing import FINAL_MODEL_NAME, save_final_folder

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


def plot_loss_curve(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=100)
    loss_axis.plot(steps, [r["loss"] for r in records], color="tab:blue", label="M2D loss")
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("M2D loss (2 - 2 cos), log scale", color="tab:blue")
    loss_axis.set_yscale("log")  # the loss falls by two orders of magnitude
    rate_axis = loss_axis.twinx()
    rate_axis.plot(steps, [r["lr"] for r in records], color="tab:orange", linewidth=1, label="learning rate")
    rate_axis.set_ylabel("learning rate", color="tab:orange")
    loss_axis.set_title(title)
    loss_axis.grid(alpha=0.3)
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
) -> str:
    config, schedule = run_config["config"], run_config["schedule"]
    parameters = sum(p.numel() for p in model.parameters())
    model_config = model.config
    first, last = records[0], records[-1]
    objective = config["objective"]
    architecture = (
        f"A {parameters / 1e6:.1f} M-parameter M2D-layout spectrogram ViT ({model_config.hidden_size} wide, "
        f"{model_config.num_hidden_layers} layers, {model_config.num_attention_heads} heads; "
        f"{model_config.num_mel_bins}-band log-mel at {model_config.sampling_rate} Hz, "
        f"{model_config.patch_size}x{model_config.patch_size} patches, {model_config.window_frames}-frame windows)"
    )
    objective_line = (
        f"objective: M2D, mask ratio {objective['mask_ratio']}, predictor {objective['predictor_hidden_size']} wide x "
        f"{objective['predictor_num_layers']} layers, EMA decay {schedule['ema_decay_start']:.5f} -> "
        f"{schedule['ema_decay_end']:.5f} ({objective['ema_schedule']})"
    )
    optimisation_line = (
        f"{schedule['total_steps']:,} steps of {schedule['effective_batch_size']} clips, AdamW, peak learning rate "
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
  - m2d
  - self-supervised
---

# {name}

{architecture} pre-trained **from scratch** with Masked Modeling Duo on respiratory audio by `training/pretrain.py` of
resp_audio_hf. It is the online encoder; load it with the package installed:

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

- {objective_line}
- {optimisation_line}
- {loss_line}

Command (`command.txt`; configuration in `pretrain_config.json`):

```bash
{command}
```
{evaluation_section(evaluations or {})}"""


def export(
    run: Path,
    name: str,
    output_root: Path,
    config_path: Path | None = None,
    command: str | None = None,
    license_id: str = "gpl-3.0",
    max_megabytes: float = DEFAULT_MAX_MEGABYTES,
    evaluations: dict[str, Path] | None = None,
) -> Path:
    """Write `output_root/name` from the finished run in `run`; returns the folder. `evaluations`: label ->
    results.json of `resp-audio-hf bench`."""
    from resp_audio_hf import RespAudioFeatureExtractor, RespAudioModel

    model_folder = run / FINAL_MODEL_NAME
    if not (model_folder / "config.json").is_file():
        raise FileNotFoundError(f"{run} has no final model ({model_folder}): the run has not finished.")
    run_config = json.loads((run / "pretrain_config.json").read_text(encoding="utf-8"))
    command = command or run_config.get("command")
    if not command:
        raise ValueError(f"{run}/pretrain_config.json records no command; pass the run's exact command with --command.")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    if not records or records[-1]["step"] != run_config["schedule"]["total_steps"]:
        raise ValueError(f"{run}/metrics.jsonl does not reach the last step {run_config['schedule']['total_steps']}.")
    data_files = json.loads((run / "data_files.json").read_text(encoding="utf-8"))
    unusable_path = run / "unusable_files.json"
    unusable = json.loads(unusable_path.read_text(encoding="utf-8")) if unusable_path.exists() else {}
    model = RespAudioModel.from_pretrained(model_folder)
    evaluations = evaluations or {}
    evaluation_results = {label: load_results(path) for label, path in evaluations.items()}

    def write(folder: Path) -> None:
        # Saved again rather than copied, so the folder's remote code is this checkout's (the weights are unchanged).
        model.save_pretrained(folder)
        # Silent input is refused by the published folder, whatever the training run set (it reads silent crops).
        RespAudioFeatureExtractor.from_pretrained(model_folder, reject_silent_audio=True).save_pretrained(folder)
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
        plot_loss_curve(records, folder / "loss_curve.png", f"{name}: M2D pre-training")
        sources, test_files = data_sources(data_files), sprsound_test_files(data_files)
        for label, path in evaluations.items():
            shutil.copy2(path, folder / f"evaluation_{label}.json")
        card = model_card(
            name, model, run_config, records, sources, test_files, unusable, command, license_id, evaluation_results
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
    )
    print(f"Exported {args.run} to {folder}.")


if __name__ == "__main__":
    main()
