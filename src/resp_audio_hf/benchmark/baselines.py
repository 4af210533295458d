"""OPERA's published linear-probe results (mean +- std), to show beside a new model's scores.

Source: Zhang et al., "Towards Open Respiratory Acoustic Foundation Models: Pretraining and
Benchmarking", NeurIPS 2024 Datasets & Benchmarks, Tables 4-5; the same numbers are listed in
`res_analysis/calculate_rank.py` of https://github.com/evelyn0414/OPERA at commit 3622310.
T1-T12: AUROC (5 seeds); T13-T19: MAE (mean +- std over the leave-one-subject-out folds).
"""

from __future__ import annotations

OPERA_BASELINE_SOURCE = (
    "Zhang et al., NeurIPS 2024 (OPERA), Tables 4-5; evelyn0414/OPERA@3622310 res_analysis/calculate_rank.py"
)
OPERA_BASELINE_METHODS = ("Opensmile", "VGGish", "AudioMAE", "CLAP", "OPERA-CT", "OPERA-CE", "OPERA-GT")

# One line per task T1..T19, one "mean ± std" per method in OPERA_BASELINE_METHODS order.
_PUBLISHED = """\
0.550 ± 0.015	0.580 ± 0.001	0.549 ± 0.001	0.565 ± 0.001	0.586 ± 0.008	0.551 ± 0.010	0.605 ± 0.001
0.649 ± 0.006	0.557 ± 0.005	0.616 ± 0.001	0.648 ± 0.003	0.701 ± 0.002	0.629 ± 0.006	0.677 ± 0.001
0.571 ± 0.006	0.571 ± 0.003	0.583 ± 0.003	0.611 ± 0.006	0.603 ± 0.005	0.610 ± 0.004	0.613 ± 0.002
0.633 ± 0.012	0.605 ± 0.004	0.659 ± 0.001	0.669 ± 0.002	0.680 ± 0.006	0.665 ± 0.001	0.673 ± 0.001
0.537 ± 0.011	0.538 ± 0.028	0.554 ± 0.004	0.599 ± 0.007	0.578 ± 0.001	0.566 ± 0.008	0.552 ± 0.003
0.677 ± 0.005	0.600 ± 0.001	0.628 ± 0.001	0.665 ± 0.001	0.795 ± 0.001	0.721 ± 0.001	0.735 ± 0.000
0.579 ± 0.043	0.605 ± 0.077	0.886 ± 0.017	0.933 ± 0.005	0.855 ± 0.012	0.872 ± 0.011	0.741 ± 0.011
0.534 ± 0.060	0.507 ± 0.027	0.549 ± 0.022	0.680 ± 0.009	0.685 ± 0.012	0.674 ± 0.013	0.650 ± 0.005
0.753 ± 0.008	0.606 ± 0.003	0.724 ± 0.001	0.742 ± 0.001	0.874 ± 0.000	0.801 ± 0.002	0.825 ± 0.001
0.636 ± 0.082	0.605 ± 0.036	0.616 ± 0.041	0.697 ± 0.004	0.722 ± 0.016	0.741 ± 0.014	0.703 ± 0.016
0.494 ± 0.054	0.590 ± 0.034	0.510 ± 0.021	0.635 ± 0.040	0.625 ± 0.038	0.683 ± 0.007	0.615 ± 0.019
0.772 ± 0.005	0.657 ± 0.002	0.649 ± 0.001	0.702 ± 0.001	0.781 ± 0.000	0.769 ± 0.000	0.742 ± 0.001
0.985 ± 0.743	0.904 ± 0.568	0.900 ± 0.551	0.896 ± 0.542	0.924 ± 0.583	0.848 ± 0.607	0.892 ± 0.618
0.756 ± 0.721	0.839 ± 0.563	0.821 ± 0.590	0.840 ± 0.547	0.837 ± 0.563	0.834 ± 0.581	0.825 ± 0.560
0.141 ± 0.185	0.131 ± 0.146	0.129 ± 0.146	0.134 ± 0.146	0.128 ± 0.140	0.132 ± 0.141	0.128 ± 0.141
0.850 ± 0.592	0.895 ± 0.559	0.833 ± 0.588	0.883 ± 0.560	0.885 ± 0.553	0.761 ± 0.544	0.878 ± 0.550
0.730 ± 0.497	0.842 ± 0.559	0.876 ± 0.561	0.859 ± 0.541	0.780 ± 0.542	0.830 ± 0.561	0.774 ± 0.554
0.138 ± 0.166	0.130 ± 0.145	0.131 ± 0.141	0.137 ± 0.147	0.132 ± 0.140	0.136 ± 0.150	0.130 ± 0.138
2.714 ± 0.902	2.605 ± 0.759	2.641 ± 0.813	2.650 ± 0.947	2.636 ± 0.858	2.525 ± 0.782	2.416 ± 0.885"""


def _parse() -> dict[str, dict[str, dict[str, float]]]:
    table: dict[str, dict[str, dict[str, float]]] = {m: {} for m in OPERA_BASELINE_METHODS}
    for number, line in enumerate(_PUBLISHED.splitlines(), start=1):
        cells = line.split("\t")
        if len(cells) != len(OPERA_BASELINE_METHODS):
            raise AssertionError(f"T{number}: {len(cells)} published values for {len(OPERA_BASELINE_METHODS)} methods")
        for method, cell in zip(OPERA_BASELINE_METHODS, cells):
            mean, std = (float(v) for v in cell.split(" ± "))
            table[method][f"T{number}"] = {"mean": mean, "std": std}
    return table


OPERA_PUBLISHED_RESULTS: dict[str, dict[str, dict[str, float]]] = _parse()
"""`{method: {"T1": {"mean": ..., "std": ...}, ...}}`."""
