"""Macro one-vs-rest AUROC as the OPERA benchmark computes it, as an `evaluate` metric.

The computation is `resp_audio_hf.benchmark.metrics.auroc_ovr_macro`; this module only adapts it to `evaluate`.
"""

import datasets
import numpy as np

from resp_audio_hf.benchmark.metrics import auroc_ovr_macro
from resp_audio_hf.metrics import opera_metric  # the module: see its docstring


class OperaAuroc(opera_metric.OperaMetric):
    DESCRIPTION = """
    Macro-averaged one-vs-rest area under the ROC curve over the classes, the classification metric of the OPERA
    respiratory-audio benchmark (Zhang et al., NeurIPS 2024). For two classes it equals the binary AUROC of the positive
    class.
    """
    INPUTS_DESCRIPTION = """
    Args:
        predictions: per example, the scores of every class (probabilities or logits, `[n, C]`), or one positive-class
            score per example for a binary task (`[n]`).
        references: per example, the true class id.
    Returns:
        roc_auc: the macro one-vs-rest AUROC.
    Examples:
        >>> auroc = evaluate.load(resp_audio_hf.metrics.metric_path("opera_auroc"))
        >>> auroc.compute(predictions=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], references=[0, 1, 1])
        {'roc_auc': 1.0}
    """
    FEATURES = [
        datasets.Features(
            {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
        ),
        datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}),
    ]

    def _compute(self, predictions, references):
        return {"roc_auc": float(auroc_ovr_macro(np.asarray(references), np.asarray(predictions, dtype=np.float64)))}
