"""Mean absolute error as the OPERA benchmark computes it (regression tasks), as an `evaluate` metric.

The computation is `resp_audio_hf.benchmark.metrics.mean_absolute_error`; this module only adapts it to `evaluate`.
"""

import datasets

from resp_audio_hf.benchmark.metrics import mean_absolute_error
from resp_audio_hf.metrics import opera_metric  # the module: see its docstring


class OperaMae(opera_metric.OperaMetric):
    DESCRIPTION = """
    Mean absolute error between predicted and true values, the regression metric of the OPERA respiratory-audio
    benchmark (e.g. respiratory rate, lung function). Lower is better.
    """
    INPUTS_DESCRIPTION = """
    Args:
        predictions: predicted values, one per example.
        references: true values, one per example.
    Returns:
        mae: the mean absolute error.
    Examples:
        >>> mae = evaluate.load(resp_audio_hf.metrics.metric_path("opera_mae"))
        >>> mae.compute(predictions=[1.0, 2.0], references=[1.5, 2.0])
        {'mae': 0.25}
    """
    FEATURES = datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")})

    def _compute(self, predictions, references):
        return {"mae": float(mean_absolute_error(references, predictions))}
