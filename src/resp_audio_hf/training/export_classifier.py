"""Turn a finished SPRSound challenge fine-tuning run (`training/finetune.py`) into a shippable `pretrained/<name>/`
classifier folder.

    python training/export_classifier.py --run runs/sprsound_challenge/finetune/SPRSound-1-1/weighted_loss/seed0 \\
        --name mn04-sprsound-1-1

The folder holds the fine-tuned classifier (its `id2label` the challenge's class names, so
`pipeline("audio-classification", model=folder)` answers with them) and its feature extractor, saved with their
remote code (`hub.staging.save_with_remote_code`: the folder also loads with `trust_remote_code=True` where
`resp_audio_hf` is not installed; git ignores those copies, the package being their single source); the run's
`finetune_results.json`, `metrics.jsonl` and `command.txt`; `LICENSE` and a model card `README.md` under GPL-3.0, the
licence of the SPRSound data it was trained on, reporting the official Score, SE and SP on both test parts. Written
under a temporary name and renamed when complete; it must stay under `--max-megabytes`.

With `--compare-with results/sprsound_challenge.json` the card also sets the classifier against its starting point,
the frozen encoder it was fine-tuned from with a linear probe, and says plainly whether it beats it. `--card-only`
writes the card of an exported folder again from the folder's own `finetune_results.json`, leaving the weights as
they are:

    python training/export_classifier.py --card-only --name mn04-sprsound-2-1 \
        --compare-with results/sprsound_challenge.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..data.file_io import atomic_write_text
from .checkpointing import FINAL_MODEL_NAME, save_final_folder

DEFAULT_MAX_MEGABYTES = 25.0
TEST_SPLITS = ("test_inter", "test_intra")
RUN_FILES = ("finetune_results.json", "metrics.jsonl", "command.txt")
LICENSE_TEXT = """These model weights were trained on SPRSound 2022 (SJTU Paediatric Respiratory Sound database,
https://github.com/SJTU-YONGFU-RESEARCH-GRP/SPRSound), released under the GNU General Public License v3.0, and are
distributed under the same licence: GPL-3.0 (https://www.gnu.org/licenses/gpl-3.0.txt).

The network they fine-tune is EfficientAT's mn04_as (MIT licence, Florian Schmid, Khaled Koutini, Gerhard Widmer).
"""


def read_run(run: Path) -> dict:
    """The run's `finetune_results.json`, checked: a SPRSound challenge task with both test parts scored."""
    path = run / "finetune_results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} has no finetune_results.json: the run has not finished.")
    results = json.loads(path.read_text(encoding="utf-8"))
    if not results.get("sprsound_task"):
        raise ValueError(f"{path}: not a SPRSound challenge task run (no sprsound_task).")
    missing = [split for split in TEST_SPLITS if f"{split}_score" not in results["metrics"].get(split, {})]
    if missing:
        raise ValueError(f"{path}: no challenge score on {missing}; the export reports both test parts.")
    return results


def scores_table(results: dict) -> str:
    rows = ["| test part | Score | SE | SP |", "|---|---|---|---|"]
    for split in TEST_SPLITS:
        metrics = results["metrics"][split]
        rows.append(
            f"| {split} | {metrics[f'{split}_score']:.3f} | {metrics[f'{split}_sensitivity']:.3f} | "
            f"{metrics[f'{split}_specificity']:.3f} |"
        )
    return "\n".join(rows)


def scores_on_test_parts(results: dict) -> dict[str, float]:
    """The run's Score on each test part and their mean (the challenge table's `mean`)."""
    scores = {split: results["metrics"][split][f"{split}_score"] for split in TEST_SPLITS}
    return {**scores, "mean": sum(scores.values()) / len(scores)}


def starting_point_section(results: dict, table: dict, table_name: str) -> str:
    """Card section: this run's test Score beside the challenge table's fine-tuning (every seed), the frozen-encoder
    probe it started from and the organisers' baseline, with a plain sentence on whether it beats the probe."""
    task = results["sprsound_task"]
    rows_of_task = table.get("tasks", {}).get(task)
    if not rows_of_task or "probe" not in rows_of_task:
        raise ValueError(f"{table_name}: no probe row for {task}; the comparison needs the frozen encoder's score.")

    def aggregate(model: str, split: str) -> tuple[float, float, int]:
        score = rows_of_task[model]["aggregate"][split]["score"]
        return score["mean"], score["std"], score["n"]

    def cells(model: str) -> str:
        values = []
        for split in (*TEST_SPLITS, "mean"):
            mean, std, n = aggregate(model, split)
            values.append(f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}")
        return " | ".join(values)

    own = scores_on_test_parts(results)
    seed = results["config"].get("training_args", {}).get("seed")
    rows = [
        f"| model | {' | '.join(TEST_SPLITS)} | mean |",
        "|---|---|---|---|",
        f"| this classifier (seed {seed}) | {' | '.join(f'{own[split]:.3f}' for split in (*TEST_SPLITS, 'mean'))} |",
    ]
    labels = {
        "finetune": "fine-tuned as this one, {seeds} seeds (mean ± std)",
        "probe": "its starting point: the frozen encoder + a linear probe",
        "baseline": "the organisers' baseline",
    }
    for model, label in labels.items():
        if model in rows_of_task:
            rows.append(f"| {label.format(seeds=aggregate(model, 'mean')[2])} | {cells(model)} |")
    probe = aggregate("probe", "mean")[0]
    if own["mean"] > probe:
        verdict = (f"This classifier beats its starting point: {own['mean']:.3f} against {probe:.3f} for the frozen "
                   "encoder with a linear probe, on the mean test Score.")
    else:
        verdict = (f"**This classifier does not beat its starting point**: its mean test Score is {own['mean']:.3f}, "
                   f"against {probe:.3f} for the frozen encoder it was fine-tuned from with a linear probe trained on "
                   "the same patients. Where the score matters, the probe on the frozen encoder is the better model.")
    return f"""## Against its starting point

The challenge's Score on each test part and their mean, beside the rows of the same task in `{table_name}` (the
SPRSound challenge table, made by `bash results/sprsound_challenge.sh`; each row scored once on the test parts):

{chr(10).join(rows)}

{verdict}

"""


def model_card(name: str, results: dict, class_names: list[str], comparison: str = "") -> str:
    task = results["sprsound_task"]
    config = results["config"]
    base_model = config["model"]["name_or_path"]
    validation = results.get("best_metric")
    command = results.get("command") or "(not recorded)"
    poor_quality = (
        " Poor Quality records are left out of SE (the `sprsound_score` default; see the package README)."
        if "Poor Quality" in class_names else ""
    )
    return f"""---
license: gpl-3.0
library_name: transformers
pipeline_tag: audio-classification
tags:
  - audio
  - audio-classification
  - respiratory-sounds
  - lung-sounds
  - sprsound
datasets:
  - SPRSound
metrics:
  - sprsound_score
---

# {name}

A lung-sound classifier for the SPRSound 2022 challenge's **{task}** (IEEE BioCAS 2022 Grand Challenge on Respiratory
Sound Classification), fine-tuned with `transformers`' `Trainer` by `resp_audio_hf` (`training/finetune.py`) from
`{base_model}`. Classes, in the organisers' id order: {", ".join(f"{i} {n}" for i, n in enumerate(class_names))}.

## Scores

The challenge's official score (Score = (AS + HS) / 2 of SE and SP) on both test parts of SPRSound 2022, scored
apart, with the epoch chosen on the validation patients' Score ({validation if validation is None else f"{validation:.3f}"})
and nothing else.{poor_quality}

{scores_table(results)}

Trained on the train part of SPRSound 2022 minus the validation patients (one patient-grouped fifth, the same for
the four tasks); {results.get("num_train_examples", "?")} training examples; imbalance handling
`{config.get("imbalance")}`, augmentation `{json.dumps(config.get("augmentation"))}`.

{comparison}## How to use

```python
import resp_audio_hf  # noqa: F401  (registers the model types; or pass trust_remote_code=True without it)
from transformers import pipeline

classifier = pipeline("audio-classification", model="pretrained/{name}")
classifier("recording.wav")   # [{{"label": "{class_names[0]}", "score": ...}}, ...]
```

## Training

Command (`command.txt`; the full configuration and every metric in `finetune_results.json`, the log in
`metrics.jsonl`):

```
{command}
```

## Licence

GPL-3.0, as the SPRSound data the weights were trained on (`LICENSE`). The base network is EfficientAT's mn04 (MIT).
"""


def read_comparison(results: dict, compare_with: Path | None) -> str:
    """The card's starting-point section from the challenge table `compare_with`, or nothing without one."""
    if compare_with is None:
        return ""
    return starting_point_section(results, json.loads(Path(compare_with).read_text(encoding="utf-8")), str(compare_with))


def card_of_exported_folder(folder: Path, compare_with: Path | None = None) -> str:
    """The card of an exported folder, from its own `finetune_results.json` and config."""
    from transformers import AutoConfig

    results = read_run(folder)
    config = AutoConfig.from_pretrained(folder)
    class_names = [config.id2label[i] for i in range(config.num_labels)]
    return model_card(folder.name, results, class_names, read_comparison(results, compare_with))


def write_card(folder: Path, compare_with: Path | None = None) -> Path:
    """Write the card of the exported `folder` again (`--card-only`); whole or not at all."""
    return atomic_write_text(folder / "README.md", card_of_exported_folder(folder, compare_with))


def export(
    run: Path,
    name: str,
    output_root: Path,
    max_megabytes: float = DEFAULT_MAX_MEGABYTES,
    compare_with: Path | None = None,
) -> Path:
    """Write `output_root/name` from the finished fine-tuning run `run`; returns the folder. `compare_with`: the
    challenge table whose probe row the card compares the classifier with."""
    from transformers import AutoModelForAudioClassification

    from resp_audio_hf import RespAudioFeatureExtractor
    from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
    from resp_audio_hf.hub.staging import save_with_remote_code

    results = read_run(run)
    model_folder = run / FINAL_MODEL_NAME
    model = AutoModelForAudioClassification.from_pretrained(model_folder)
    feature_extractor = RespAudioFeatureExtractor.from_pretrained(model_folder)
    class_names = list(challenge_task(results["sprsound_task"]).class_names)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if labels != class_names:
        raise ValueError(f"{model_folder}: id2label {labels} is not {results['sprsound_task']}'s classes {class_names}.")
    comparison = read_comparison(results, compare_with)

    def write(folder: Path) -> None:
        save_with_remote_code(model, feature_extractor, folder)
        for file_name in RUN_FILES:
            if (run / file_name).is_file():
                shutil.copy2(run / file_name, folder / file_name)
        (folder / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8")
        (folder / "README.md").write_text(
            model_card(name, results, class_names, comparison), encoding="utf-8"
        )
        size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
        if size > max_megabytes * 2**20:
            raise ValueError(f"The export of {run} takes {size / 2**20:.1f} MB, over the {max_megabytes} MB limit.")

    output_root.mkdir(parents=True, exist_ok=True)
    return save_final_folder(output_root, name, write)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="training_args.output_dir of a finished finetune.py run.")
    parser.add_argument("--name", required=True, help="Name of the exported classifier (folder name).")
    parser.add_argument("--output-root", default="pretrained", help="Folder that receives <name>/ (%(default)s).")
    parser.add_argument("--max-megabytes", type=float, default=DEFAULT_MAX_MEGABYTES)
    parser.add_argument("--compare-with", type=Path, default=None,
                        help="SPRSound challenge table (results/sprsound_challenge.json): the card compares the "
                        "classifier with the frozen-encoder probe of its task.")
    parser.add_argument("--card-only", action="store_true",
                        help="write the card of the exported <output-root>/<name> again; the weights stay as they are.")
    args = parser.parse_args(argv)
    if args.card_only:
        path = write_card(Path(args.output_root) / args.name, args.compare_with)
        print(f"Wrote {path}.")
        return
    if not args.run:
        parser.error("--run is required (or --card-only for an exported folder)")
    folder = export(Path(args.run), args.name, Path(args.output_root), args.max_megabytes, args.compare_with)
    print(f"Exported {args.run} to {folder}.")


__all__ = ["card_of_exported_folder", "export", "model_card", "read_run", "starting_point_section", "write_card"]

if __name__ == "__main__":
    main()
