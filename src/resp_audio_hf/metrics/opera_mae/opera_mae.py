"""Mean absolute error as the OPERA benchmark computes it (regression tasks), as an `evaluate` metric.

The computation is `resp_audio_hf.benchmark.metrics.mean_absolute_error`; this module only adapts it to `evaluate`.
"""

import datasets
import evaluate

from resp_audio_hf.benchmark.metrics import mean_absolute_error

_DESCRIPTION = """
Mean absolute error between predicted and true values, the regression metric of the OPERA respiratory-audio benchmark
(e.g. respiratory rate, lung function). Lower is better.
"""

_KWARGS_DESCRIPTION = """
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

_CITATION = """
@inproceedings{zhang2024opera,
  title = {Towards Open Respiratory Acoustic Foundation Models: Pretraining and Benchmarking},
  author = {Zhang, Yuwei and others},
  booktitle = {NeurIPS Datasets and Benchmarks Track},
  year = {2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OperaMae(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"mae": float(mean_absolute_error(references, predictions))}
