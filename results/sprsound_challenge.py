"""The SPRSound 2022 challenge table: fine-tuned mn04, a linear probe on frozen mn04 features, the organisers' MFCC
baseline and published challenge results, on the four tasks, scored with the challenge's Score, SE and SP on
test_inter and test_intra (and their mean), mean ± std over seeds.

    python results/sprsound_challenge.py --data-root /work/data/ext --output-dir runs/sprsound_challenge \\
        --results-dir results

writes `results/sprsound_challenge.json` and `results/sprsound_challenge.md` (see `results/README.md` for the
run time). Everything is chosen on the validation patients only:

* fine-tuning (`training/finetune.py` through `Trainer`, from `--encoder`, the YAML `--config`): every
  combination of `--imbalance` (weighted loss, balanced sampler) and `--augmentation` (off, on: the YAML's
  `augmentation` section) is trained with the first seed; the one with the best validation Score (its best epoch)
  is trained with the other seeds; each run keeps its best epoch by validation Score and is tested on both test parts;
* the linear probe: frozen `--encoder` embeddings (the benchmark's extraction and cache,
  `benchmark.runner.embed_task`), z-scored with the training rows' statistics, and a scikit-learn
  `LogisticRegression` whose `C` and class weighting are chosen on the validation Score; its predicted classes are
  scored with the official score. The fit is deterministic, so it is run once (no seed spread);
* the organisers' baseline: `resp_audio_hf.benchmark.sprsound_baseline` (40 MFCC means and their polynomial SVM,
  `C` chosen on validation), deterministic, run once.

Every fine-tuning run lives in `<output-dir>/finetune/<task>/<variant>/seed<k>` and is skipped once it has its
`finetune_results.json` (an interrupted run resumes from its newest complete checkpoint), so the command can be
started again after a stop and only the missing work is done. `--tasks`, `--models`, `--seeds`, `--epochs`,
`--imbalance`/`--augmentation` (fewer variants) and `--limit` (rows per split: smoke runs only; the output then
says so) bound the CPU time.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

logger = logging.getLogger("sprsound_challenge")

TASKS = ("SPRSound-1-1", "SPRSound-1-2", "SPRSound-2-1", "SPRSound-2-2")
MODELS = ("finetune", "probe", "baseline")
TEST_SPLITS = ("test_inter", "test_intra")
PROBE_C_GRID = (0.001, 0.01, 0.1, 1.0)
PROBE_CLASS_WEIGHTS = (None, "balanced")

#: Published challenge results, outside anchors (Score on each task). The papers' test splits are not verified here.
PUBLISHED = (
    {
        "source": "arXiv 2507.20408",
        "scores": {"SPRSound-1-1": 0.904, "SPRSound-1-2": 0.845, "SPRSound-2-1": 0.720, "SPRSound-2-2": 0.571},
        "split": "split not stated",
    },
    {
        "source": "arXiv 2303.04104",
        "scores": {"SPRSound-2-1": 0.745, "SPRSound-2-2": 0.539},
        "split": "split not stated",
    },
)


# ---------------------------------------------------------------------------------------------- aggregation


def split_scores(scores: dict) -> dict:
    """`{split: {"score", "sensitivity", "specificity"}}` plus `"mean"`: each value the mean of the two test
    parts (one run)."""
    out = {split: {k: float(scores[split][k]) for k in ("score", "sensitivity", "specificity")} for split in TEST_SPLITS}
    out["mean"] = {k: (out["test_inter"][k] + out["test_intra"][k]) / 2 for k in ("score", "sensitivity", "specificity")}
    return out


def aggregate(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof 1; 0 for one run) over runs of [`split_scores`]' values:
    `{split: {metric: {"mean", "std", "n"}}}`."""
    if not runs:
        raise ValueError("no runs to aggregate")
    out: dict = {}
    for split in (*TEST_SPLITS, "mean"):
        out[split] = {}
        for metric in ("score", "sensitivity", "specificity"):
            values = np.array([run[split][metric] for run in runs], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[split][metric] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    return out


def _cell(entry: dict) -> str:
    return f"{entry['mean']:.3f} ± {entry['std']:.3f}" if entry["n"] > 1 else f"{entry['mean']:.3f}"


def markdown_table(results: dict) -> str:
    """The Markdown table: one row per task and model, Score / SE / SP per test part and their mean."""
    lines = [
        "| task | model | runs | test_inter Score / SE / SP | test_intra Score / SE / SP | mean Score / SE / SP |",
        "|---|---|---|---|---|---|",
    ]
    for task, models in results["tasks"].items():
        for entry in models.values():
            agg = entry["aggregate"]
            cells = [" / ".join(_cell(agg[split][m]) for m in ("score", "sensitivity", "specificity"))
                     for split in (*TEST_SPLITS, "mean")]
            lines.append(f"| {task[-3:]} | {entry['label']} | {agg['mean']['score']['n']} | " + " | ".join(cells) + " |")
        for anchor in PUBLISHED:
            if task in anchor["scores"]:
                lines.append(
                    f"| {task[-3:]} | published: {anchor['source']} ({anchor['split']}) | — | — | — | "
                    f"Score {anchor['scores'][task]:.3f} |"
                )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- fine-tuning


def _variants(args) -> list[tuple[str, bool]]:
    return [(imbalance, augment == "on") for imbalance in args.imbalance for augment in args.augmentation]


def _variant_name(imbalance: str, augmented: bool) -> str:
    return f"{imbalance}{'+augmentation' if augmented else ''}"


def finetune_overrides(args, task: str, imbalance: str, augmented: bool, seed: int) -> list[str]:
    """The `training/finetune.py` overrides of one run."""
    overrides = [
        f"model.name_or_path={args.encoder}",
        f"task.id={task}",
        f"task.data_root={args.data_root}",
        f"imbalance={imbalance}",
        f"training_args.output_dir={_run_folder(args, task, imbalance, augmented, seed)}",
        f"training_args.seed={seed}",
        f"training_args.num_train_epochs={args.epochs}",
    ]
    if not augmented:
        overrides += ["augmentation.time_shift_seconds=0", "augmentation.gain_db=0", "augmentation.mix_probability=0",
                      "augmentation.crop_seconds=null"]
    if args.limit is not None:
        overrides.append(f"task.limit={args.limit}")
    return overrides


def finetune_command(args, task: str, imbalance: str, augmented: bool, seed: int) -> str:
    """The exact command line of one run, as its `command.txt` and `finetune_results.json` hold it."""
    overrides = finetune_overrides(args, task, imbalance, augmented, seed)
    return shlex.join(["python", "training/finetune.py", "--config", args.config, *overrides, "--resume", "auto"])


def _run_folder(args, task: str, imbalance: str, augmented: bool, seed: int) -> Path:
    return Path(args.output_dir) / "finetune" / task / _variant_name(imbalance, augmented) / f"seed{seed}"


def finetune_run(args, task: str, imbalance: str, augmented: bool, seed: int) -> dict:
    """One fine-tuning run (skipped when finished by the same command; resumed when interrupted): its
    `finetune_results.json`."""
    from resp_audio_hf.training.config import load_config
    from resp_audio_hf.training.finetune import FinetuneConfig, run

    results_path = _run_folder(args, task, imbalance, augmented, seed) / "finetune_results.json"
    command = finetune_command(args, task, imbalance, augmented, seed)
    if results_path.is_file():
        finished = json.loads(results_path.read_text(encoding="utf-8"))
        if finished.get("command") != command:  # another setting in the same folder would be a stale result
            raise SystemExit(
                f"{results_path.parent} holds a finished run of another command:\n  {finished.get('command')}\nnot\n"
                f"  {command}\nGive another --output-dir, or remove that folder to train it again."
            )
        return finished
    config = load_config(FinetuneConfig, args.config, finetune_overrides(args, task, imbalance, augmented, seed))
    run(config, resume="auto", command=command)
    return json.loads(results_path.read_text(encoding="utf-8"))


def finetune_task(args, task: str) -> dict:
    """Variants compared on validation with the first seed, then the chosen one over every seed."""
    first, *others = args.seeds
    started = time.perf_counter()
    variants = {}
    for imbalance, augmented in _variants(args):
        result = finetune_run(args, task, imbalance, augmented, first)
        variants[_variant_name(imbalance, augmented)] = {
            "validation_score": result["best_metric"], "imbalance": imbalance, "augmentation": augmented
        }
    chosen = max(variants, key=lambda name: variants[name]["validation_score"])  # the first best wins
    runs = []
    for seed in (first, *others):
        spec = variants[chosen]
        result = finetune_run(args, task, spec["imbalance"], spec["augmentation"], seed)
        runs.append(split_scores({s: _strip(result["metrics"][s], s) for s in TEST_SPLITS}))
    return {
        "label": f"fine-tuned mn04 ({chosen})",
        "variants_validation_score": {name: v["validation_score"] for name, v in variants.items()},
        "chosen_variant": chosen,
        "seeds": list(args.seeds),
        "runs": runs,
        "aggregate": aggregate(runs),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _strip(metrics: dict, prefix: str) -> dict:
    return {key[len(prefix) + 1 :]: value for key, value in metrics.items() if key.startswith(prefix + "_")}


# ---------------------------------------------------------------------------------------------- probe and baseline


def limit_rows(table, limit: int):
    """Smoke runs: a seeded random subset of at most `limit` rows of each split, in table order."""
    rng = np.random.default_rng(0)
    keep = []
    for name in dict.fromkeys(table["split"]):
        rows = np.flatnonzero((table["split"] == name).to_numpy())
        keep += rng.choice(rows, size=min(limit, len(rows)), replace=False).tolist()
    return table.iloc[sorted(keep)].reset_index(drop=True)


def probe_task(args, task: str) -> dict:
    """Logistic regression on frozen encoder embeddings; `C` and class weighting chosen on the validation Score."""
    from sklearn.linear_model import LogisticRegression

    from resp_audio_hf.benchmark.metrics import sprsound_scores
    from resp_audio_hf.benchmark.probe import standardize_features
    from resp_audio_hf.benchmark.runner import embed_task
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
    from resp_audio_hf.data.tasks import load_task
    from resp_audio_hf.extraction import AudioEncoder

    started = time.perf_counter()
    challenge = challenge_task(task)
    task_data = load_task(task, args.data_root, verify_audio=False)
    if args.limit is not None:
        task_data.table = limit_rows(task_data.table, args.limit)
    encoder = AudioEncoder.from_pretrained(args.encoder)
    embedded = embed_task(encoder, task_data, cache_dir=Path(args.output_dir) / "embeddings", progress=False)
    split = embedded.table["split"].to_numpy()
    labels = embedded.table["label"].to_numpy().astype(np.int64)
    features = standardize_features(embedded.features, np.flatnonzero(split == "train"))

    def score(y_true, y_pred):
        return sprsound_scores(y_true, y_pred, poor_quality_class=challenge.poor_quality_class)

    train, validation = split == "train", split == "validation"
    candidates = {}
    for class_weight in PROBE_CLASS_WEIGHTS:
        for c in PROBE_C_GRID:
            model = LogisticRegression(C=c, class_weight=class_weight, max_iter=2000)
            model.fit(features[train], labels[train])
            candidates[(c, class_weight)] = (score(labels[validation], model.predict(features[validation]))["score"],
                                             model)
    chosen = max(candidates, key=lambda key: candidates[key][0])  # the first best wins
    model = candidates[chosen][1]
    run = split_scores({s: score(labels[split == s], model.predict(features[split == s])) for s in TEST_SPLITS})
    return {
        "label": "linear probe on frozen mn04 (logistic regression)",
        "chosen": {"C": chosen[0], "class_weight": chosen[1] or "none"},
        "validation_scores": {f"C={c} class_weight={w or 'none'}": v[0] for (c, w), v in candidates.items()},
        "runs": [run],
        "aggregate": aggregate([run]),
        "seconds": round(time.perf_counter() - started, 1),
    }


def baseline_task(args, task: str) -> dict:
    """The organisers' MFCC + SVM baseline (`sprsound_baseline`)."""
    from resp_audio_hf.benchmark.sprsound_baseline import clip_features, fit_and_score
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
    from resp_audio_hf.data.tasks import load_task

    started = time.perf_counter()
    table = load_task(task, args.data_root, verify_audio=False).available
    if args.limit is not None:
        table = limit_rows(table, args.limit)
    result = fit_and_score(challenge_task(task), table, clip_features(table))
    run = split_scores({s: result["test"][s]["scores"] for s in TEST_SPLITS})
    return {
        "label": "organisers' baseline (40 MFCC means + SVM)",
        "chosen": {"C": result["chosen_c"]},
        "runs": [run],
        "aggregate": aggregate([run]),
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---------------------------------------------------------------------------------------------- command


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="/work/data/ext", help="folder holding SPRSound/ (train and test parts)")
    parser.add_argument("--output-dir", default="runs/sprsound_challenge", help="runs, checkpoints and caches")
    parser.add_argument("--results-dir", default="results", help="receives sprsound_challenge.json and .md")
    parser.add_argument("--config", default="training/configs/finetune_sprsound_challenge.yaml")
    parser.add_argument("--encoder", default="pretrained/efficientat-mn04-as", help="mn04 folder (fine-tuned, probed)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task ids")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds; the first one compares the variants")
    parser.add_argument("--epochs", type=float, default=5.0, help="fine-tuning epochs per run")
    parser.add_argument("--imbalance", default="weighted_loss,balanced_sampler", help="variants compared")
    parser.add_argument("--augmentation", default="off,on", help="variants compared: off, on (the YAML's section)")
    parser.add_argument("--limit", type=int, default=None, help="rows per split (smoke runs only)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other tasks' and models' entries of the existing sprsound_challenge.json (tasks run apart, "
        "e.g. with their own --epochs)",
    )
    args = parser.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.imbalance = [v.strip() for v in args.imbalance.split(",")]
    args.augmentation = [v.strip() for v in args.augmentation.split(",")]
    unknown = set(args.models) - set(MODELS) | set(args.augmentation) - {"off", "on"}
    if unknown:
        raise SystemExit(f"unknown --models/--augmentation values: {sorted(unknown)}")
    return args


def main(argv=None) -> dict:
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
    from resp_audio_hf.data.file_io import atomic_write_json, atomic_write_text

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    started = time.perf_counter()
    command = shlex.join(["python", "results/sprsound_challenge.py", *(sys.argv[1:] if argv is None else argv)])
    steps = {"finetune": finetune_task, "probe": probe_task, "baseline": baseline_task}
    out = Path(args.results_dir)
    results = {"limit": args.limit, "encoder": args.encoder, "tasks": {}, "runs": [], "published": list(PUBLISHED)}
    if args.merge:
        results = merge_base(out / "sprsound_challenge.json", args)
    this_run = {"command": command, "epochs": args.epochs, "tasks": [], "models": list(args.models)}
    for task in (challenge_task(t).task_id for t in args.tasks):
        entries = results["tasks"].setdefault(task, {})
        for model in args.models:
            entries[model] = {**steps[model](args, task), "command": command}
            if model == "finetune":
                entries[model]["epochs"] = args.epochs
            logger.info("%s %s: %s", task, model, json.dumps(entries[model]["aggregate"]["mean"]))
        results["tasks"][task] = {model: entries[model] for model in MODELS if model in entries}
        this_run["tasks"].append(task)
    this_run["seconds"] = round(time.perf_counter() - started, 1)
    results["runs"].append(this_run)
    results["tasks"] = {task: results["tasks"][task] for task in TASKS if task in results["tasks"]}
    atomic_write_json(out / "sprsound_challenge.json", results, sort_keys=True)
    atomic_write_text(out / "sprsound_challenge.md", markdown_report(results))
    print(markdown_table(results))
    return results


def merge_base(path: Path, args) -> dict:
    """The results already in `path` (`--merge`): this command replaces the entries of its own tasks and models
    and keeps the others, each of which names the command that produced it."""
    if not path.is_file():
        raise SystemExit(f"--merge: {path} does not exist; run without --merge first.")
    previous = json.loads(path.read_text(encoding="utf-8"))
    if "runs" not in previous:
        raise SystemExit(f"--merge: {path} was written by an older version of this script (no 'runs'); rerun it whole.")
    if previous.get("limit") != args.limit or previous.get("encoder") != args.encoder:
        raise SystemExit(
            f"--merge: {path} holds results for --limit {previous.get('limit')} and --encoder {previous.get('encoder')}, "
            f"not --limit {args.limit} and --encoder {args.encoder}; they would not belong in one table."
        )
    previous["published"] = list(PUBLISHED)
    return previous


def markdown_report(results: dict) -> str:
    """The table, the fine-tuning variants each task compared on validation, and the commands that produced it."""
    limit = results["limit"]
    note = f"**Smoke run: {limit} rows per split, not a result.**\n\n" if limit is not None else ""
    lines = [
        "# SPRSound 2022 challenge: Score / SE / SP on test_inter and test_intra\n",
        f"{note}Mean ± std over seeds (sample std); a single value is one deterministic run. Published anchors are "
        "Scores as their papers report them, their test split not stated.\n",
        markdown_table(results),
        "## Fine-tuning variants (validation Score of the first seed's best epoch; the best one ran every seed)\n",
        "| task | epochs | variant | validation Score |",
        "|---|---|---|---|",
    ]
    for task, models in results["tasks"].items():
        finetuned = models.get("finetune")
        if finetuned is None:
            continue
        for name, score in finetuned["variants_validation_score"].items():
            chosen = " (chosen)" if name == finetuned["chosen_variant"] else ""
            lines.append(f"| {task[-3:]} | {finetuned['epochs']:g} | {name}{chosen} | {score:.3f} |")
    lines += ["", "## Commands (each entry of the JSON names its own)\n"]
    for run in results["runs"]:
        lines.append(
            f"- `{run['command']}`: tasks {', '.join(t[-3:] for t in run['tasks'])}, {run['seconds'] / 3600:.2f} h "
            "on this machine"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
