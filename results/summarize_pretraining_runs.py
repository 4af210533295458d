"""Tabulate the validation monitors of the committed pre-training runs (`results/pretraining_runs/*/`).

    python results/summarize_pretraining_runs.py            # writes results/pretraining_runs/summary.md

Each run folder is a `training/export_pretrained.py` export: the encoder of its last step, `metrics.jsonl` (training
steps and `monitor/...` evaluations on the patients held out of SPRSound's train part), `pretrain_config.json` and
`command.txt`. The table gives, per run, what it started from, its objective's settings, the steps it ran (and
whether the monitors stopped it), the contrastive task's accuracy, and the monitor figures at the start, at the best
evaluation after it and at the last step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("S1_auroc", "S2_auroc", "mean_auroc", "effective_rank", "between_clip_variance_share")


def run_row(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    config = json.loads((folder / "pretrain_config.json").read_text(encoding="utf-8"))
    settings, schedule = config["config"], config["schedule"]
    training = [r for r in records if "loss" in r]
    monitor = [r for r in records if "monitor/mean_auroc" in r]
    after_start = monitor[1:] or monitor
    best = max(after_start, key=lambda r: r["monitor/mean_auroc"])
    contrastive = settings["contrastive"]
    positives = sorted({corpus.get("positives", "same_recording") for corpus in settings["data"]["corpora"]})
    return {
        "run": folder.name,
        "start": "AudioSet mn04" if settings["model"].get("init_from") else "random mn04",
        "teacher_weight": contrastive["teacher_weight"],
        "head_warmup_steps": contrastive.get("head_warmup_steps", 0),
        "positives": "+".join(positives),
        "steps": training[-1]["step"],
        "planned_steps": schedule["total_steps"],
        "accuracy": (training[0]["accuracy"], training[-1]["accuracy"]),
        "start_monitor": {k: monitor[0][f"monitor/{k}"] for k in FIGURES},
        "best_monitor": {"step": best["step"], **{k: best[f"monitor/{k}"] for k in FIGURES}},
        "end_monitor": {"step": monitor[-1]["step"], **{k: monitor[-1][f"monitor/{k}"] for k in FIGURES}},
        "selected_step": monitor[-1].get("monitor/best_step"),
    }


def markdown(rows: list[dict]) -> str:
    def cells(figures: dict) -> str:
        return (
            f"{figures['S1_auroc']:.3f} / {figures['S2_auroc']:.3f} / **{figures['mean_auroc']:.3f}** / "
            f"{figures['effective_rank']:.0f} / {figures['between_clip_variance_share']:.2f}"
        )

    lines = [
        "Validation monitors (S1 / S2 probe AUROC / their mean / effective rank / between-clip variance share) of "
        "each pre-training run, on the patients held out of SPRSound's train part. `selected` is the step whose "
        "encoder the monitors chose (`best_model`): 0 means no step beat the start.",
        "",
        "| run | start | lambda | head warm-up | positives | steps (planned) | in-batch accuracy | at the start | "
        "best after it (step) | last step | selected |",
        "|---|---|---:|---:|---|---|---|---|---|---|---:|",
    ]
    for row in rows:
        best, end = row["best_monitor"], row["end_monitor"]
        lines.append(
            f"| `{row['run']}` | {row['start']} | {row['teacher_weight']:g} | {row['head_warmup_steps']} | "
            f"{row['positives']} | {row['steps']} ({row['planned_steps']}) | "
            f"{row['accuracy'][0]:.2f} → {row['accuracy'][1]:.2f} | {cells(row['start_monitor'])} | "
            f"{cells(best)} ({best['step']}) | {cells(end)} | {row['selected_step']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPO / "results" / "pretraining_runs")
    args = parser.parse_args(argv)
    rows = [run_row(folder) for folder in sorted(args.runs.iterdir()) if (folder / "metrics.jsonl").is_file()]
    text = markdown(rows)
    (args.runs / "summary.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
