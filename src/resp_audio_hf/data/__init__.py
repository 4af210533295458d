"""Respiratory-audio corpora and the OPERA task registry.

Importing this package is cheap: `datasets`, `pandas` and `scikit-learn` are imported only by
the functions that need them (install them with `pip install resp_audio_hf[data]`).

Main entry points:

* `scan_corpus(name, root)` / `build_corpus_dataset(name, root)` - one corpus as a table or a
  `datasets.DatasetDict` with an `Audio` column, labels and subject ids, plus a build report.
* `load_task("T7", data_root)` - a benchmark task with OPERA's labels, filters and splits.

One module per corpus (`data/corpora/<corpus>.py`) holds its builder and its task specs; `data/tasks.py` collects
the task registry; `data/probe_protocols.py` holds every task's probe protocol (`PROBE_PROTOCOLS`) and
`data/metric_specs.py` every metric's direction and names (`METRICS`). Both are standard library only, so the
registry needs nothing from `resp_audio_hf.benchmark` (which imports this package, never the other way).
* `download_corpus(name, data_root)` - fetch an open corpus (or explain how to request it).
* `OperaFiles` - OPERA's committed split files, pinned by commit and SHA-256.
"""

from .._lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        ".audio": ("AudioDecodeError", "load_audio", "probe_audio"),
        ".build_report": ("BuildReport",),
        ".corpora": ("CORPORA", "build_corpus_dataset", "find_corpus_dir", "scan_corpus"),
        ".corpus_table": ("CorpusNotFoundError", "CorpusTable"),
        ".download": ("ChecksumError", "DownloadError", "download_file", "extract_archive"),
        ".opera_files": ("OPERA_COMMIT", "OPERA_FILES", "OperaFileError", "OperaFiles"),
        ".sources": ("CORPUS_SOURCES", "CorpusAccessError", "download_corpus"),
        ".tasks": ("OPERA_TASK_IDS", "TASKS", "get_task_spec", "load_task", "resolve_task_ids"),
        ".metric_specs": ("METRICS", "MetricSpec"),
        ".probe_protocols": ("PROBE_PROTOCOLS", "ProbeProtocol", "protocol_table"),
        ".task_spec": ("TaskData", "TaskSpec"),
    },
)
