"""What a downstream task is ([`TaskSpec`]), what its table builder is given ([`TaskContext`]) and what
loading it returns ([`TaskData`]). Each corpus module (`resp_audio_hf.data.corpora.<corpus>`) writes the specs
of its tasks; `resp_audio_hf.data.tasks` collects them into the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .build_report import BuildReport
from .corpus_table import CorpusNotFoundError, CorpusSpec, records_to_dataset_dict
from .files import FileIndex
from .metric_specs import METRICS
from .opera_files import OperaFiles
from .probe_protocols import PROBE_PROTOCOLS, ProbeProtocol

#: Class names of the binary tasks whose corpora label "COVID-19 positive" as 1.
BINARY_CLASSES = ("negative", "positive")


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """One downstream task.

    Attributes:
        task_id: `"T1"` ... `"T19"` for OPERA, `"S1"`/`"S2"` for SPRSound, variants with a suffix.
        name: short description.
        corpus: corpus registry name.
        modality: recorded sound (lung sound, cough, breath, ...).
        kind: `"classification"` or `"regression"`.
        class_names: label names indexed by class id (classification).
        target: regression target name.
        evaluation: `"holdout"` (fixed train/validation/test), `"loocv"` (leave one subject out,
            every subject a fold) or `"loso"` (leave one listed subject out).
        protocol: linear-probe hyper-parameters: the task's row of `PROBE_PROTOCOLS` ([`corpus_task`]).
        split_description: how the split is made, in words (shown in reports).
        opera: part of OPERA's 19 tasks (`False` for extra tasks such as SPRSound).
        table_builder: `(TaskContext) -> DataFrame`.
        score: test metric when it is not the default (AUROC for classification, MAE for regression), e.g.
            `"icbhi_score"` (the ICBHI challenge's mean of sensitivity and specificity).
        extra_metrics: further test metrics reported beside `score` (e.g. `("sensitivity", "specificity",
            "auroc")`).
    """

    task_id: str
    name: str
    corpus: str
    modality: str
    kind: str
    evaluation: str
    protocol: ProbeProtocol
    split_description: str
    class_names: tuple[str, ...] | None = None
    target: str | None = None
    opera: bool = True
    table_builder: Callable = field(default=None, repr=False, compare=False)
    score: str | None = None
    extra_metrics: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        if self.score is not None:
            return self.score
        return "auroc" if self.kind == "classification" else "mae"

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better


def corpus_task(corpus: CorpusSpec, *, task_id: str, **fields) -> TaskSpec:
    """The [`TaskSpec`] of a task on `corpus`: its protocol is its row of `PROBE_PROTOCOLS` (a task
    without a row there is an error), the other fields are the keyword arguments."""
    if task_id not in PROBE_PROTOCOLS:
        raise KeyError(f"{task_id} has no row in PROBE_PROTOCOLS (resp_audio_hf.data.probe_protocols); add one.")
    return TaskSpec(task_id=task_id, corpus=corpus.name, protocol=PROBE_PROTOCOLS[task_id], **fields)


@dataclass
class TaskContext:
    """What a task-table builder needs: the corpus folder (may be `None`), its file index, OPERA's
    pinned files and the report to fill. A builder whose split depends on what is on disk sets `split_mode`
    and `test_splits` (see [`TaskData`])."""

    spec: TaskSpec
    root: Path | None
    index: FileIndex
    opera: OperaFiles
    report: BuildReport
    data_root: Path | None = None
    verify_audio: bool = True
    split_mode: str = "default"
    test_splits: tuple[str, ...] = ("test",)

    def scan(self):
        """The corpus table (requires the corpus on disk)."""
        if self.root is None:
            raise CorpusNotFoundError(
                f"{self.spec.task_id} needs the {self.spec.corpus} recordings themselves (their labels live in the audio folder)."
            )
        from .corpora import scan_corpus  # the corpus modules build their task specs from this module

        table = scan_corpus(self.spec.corpus, self.root, opera=self.opera, verify_audio=False)
        self.report.missing.extend(table.report.missing)
        self.report.unlabelled.extend(table.report.unlabelled)
        self.report.duplicates.update(table.report.duplicates)
        self.report.notes.extend(table.report.notes)
        return table.records


@dataclass
class TaskData:
    """A task's table and the report on its files.

    Attributes:
        spec: the task.
        table: every expected row (`audio` is `None` where the file is missing or corrupt).
        report: missing/corrupt/excluded files by name.
        split_mode: which partition was used: `"default"` (the one in `spec.split_description`),
            `"official"` (the corpus' own train/test parts) or a named fallback such as SPRSound's
            `"patient-grouped-fallback"` when only part of the corpus is present.
        test_splits: the `split` values scored as test sets, each reported on its own (SPRSound's official
            mode has `("test_inter", "test_intra")`); the first is the headline score.
    """

    spec: TaskSpec
    table: object
    report: BuildReport
    split_mode: str = "default"
    test_splits: tuple[str, ...] = ("test",)

    @property
    def available(self):
        """Rows whose audio is present and decodable."""
        return self.table[self.table["audio"].notna()].reset_index(drop=True)

    def counts(self, available_only: bool = False) -> dict:
        """Row counts per split (or fold count) and label, for reports and sanity checks."""
        frame = self.available if available_only else self.table
        column = "split" if "split" in frame.columns else None
        counts: dict = {"total": len(frame)}
        if column:
            counts["per_split"] = {str(k): int(v) for k, v in frame[column].value_counts().items()}
        if "fold" in frame.columns:
            counts["folds"] = int(frame.loc[frame["fold"] != "", "fold"].nunique())
        if self.spec.kind == "classification":
            counts["per_label"] = {
                str(self.spec.class_names[int(k)]): int(v)
                for k, v in frame["label"].value_counts().sort_index().items()
            }
        return counts

    def to_dataset_dict(self, sampling_rate: int | None = None):
        """`DatasetDict` (train/validation/test, or `all` for cross-validated tasks) of available rows."""
        frame = self.available
        split_column = "split" if "split" in frame.columns else None
        return records_to_dataset_dict(frame, split_column, sampling_rate)
