"""Respiratory-audio corpora and the OPERA task registry.

Importing this package is cheap: ``datasets``, ``pandas`` and ``scikit-learn`` are imported only by
the functions that need them (install them with ``pip install resp_audio_hf[data]``).

Main entry points:

* ``scan_corpus(name, root)`` / ``build_corpus_dataset(name, root)`` - one corpus as a table or a
  ``datasets.DatasetDict`` with an ``Audio`` column, labels and subject ids, plus a build report.
* ``load_task("T7", data_root)`` - a benchmark task with OPERA's labels, filters and splits.

One module per corpus (``data/corpora/<corpus>.py``) holds its builder and its task specs; ``data/tasks.py`` collects
the task registry. The probe protocols (``PROBE_PROTOCOLS``) live in ``resp_audio_hf.benchmark.protocols`` and are
re-exported here.
* ``download_corpus(name, data_root)`` - fetch an open corpus (or explain how to request it).
* ``OperaFiles`` - OPERA's committed split files, pinned by commit and SHA-256.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "AudioDecodeError": ".audio",
    "load_audio": ".audio",
    "probe_audio": ".audio",
    "BuildReport": ".build_report",
    "CORPORA": ".corpora",
    "CorpusNotFoundError": ".corpus_table",
    "CorpusTable": ".corpus_table",
    "build_corpus_dataset": ".corpora",
    "find_corpus_dir": ".corpora",
    "scan_corpus": ".corpora",
    "ChecksumError": ".download",
    "DownloadError": ".download",
    "download_file": ".download",
    "extract_archive": ".download",
    "OPERA_COMMIT": ".opera_files",
    "OPERA_FILES": ".opera_files",
    "OperaFileError": ".opera_files",
    "OperaFiles": ".opera_files",
    "CORPUS_SOURCES": ".sources",
    "CorpusAccessError": ".sources",
    "download_corpus": ".sources",
    "OPERA_TASK_IDS": ".tasks",
    "PROBE_PROTOCOLS": "..benchmark.protocols",
    "TASKS": ".tasks",
    "ProbeProtocol": "..benchmark.protocols",
    "TaskData": ".task_spec",
    "TaskSpec": ".task_spec",
    "get_task_spec": ".tasks",
    "load_task": ".tasks",
    "protocol_table": "..benchmark.protocols",
    "resolve_task_ids": ".tasks",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
