"""The task registry: OPERA's T1-T19 plus the ICBHI challenge, SPRSound and COVID-19 cough tasks, collected from the
corpus modules (`resp_audio_hf.data.corpora.<corpus>`, each holding its tasks' specs and table builders), and
[`load_task`], which builds a task's table from the corpus on disk and OPERA's pinned files.

A *task table* has one row per expected recording with `file`, `audio` (resolved path, or `None` when the file
is not on disk), `label`, `subject_id` and either `split` (`train`/`validation`/`test`) or `fold`
(cross-validation). Missing files are named in the task's [`~resp_audio_hf.data.build_report.BuildReport`].
Every task's probe protocol is its row of `resp_audio_hf.data.probe_protocols.PROBE_PROTOCOLS`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .build_report import BuildReport
from .corpora import TASK_MODULES, find_corpus_dir, get_corpus_spec
from .corpora.sprsound_challenge import CHALLENGE_ALIASES
from .corpus_table import CorpusNotFoundError
from .files import FileIndex, check_audio_files
from .opera_files import OperaFiles
from .probe_protocols import PROBE_PROTOCOLS
from .task_spec import TaskContext, TaskData, TaskSpec


def _collect_tasks() -> dict[str, TaskSpec]:
    """The corpus modules' task specs, in the order of `PROBE_PROTOCOLS` (the README's table), each checked to
    take its protocol from its row there."""
    specs = {spec.task_id: spec for module in TASK_MODULES for spec in module.TASK_SPECS}
    if set(specs) != set(PROBE_PROTOCOLS):
        raise ValueError(
            f"tasks without a PROBE_PROTOCOLS row: {sorted(set(specs) - set(PROBE_PROTOCOLS))}; "
            f"PROBE_PROTOCOLS rows without a task: {sorted(set(PROBE_PROTOCOLS) - set(specs))}"
        )
    for task_id, spec in specs.items():
        if spec.protocol is not PROBE_PROTOCOLS[task_id]:
            raise ValueError(f"{task_id}: its probe protocol must be its row of PROBE_PROTOCOLS (the one table).")
    return {task_id: specs[task_id] for task_id in PROBE_PROTOCOLS}


TASKS: dict[str, TaskSpec] = _collect_tasks()

TASK_ALIASES = {
    "sprsound-record": "S1",
    "sprsound-event": "S2",
    "sprsound": "S1",
    "covid19-cough": "COVID-cough",
    **CHALLENGE_ALIASES,
}
#: The SPRSound challenge's four tasks (not in `all`: they are scored by the challenge's score, not OPERA's probe
#: metric; ask for them with `sprsound-challenge`).
SPRSOUND_CHALLENGE_TASK_IDS = ("SPRSound-1-1", "SPRSound-1-2", "SPRSound-2-1", "SPRSound-2-2")
EXTRA_TASK_IDS = ("ICBHI-cycle", "S1", "S2", "COVID-cough")
OPERA_TASK_IDS = tuple(f"T{i}" for i in range(1, 20))


def get_task_spec(task_id: str) -> TaskSpec:
    key = TASK_ALIASES.get(task_id.strip().lower(), task_id.strip())
    for candidate, spec in TASKS.items():
        if candidate.lower() == key.lower():
            return spec
    raise KeyError(f"Unknown task {task_id!r}. Known tasks: {', '.join(TASKS)} (aliases: {', '.join(TASK_ALIASES)}).")


def resolve_task_ids(selection: str | list[str]) -> list[str]:
    """`"T7,T10"` / `["T7"]` / `"all"` (T1-T19, ICBHI-cycle, S1, S2, COVID-cough) / `"opera"` (T1-T19) /
    `"sprsound-challenge"` (the SPRSound challenge's Tasks 1-1 ... 2-2)."""
    items = selection.split(",") if isinstance(selection, str) else list(selection)
    items = [i.strip() for i in items if i.strip()]
    if not items:
        raise ValueError("No task given: use e.g. --tasks T7,T10,T11, --tasks opera or --tasks all.")
    result: list[str] = []
    for item in items:
        if item.lower() == "all":
            expanded = list(OPERA_TASK_IDS) + list(EXTRA_TASK_IDS)
        elif item.lower() == "opera":
            expanded = list(OPERA_TASK_IDS)
        elif item.lower() == "sprsound-challenge":
            expanded = list(SPRSOUND_CHALLENGE_TASK_IDS)
        else:
            expanded = [get_task_spec(item).task_id]
        result.extend(t for t in expanded if t not in result)
    return result


def default_opera_files(
    data_root: str | os.PathLike | None, opera_dir: str | os.PathLike | None = None, **kwargs
) -> OperaFiles:
    """OPERA file resolver that also looks in `<data_root>/opera` and an OPERA checkout above `data_root`."""
    local = []
    if opera_dir is not None:
        local.append(Path(opera_dir))
    if data_root is not None:
        data_root = Path(data_root)
        local.append(data_root / "opera")
        # A data root that is an OPERA checkout's datasets/ folder: the repository is its parent.
        if data_root.name == "datasets":
            local.append(data_root.parent)
    return OperaFiles(local_dirs=tuple(local), **kwargs)


def load_task(
    task_id: str,
    data_root: str | os.PathLike | None,
    *,
    opera: OperaFiles | None = None,
    opera_dir: str | os.PathLike | None = None,
    verify_audio: bool = True,
    require_audio: bool = True,
) -> TaskData:
    """Build a task's table from the corpus under `data_root` and OPERA's pinned files.

    Args:
        task_id: e.g. `"T7"` (see `TASKS`).
        data_root: folder holding the corpus folders (`icbhi/`, `KAUH/`, `copd/`, `sprsound/`...).
        opera: resolver for OPERA's split files (default: `<data_root>/opera`, `opera_dir`, cache,
            then the pinned commit online).
        verify_audio: probe every resolved file with torchcodec and treat undecodable files as corrupt.
        require_audio: raise when the corpus folder is absent. With `False` a table is still built
            from OPERA's files (every row then has `audio=None` and is listed as missing).
    """
    spec = get_task_spec(task_id)
    opera = opera or default_opera_files(data_root, opera_dir)
    root = None
    if data_root is not None:
        try:
            root = find_corpus_dir(spec.corpus, data_root)
        except CorpusNotFoundError:
            if require_audio:
                raise
    elif require_audio:
        raise CorpusNotFoundError(
            f"{spec.task_id} needs --data-root with the {get_corpus_spec(spec.corpus).title} corpus."
        )
    report = BuildReport(spec.task_id, str(root) if root else "")
    index = FileIndex(root) if root is not None else FileIndex(Path(os.devnull))
    ctx = TaskContext(spec, root, index, opera, report, Path(data_root) if data_root else None, verify_audio)
    table = spec.table_builder(ctx).reset_index(drop=True)
    report.add_duplicates(index.duplicates)
    table = _check_table_audio(table, report, verify_audio)
    report.n_usable = int(table["audio"].notna().sum())
    report.log()
    return TaskData(spec, table, report, ctx.split_mode, ctx.test_splits)


def _check_table_audio(table, report: BuildReport, verify_audio: bool):
    """Record missing files and blank out undecodable ones (each file probed once)."""
    if "audio" not in table.columns:
        table["audio"] = None
    table = table.astype({"audio": object})
    missing = table["audio"].isna()
    report.missing.extend(table.loc[missing, "file"].tolist())
    unique_paths = sorted(set(table.loc[~missing, "audio"]))
    usable = dict(zip(unique_paths, check_audio_files([Path(p) for p in unique_paths], report, verify_audio)))
    bad = table["audio"].map(lambda p: p is not None and not usable.get(p, True))
    table.loc[bad, "audio"] = None
    return table


def with_protocol(spec: TaskSpec, **overrides) -> TaskSpec:
    """A copy of `spec` with some probe hyper-parameters replaced (e.g. fewer epochs for a smoke test)."""
    return replace(spec, protocol=replace(spec.protocol, **overrides))
