"""MMlung (phone recordings with spirometry): the corpus builder and tasks T13-T18 (FVC, FEV1 and FEV1/FVC from the
deep breath and from the sustained vowel, leave-one-subject-out)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..build_report import BuildReport
from ..corpus_table import CorpusScan, CorpusSpec, is_missing
from ..files import FileIndex
from ..task_spec import TaskContext, corpus_task
from ..task_tables import record_rows

CORPUS = CorpusSpec(
    name="mmlung", title="MMlung", dirnames=("mmlung", "MMlung"),
    access="request", homepage="https://github.com/MohammedMosuily/mmlung", license="custom (data transfer agreement)",
)


MMLUNG_MODALITIES = {"deep_breath": "Deep_Breath_file", "o_single": "O_Single_file"}
MMLUNG_TARGETS = ("FVC", "FEV1", "FEV1_FVC")


def _read_mmlung_targets(index: FileIndex, root: Path, report: BuildReport) -> list[dict]:
    """Subject rows with spirometry targets and the relative path of each modality's recording."""
    import pandas as pd

    all_path = index.find_metadata("All_path.xlsx")
    if all_path is not None:
        report.notes.append(f"metadata: {all_path}")
        frame = pd.read_excel(all_path)
        rows = []
        for _, row in frame.iterrows():
            spiro = str(row["Spirometry_file"])
            subject = Path(spiro).stem.split("_")[0]
            item = {"subject_id": subject, "spirometry_file": spiro}
            item.update({"FVC": float(row["FVC"]), "FEV1": float(row["FEV1"]), "FEV1_FVC": float(row["FEV1/FVC"])})
            for key, column in MMLUNG_MODALITIES.items():
                value = row.get(column)
                item[key] = None if is_missing(value) else str(value).lstrip("./")
            rows.append(item)
        return rows
    spiro_files = sorted(
        p
        for p in index.paths()
        if p.parent.name == "spirometry_ground_truth" and p.suffix.lower() in {".xls", ".xlsx"}
    )
    if not spiro_files:
        raise FileNotFoundError(f"MMlung: neither All_path.xlsx nor spirometry_ground_truth/*.xls found under {root}.")
    rows = []
    for spiro in spiro_files:
        try:
            sheet = pd.read_excel(spiro, header=None, sheet_name=0)
        except ImportError as error:
            raise ImportError(
                f"Reading MMlung's .xls spirometry files needs the 'xlrd' package ({error}); install it or generate All_path.xlsx with OPERA's extract_mmlung.py."
            ) from error
        # Cells B23/B24/B25 hold FVC, FEV1 and FEV1/FVC (OPERA's extract_mmlung.py); '*' marks flagged values.
        values = [float(str(sheet.iat[r, 1]).replace("*", "")) for r in (22, 23, 24)]
        subject = spiro.stem.split("_")[0]
        rows.append(
            {
                "subject_id": subject,
                "spirometry_file": spiro.relative_to(root).as_posix(),
                "FVC": values[0],
                "FEV1": values[1],
                "FEV1_FVC": values[2],
                "deep_breath": f"Trimmed Data from phone/9_3_deepbreath/{subject}_deepbreaths.wav",
                "o_single": f"Trimmed Data from phone/5_2_O_single/{subject}_vowelo.wav",
            }
        )
    return rows


def corpus_rows(scan: CorpusScan) -> list[dict]:
    """MMlung (`Trimmed Data from phone/` + `All_path.xlsx` or `spirometry_ground_truth/*.xls`).

    One row per (subject, modality) for `deep_breath` and `o_single`. Columns: `modality`,
    `FVC`, `FEV1`, `FEV1_FVC`, `spirometry_file`. Rows keep OPERA's order (sorted by
    spirometry file name), which its leave-one-out loop iterates over.
    """
    root, index, report = scan.root, scan.index, scan.report
    subjects = sorted(_read_mmlung_targets(index, root, report), key=lambda r: r["spirometry_file"])
    rows = []
    for subject in subjects:
        for modality in MMLUNG_MODALITIES:
            relpath = subject[modality]
            if relpath is None:
                report.missing.append(f"{subject['subject_id']}:{modality} (no recording listed)")
                continue
            rows.append(
                {
                    "audio": index.find(relpath=relpath, tail=2),
                    "file": relpath,
                    "subject_id": subject["subject_id"],
                    "modality": modality,
                    "spirometry_file": subject["spirometry_file"],
                    **{t: subject[t] for t in MMLUNG_TARGETS},
                }
            )
    return rows


def _mmlung_table(ctx: TaskContext, modality: str, target: str):
    records = ctx.scan()
    records = records[records["modality"] == modality].reset_index(drop=True)
    return record_rows(records, lambda r: float(getattr(r, target)), fold=lambda r: str(r.subject_id))


TASK_SPECS = tuple(
    corpus_task(
        CORPUS,
        task_id=f"T{number}",
        name=f"MMlung {modality.replace('_', ' ')}: {target.replace('_', '/')} estimation",
        modality="breath" if modality == "deep_breath" else "vowel",
        kind="regression",
        evaluation="loocv",
        split_description="leave-one-subject-out over all 40 subjects; 11 % inner validation (seed 42)",
        target=target,
        table_builder=partial(_mmlung_table, modality=modality, target=target),
    )
    for number, (modality, target) in enumerate(
        [(modality, target) for modality in MMLUNG_MODALITIES for target in MMLUNG_TARGETS], start=13
    )
)
