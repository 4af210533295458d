"""OPERA's metrics and the SPRSound challenge's score as `evaluate` modules, shipped with the package so
`evaluate.load` works offline.

Each module is a folder holding `<name>/<name>.py`; `evaluate.load(metric_path("opera_auroc"))` loads it. The modules
call `resp_audio_hf.benchmark.metrics`, so the benchmark and `evaluate` share one implementation.

* `opera_auroc` - macro one-vs-rest AUROC (`predictions`: class scores per example, `references`: class ids).
* `opera_mae` - mean absolute error (regression tasks).
* `opera_mrr` - mean reciprocal rank of several models over tasks (one example per task).
* `sprsound_score` - the SPRSound challenge's SE, SP, AS, HS and score of predicted classes (`task` "1-1" ... "2-2").
"""

from __future__ import annotations

from pathlib import Path

METRIC_NAMES = ("opera_auroc", "opera_mae", "opera_mrr", "sprsound_score")


def metric_path(name: str) -> str:
    """The folder of one shipped metric module, for `evaluate.load(path)`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; shipped metrics: {', '.join(METRIC_NAMES)}.")
    return str(Path(__file__).resolve().parent / name)


def load_metric(name: str, **kwargs):
    """`evaluate.load` of a shipped metric (needs `pip install evaluate`); `kwargs` go to `evaluate.load`."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRIC_NAMES", "load_metric", "metric_path"]
