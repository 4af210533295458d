"""List the recordings of chosen splits of a registry task, as a metadata table for a pre-training corpus.

Pre-training must never see a benchmark's test part. A corpus folder joined with this table (`metadata:` in the
YAML; rows of files not listed are left out) trains on exactly the listed splits, e.g. the CC0 coughs without the
COVID-cough task's test split:

    python -m resp_audio_hf.training.task_file_list --task COVID-cough --data-root ../shared/data \\
        --splits train validation --output /work/runs/lists/covid19_cough_train_validation.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.file_io import atomic_write_text


def task_file_rows(task_id: str, data_root: str, splits: list[str]) -> list[dict]:
    """One row per recording (`file`: its name, `subject_id`, `split`) of the task's `splits`, sorted by file."""
    from resp_audio_hf.data.tasks import load_task

    table = load_task(task_id, data_root, verify_audio=False).table
    unknown = set(splits) - set(table["split"])
    if unknown:
        raise ValueError(f"Task {task_id} has no split {sorted(unknown)}; its splits are {sorted(set(table['split']))}.")
    kept = table[table["split"].isin(splits) & table["audio"].notna()]
    rows = {Path(audio).name: {"file": Path(audio).name, "subject_id": subject, "split": split}
            for audio, subject, split in zip(kept["audio"], kept["subject_id"].astype(str), kept["split"])}
    return [rows[name] for name in sorted(rows)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="registry task id, e.g. COVID-cough")
    parser.add_argument("--data-root", required=True, help="folder holding the task's corpus folder")
    parser.add_argument("--splits", nargs="+", required=True, help="splits to list, e.g. train validation")
    parser.add_argument("--output", required=True, help="CSV file to write (atomically)")
    args = parser.parse_args(argv)
    import csv
    import io

    rows = task_file_rows(args.task, args.data_root, args.splits)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["file", "subject_id", "split"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.output), buffer.getvalue())
    print(f"{len(rows)} files of {args.task} ({', '.join(args.splits)}) -> {args.output}")


if __name__ == "__main__":
    main()
