"""Every metric a task can be scored by: [`MetricSpec`] and the one table of them, `METRICS`.

A task spec names its headline metric; its direction, display name and model-index entry are read here by the task
registry (`TaskSpec.higher_is_better`), the benchmark's reports and the model card. Standard library only, so the task
registry and the model-card path use it without the benchmark's extras.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """One metric of the benchmark.

    Attributes:
        name: its key in `results.json` (`"auroc"`).
        display_name: how reports and cards name it (`"AUROC"`).
        higher_is_better: its direction, for the arrows of the tables and the mean reciprocal rank.
        hub_task_type: the model-index `task.type` of a task scored by it.
        hub_metric_type: the model-index `metric.type`: the `evaluate` metric id where there is one.
    """

    name: str
    display_name: str
    higher_is_better: bool
    hub_task_type: str = "audio-classification"
    hub_metric_type: str | None = None

    def __post_init__(self):
        if self.hub_metric_type is None:
            object.__setattr__(self, "hub_metric_type", self.name)


# OPERA scores classification tasks by AUROC and regression tasks by MAE. The Hub has no audio-regression task id;
# "audio-regression" keeps those rows apart from the classification ones in the model-index. The ICBHI 2017
# challenge's score (mean of sensitivity and specificity, task ICBHI-cycle) has no `evaluate` id; the SPRSound
# challenge's score is the package's `sprsound_score` module.
METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec("auroc", "AUROC", higher_is_better=True, hub_metric_type="roc_auc"),
        MetricSpec("mae", "MAE", higher_is_better=False, hub_task_type="audio-regression"),
        MetricSpec("icbhi_score", "ICBHI score", higher_is_better=True),
        MetricSpec("sprsound_score", "SPRSound score", higher_is_better=True),
        MetricSpec("sensitivity", "Se", higher_is_better=True),
        MetricSpec("specificity", "Sp", higher_is_better=True),
    )
}
