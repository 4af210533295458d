"""The SPRSound challenge's score (IEEE BioCAS 2022/2023 Grand Challenge on Respiratory Sound Classification) as an
`evaluate` metric.

The computation is `resp_audio_hf.benchmark.metrics.sprsound_scores`; the task's class ids come from
`resp_audio_hf.data.corpora.sprsound_challenge.CHALLENGE_TASKS` (the organisers' `scripts/test.py`). This module only
adapts them to `evaluate`.
"""

import datasets

from resp_audio_hf.benchmark.metrics import sprsound_scores
from resp_audio_hf.data.corpora.sprsound_challenge import challenge_task
from resp_audio_hf.metrics import opera_metric  # the module: see its docstring

SPRSOUND_CITATION = """
@inproceedings{zhang2022grand,
  title = {Grand Challenge on Respiratory Sound Classification},
  author = {Zhang, Qing and others},
  booktitle = {IEEE Biomedical Circuits and Systems Conference (BioCAS)},
  pages = {1--5},
  year = {2022}
}
@article{zhang2022sprsound,
  title = {{SPRSound}: Open-Source {SJTU} Paediatric Respiratory Sound Database},
  author = {Zhang, Qing and others},
  journal = {IEEE Transactions on Biomedical Circuits and Systems},
  volume = {16},
  number = {5},
  pages = {867--881},
  year = {2022}
}
"""


class SprsoundScore(opera_metric.OperaMetric):
    DESCRIPTION = """
    The score of the SPRSound challenge's classification tasks, from predicted classes: SP = Normal items predicted
    Normal / all Normal items; SE = abnormal items predicted as their own class / all abnormal items;
    AS = (SE + SP) / 2; HS = 2 SE SP / (SE + SP); score = (AS + HS) / 2. Class ids are the organisers' (`scripts/test.py` of
    SJTU-YONGFU-RESEARCH-GRP/SPRSound): 1-1 Normal, Adventitious; 1-2 Normal, Rhonchi, Wheeze, Stridor, Coarse
    Crackle, Fine Crackle, Wheeze+Crackle; 2-1 Normal, Poor Quality, Adventitious; 2-2 Normal, Poor Quality, CAS, DAS,
    CAS & DAS.

    How Poor Quality records enter SE is not stated in the organisers' public material (their READMEs name SE, SP, AS
    and HS only). `poor_quality="excluded"` (default) leaves them out of SE and SP, as the participating team
    HUJH511/BioCAS-2023-Grand_Challenge computes the score (`src/utils/metric.py`); `poor_quality="abnormal"` counts
    them as abnormal items. A Normal or adventitious record predicted Poor Quality is wrong either way.
    """
    INPUTS_DESCRIPTION = """
    Args:
        predictions: per item, the predicted class id.
        references: per item, the true class id.
        task: "1-1", "1-2", "2-1" or "2-2" (also "SPRSound-2-2", "22"; compute keyword).
        poor_quality: "excluded" or "abnormal", for Tasks 2-1 and 2-2 (compute keyword).
    Returns:
        sensitivity, specificity, average_score, harmonic_score, score.
    Examples:
        >>> score = evaluate.load(resp_audio_hf.metrics.metric_path("sprsound_score"))
        >>> score.compute(predictions=[0, 0, 1, 0], references=[0, 0, 1, 1], task="1-1")["score"]
        0.7083333333333333
    """
    FEATURES = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})
    CITATION = SPRSOUND_CITATION

    def _compute(self, predictions, references, task, poor_quality="excluded"):
        challenge = challenge_task(task)
        n_classes = len(challenge.class_names)
        for name, values in (("predictions", predictions), ("references", references)):
            outside = sorted({int(v) for v in values if not 0 <= int(v) < n_classes})
            if outside:
                raise ValueError(f"Task {challenge.task_id} has class ids 0-{n_classes - 1}; {name} hold {outside}.")
        return sprsound_scores(
            references,
            predictions,
            normal_class=challenge.class_names.index("Normal"),
            poor_quality_class=challenge.poor_quality_class,
            poor_quality=poor_quality,
        )
