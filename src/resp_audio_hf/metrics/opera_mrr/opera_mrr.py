"""OPERA's mean reciprocal rank of several models over benchmark tasks, as an `evaluate` metric.

One example is one task: the scores of every model on it and whether higher is better. The computation is
`resp_audio_hf.benchmark.metrics.mean_reciprocal_rank`; this module only adapts it to `evaluate`.
"""

import datasets

from resp_audio_hf.benchmark.metrics import mean_reciprocal_rank
from resp_audio_hf.metrics import opera_metric  # the module: see its docstring


class OperaMrr(opera_metric.OperaMetric):
    DESCRIPTION = """
    Mean reciprocal rank (MRR) of models across tasks, as in the OPERA benchmark: on each task the models are ranked
    (1 = best, ties share the best rank of the tie), and each model's reciprocal ranks are averaged over the tasks.
    """
    INPUTS_DESCRIPTION = """
    Args:
        scores: per task, the score of each model, in the order of `models` (AUROC, MAE, ...).
        higher_is_better: per task, True for AUROC-like metrics, False for errors such as MAE.
        models: the model names (compute keyword).
        tasks: optional task names, one per example (compute keyword), for error messages only.
    Returns:
        mrr: {model: mean reciprocal rank}.
    Examples:
        >>> mrr = evaluate.load(resp_audio_hf.metrics.metric_path("opera_mrr"))
        >>> mrr.compute(scores=[[0.8, 0.7], [2.0, 1.0]], higher_is_better=[True, False], models=["a", "b"])
        {'mrr': {'a': 0.75, 'b': 0.75}}
    """
    FEATURES = datasets.Features(
        {"scores": datasets.Sequence(datasets.Value("float64")), "higher_is_better": datasets.Value("bool")}
    )

    def _compute(self, scores, higher_is_better, models, tasks=None):
        tasks = list(tasks) if tasks is not None else [f"task {i}" for i in range(len(scores))]
        if len(tasks) != len(scores):
            raise ValueError(f"{len(tasks)} task names for {len(scores)} tasks.")
        for task, row in zip(tasks, scores):
            if len(row) != len(models):
                raise ValueError(f"{task} has {len(row)} scores for {len(models)} models {list(models)}.")
        by_model = {model: {task: row[i] for task, row in zip(tasks, scores)} for i, model in enumerate(models)}
        return {"mrr": mean_reciprocal_rank(by_model, dict(zip(tasks, higher_is_better)), tasks=tasks)}
