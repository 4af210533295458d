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
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

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


def model_card(name: str, results: dict, class_names: list[str], base_model: str) -> str:
    task = results["sprsound_task"]
    config = results["config"]
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

## How to use

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


def export(run: Path, name: str, output_root: Path, max_megabytes: float = DEFAULT_MAX_MEGABYTES) -> Path:
    """Write `output_root/name` from the finished fine-tuning run `run`; returns the folder."""
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
    base_model = results["config"]["model"]["name_or_path"]

    def write(folder: Path) -> None:
        save_with_remote_code(model, feature_extractor, folder)
        for file_name in RUN_FILES:
            if (run / file_name).is_file():
                shutil.copy2(run / file_name, folder / file_name)
        (folder / "LICENSE").write_text(LICENSE_TEXT, encoding="utf-8")
        (folder / "README.md").write_text(model_card(name, results, class_names, base_model), encoding="utf-8")
        size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
        if size > max_megabytes * 2**20:
            raise ValueError(f"The export of {run} takes {size / 2**20:.1f} MB, over the {max_megabytes} MB limit.")

    output_root.mkdir(parents=True, exist_ok=True)
    return save_final_folder(output_root, name, write)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="training_args.output_dir of a finished finetune.py run.")
    parser.add_argument("--name", required=True, help="Name of the exported classifier (folder name).")
    parser.add_argument("--output-root", default="pretrained", help="Folder that receives <name>/ (%(default)s).")
    parser.add_argument("--max-megabytes", type=float, default=DEFAULT_MAX_MEGABYTES)
    args = parser.parse_args(argv)
    folder = export(Path(args.run), args.name, Path(args.output_root), args.max_megabytes)
    print(f"Exported {args.run} to {folder}.")


__all__ = ["export", "model_card", "read_run"]

if __name__ == "__main__":
    main()
