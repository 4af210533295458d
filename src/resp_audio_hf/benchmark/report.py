"""Write benchmark results: `results.json`, a markdown table like OPERA's and a PNG bar chart."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.file_io import atomic_save_figure, atomic_write_json, atomic_write_text
from ..data.metric_specs import METRICS
from .baselines import (
    OPERA_BASELINE_METHODS,
    OPERA_BASELINE_SOURCE,
    OPERA_PUBLISHED_RESULTS,
)
from .metrics import mean_reciprocal_rank
from .results import BenchmarkResult, MeanReciprocalRank, TaskResult

# Our model first in a strong red, baselines in the remaining tab10 colours.
_PALETTE = ("C3", "C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9")


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def _metric_label(metric: str) -> str:
    return METRICS[metric].display_name if metric in METRICS else metric


@dataclass
class ScoreRow:
    """One row of the report: a task on one test split.

    Attributes:
        task_id: the task.
        label: `task_id`, or `"<task> (<split>)"` for a task scored on several test splits.
        split: the test split.
        headline: whether it is the task's first test split (the one of its `mean`).
        metric: the task's headline metric.
        mean, std: of `metric` on `split`.
        task: the task's result.
    """

    task_id: str
    label: str
    split: str
    headline: bool
    metric: str
    mean: float
    std: float
    task: TaskResult


def score_rows(results: BenchmarkResult) -> list[ScoreRow]:
    """One row per (task, test split) in `results.tasks` order. A task scored on several test splits (SPRSound's
    official intra- and inter-patient parts) gets one row per split; its first split is the headline."""
    rows = []
    for task_id, task in results.tasks.items():
        splits = task.headline_splits()
        for position, (split, metrics) in enumerate(splits.items()):
            value = metrics[task.metric]
            rows.append(
                ScoreRow(
                    task_id=task_id,
                    label=task_id if len(splits) == 1 else f"{task_id} ({split})",
                    split=split,
                    headline=position == 0,
                    metric=task.metric,
                    mean=value.mean,
                    std=value.std,
                    task=task,
                )
            )
    return rows


def comparison_scores(results: BenchmarkResult, baselines: bool) -> dict[str, dict[str, float]]:
    """`{model: {task: mean}}` for our model and, optionally, OPERA's published methods."""
    scores = {results.model: {t: r.mean for t, r in results.tasks.items()}}
    if baselines:
        for method in OPERA_BASELINE_METHODS:
            scores[method] = {t: v["mean"] for t, v in OPERA_PUBLISHED_RESULTS[method].items() if t in results.tasks}
    return scores


def with_mean_reciprocal_rank(results: BenchmarkResult, baselines: bool) -> BenchmarkResult:
    """`results` with `mrr`: the MRR over the OPERA tasks run, against OPERA's methods when `baselines`
    (unchanged otherwise)."""
    higher = {t: r.higher_is_better for t, r in results.tasks.items()}
    opera_tasks = [t for t in higher if t in OPERA_PUBLISHED_RESULTS[OPERA_BASELINE_METHODS[0]]]
    if not (baselines and opera_tasks):
        return results
    scores = comparison_scores(results, baselines=True)
    values = mean_reciprocal_rank(scores, {t: higher[t] for t in opera_tasks}, opera_tasks)
    return replace(results, mrr=MeanReciprocalRank(tasks=opera_tasks, values=values))


def _embedding_note(results: BenchmarkResult) -> str:
    """How the clips were embedded: pooling and width (per task when the model does not state one width)."""
    pooling = results.encoder.pooling or "the model's own (pooler_output, else time-average)"
    widths = sorted({task.embedding_dim for task in results.tasks.values() if task.embedding_dim})
    width = results.encoder.embedding_dim or (", ".join(str(w) for w in widths) if widths else "not computed")
    return f"- Embeddings: pooling {pooling}, size {width}."


def _probe_features_note(results: BenchmarkResult) -> str:
    """Whether the probes saw the embeddings as they are (OPERA) or standardised with training statistics."""
    standardised = {bool(task.protocol.get("standardize_features")) for task in results.tasks.values()}
    if standardised == {True}:
        return "- Probe features: standardised (z-scored with each run's training rows' mean and std)."
    if standardised == {True, False}:
        return "- Probe features: standardised for some tasks (see each task's protocol in results.json), raw for the rest."
    return "- Probe features: raw embeddings, as OPERA's probe."


def markdown_table(results: BenchmarkResult, baselines: bool = False) -> str:
    """Tasks as rows, `mean ± std` per model as columns (OPERA's Table 4/5 layout).

    A task with several test splits has one row per split; a split mode other than `default` is named in the
    description; further metrics (e.g. the ICBHI task's sensitivity, specificity and AUROC) follow as notes.
    """
    model = results.model
    methods = list(OPERA_BASELINE_METHODS) if baselines else []
    header = ["Task", "Description", "Metric", f"{model}"] + methods
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    metric_notes = []
    for entry in score_rows(results):
        task = entry.task
        arrow = "↑" if task.higher_is_better else "↓"
        mode = task.split_mode
        description = task.name + (f" [split mode: {mode}]" if mode != "default" else "")
        row = [entry.label, description, f"{_metric_label(entry.metric).upper()} {arrow}"]
        row.append(_fmt(entry.mean, entry.std))
        for method in methods:
            published = OPERA_PUBLISHED_RESULTS[method].get(entry.task_id) if entry.headline else None
            row.append(_fmt(published["mean"], published["std"]) if published else "–")
        lines.append("| " + " | ".join(row) + " |")
        extras = {
            m: v for m, v in task.test_results.get(entry.split, {}).items() if m != entry.metric
        }
        if extras:
            metric_notes.append(
                f"- {entry.label}: "
                + ", ".join(f"{_metric_label(m)} {_fmt(v.mean, v.std)}" for m, v in extras.items())
            )
    if results.mrr:
        values = results.mrr.values
        lines.append(
            "| MRR | mean reciprocal rank over "
            + ", ".join(results.mrr.tasks)
            + " | ↑ | "
            + " | ".join(f"{values[m]:.3f}" for m in [model] + methods)
            + " |"
        )
    notes = [_embedding_note(results), _probe_features_note(results)] + metric_notes
    for task_id, task in results.tasks.items():
        for part, names in task.absent_classes.items():
            notes.append(
                f"- {task_id}: {', '.join(names)} absent from the {part} labels; each counts as AUROC 0 in the macro "
                "average, as in OPERA."
            )
        if task.skipped_recordings:
            notes.append(
                f"- {task_id}: {len(task.skipped_recordings)} recording(s) skipped, each named with its reason "
                "under skipped_recordings in results.json."
            )
    for task_id, reason in results.unavailable.items():
        notes.append(f"- {task_id} not scored: {reason}")
    for task_id, failure in results.failed.items():
        skipped = failure.skipped_recordings
        listed = (
            f" ({len(skipped)} recording(s) skipped, each named with its reason under failed.{task_id}."
            "skipped_recordings in results.json)" if skipped else ""
        )
        notes.append(f"- {task_id} not scored: {failure.error}{listed}")
    if baselines:
        notes.append(f"- Baselines: {OPERA_BASELINE_SOURCE}.")
        published = OPERA_PUBLISHED_RESULTS[OPERA_BASELINE_METHODS[0]]
        unpublished = [task_id for task_id in results.tasks if task_id not in published]
        if unpublished:
            notes.append(
                f"- OPERA published no baseline for {', '.join(unpublished)} (–): its tables cover T1-T19; the mean "
                "reciprocal rank is over the tasks they cover" + ("." if results.mrr else ", none of them here.")
            )
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def bar_chart(results: BenchmarkResult, path: str | os.PathLike, baselines: bool = False) -> Path:
    """Grouped bars with std error bars, one panel per metric (AUROC, ICBHI score, MAE); one bar group per
    [`score_rows`] row."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    rows = score_rows(results)
    metrics = list(dict.fromkeys(r.metric for r in rows))
    panels = [(metric, [r for r in rows if r.metric == metric]) for metric in metrics]
    if not panels:
        raise ValueError("No task results to plot.")
    methods = [results.model] + (list(OPERA_BASELINE_METHODS) if baselines else [])
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(6.0, 1.2 * max(len(ids) for _, ids in panels) * len(methods) / 3), 3.6 * len(panels)),
        squeeze=False,
    )
    width = min(0.8 / len(methods), 0.4)
    for axis, (metric, entries) in zip(axes[:, 0], panels):
        x = np.arange(len(entries))
        higher = entries[0].task.higher_is_better
        for k, method in enumerate(methods):
            if k == 0:
                means = [e.mean for e in entries]
                stds = [e.std for e in entries]
            else:
                published = [
                    OPERA_PUBLISHED_RESULTS[method].get(e.task_id) if e.headline else None for e in entries
                ]
                means = [p["mean"] if p else np.nan for p in published]
                stds = [p["std"] if p else 0.0 for p in published]
            axis.bar(
                x + (k - (len(methods) - 1) / 2) * width,
                means,
                width,
                yerr=stds,
                capsize=2,
                label=method,
                color=_PALETTE[k % len(_PALETTE)],
                alpha=1.0 if k == 0 else 0.75,
            )
        axis.set_xticks(x, [e.label for e in entries])
        axis.set_ylabel(_metric_label(metric) + (" (higher is better)" if higher else " (lower is better)"))
        if higher:
            # Headroom above 1.0 keeps the legend clear of the bars.
            axis.set_ylim(0.0, 1.2 if len(methods) > 1 else 1.0)
            axis.set_yticks(np.linspace(0.0, 1.0, 6))
        if metric == "auroc":
            axis.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        axis.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=min(4, len(methods)), loc="upper right")
    axes[0, 0].set_title(f"Linear-probe results: {results.model}")
    fig.tight_layout()
    return atomic_save_figure(fig, path, dpi=120)


def write_reports(results: BenchmarkResult, output_dir: str | os.PathLike, baselines: bool = False) -> dict[str, Path]:
    """Write `results.json`, `results.md` and (when any task was scored) `results.png`; an earlier run's
    `results.png` is removed when this run has no chart, so the folder never mixes two runs. With `baselines`
    the mean reciprocal rank against OPERA's methods is added to the results written."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = with_mean_reciprocal_rank(results, baselines)
    paths = {"json": atomic_write_json(output_dir / "results.json", results.to_dict())}
    paths["markdown"] = atomic_write_text(output_dir / "results.md", markdown_table(results, baselines))
    if results.tasks:
        paths["png"] = bar_chart(results, output_dir / "results.png", baselines)
    else:
        (output_dir / "results.png").unlink(missing_ok=True)
    return paths
