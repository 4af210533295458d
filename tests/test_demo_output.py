"""The demo's report is the same every run and its chart shows every bar: label ties in a fixed order, probability
bars drawn from 0, no title cut off."""

from __future__ import annotations

import random

import pytest

from resp_audio_hf.benchmark import demo


def test_top_label_ties_are_ordered_by_label_whatever_the_input_order():
    labels = ["Speech"] * 3 + ["Cough"] * 5 + ["Throat clearing"] * 3 + ["Sneeze"] * 3 + ["Music"]
    expected = {"Cough": 5, "Sneeze": 3, "Speech": 3, "Throat clearing": 3, "Music": 1}
    for seed in range(5):
        shuffled = random.Random(seed).sample(labels, len(labels))
        assert list(demo.top_label_counts(shuffled).items()) == list(expected.items())


def test_the_chart_draws_probability_bars_from_zero_and_keeps_its_title_inside(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    captured = {}

    from resp_audio_hf.data import file_io

    def keep(fig, path, dpi):
        fig.canvas.draw()
        captured["fig"] = fig
        return tmp_path / "unused.png"

    monkeypatch.setattr(file_io, "atomic_save_figure", keep)
    results = {"tagging": {"respiratory": {"Cough": {"mean_probability": 0.4}, "Sneeze": {"mean_probability": 0.05}}}}
    demo._figure(results, tmp_path / "results.png")
    fig = captured["fig"]
    bars = [patch for patch in fig.axes[0].patches if patch.get_width() > 0]
    assert sorted((bar.get_x(), round(bar.get_width(), 3)) for bar in bars) == [(0.0, 0.05), (0.0, 0.4)]
    renderer = fig.canvas.get_renderer()
    figure_box = fig.bbox
    for axes in fig.axes:
        title = axes.title.get_window_extent(renderer)
        assert figure_box.x0 <= title.x0 and title.x1 <= figure_box.x1, axes.title.get_text()
