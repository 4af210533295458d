"""What the shipped `evaluate` modules (`opera_auroc`, `opera_mae`, `opera_mrr`, `sprsound_score`) share: the OPERA
citation and the `evaluate.Metric` base that builds their `MetricInfo`.

Each module stays a standalone folder for `evaluate.load(path)`; it imports this module from the installed package,
as it imports the computation (`resp_audio_hf.benchmark.metrics`). Import this module, not the class: `evaluate.load`
takes the first `Metric` subclass it finds in the module's namespace as the metric.
"""

from __future__ import annotations

import textwrap

import evaluate

OPERA_CITATION = """
@inproceedings{zhang2024opera,
  title = {Towards Open Respiratory Acoustic Foundation Models: Pretraining and Benchmarking},
  author = {Zhang, Yuwei and Xia, Tong and Han, Jing and Wu, Yu and Rizos, Georgios and Liu, Yang and Mosuily, Mohammed
            and Chauhan, Jagmohan and Mascolo, Cecilia},
  booktitle = {NeurIPS Datasets and Benchmarks Track},
  year = {2024}
}
"""


class OperaMetric(evaluate.Metric):
    """
    An OPERA metric as an `evaluate` module. Subclasses set the class attributes and define `_compute`.

    Attributes:
        DESCRIPTION: what the metric measures (`MetricInfo.description`, and the start of the class docstring).
        INPUTS_DESCRIPTION: the `compute` arguments and result, with an example (`MetricInfo.inputs_description`).
        FEATURES: the input columns, a `datasets.Features` or a list of alternatives.
        CITATION: the BibTeX of the metric's source (OPERA's paper unless a module names another).
    """

    DESCRIPTION: str
    INPUTS_DESCRIPTION: str
    FEATURES: object
    CITATION: str = OPERA_CITATION

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Written indented in the class body; stored flush left, as evaluate's own modules give them.
        cls.DESCRIPTION = textwrap.dedent(cls.DESCRIPTION)
        cls.INPUTS_DESCRIPTION = textwrap.dedent(cls.INPUTS_DESCRIPTION)
        cls.__doc__ = cls.DESCRIPTION + cls.INPUTS_DESCRIPTION

    def _info(self):
        return evaluate.MetricInfo(
            description=self.DESCRIPTION,
            citation=self.CITATION,
            inputs_description=self.INPUTS_DESCRIPTION,
            features=self.FEATURES,
        )
