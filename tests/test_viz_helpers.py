"""The threshold helpers shared by notebooks 01 and 03 (sslteach.viz.pct, threshold_sweep, plot_threshold_sweep),
checked on hand-computed values."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sslteach.viz import pct, plot_threshold_sweep, threshold_sweep  # noqa: E402


def test_pct_formats_and_marks_missing_values():
    assert pct(0.5) == "50.0%"
    assert pct(0.123, ".0%") == "12%"
    assert pct(None) == "n/a"
    assert pct(float("nan"), ".0%") == "n/a"


def test_threshold_sweep_by_hand():
    # four images, two classes: confidences 0.9 (right), 0.6 (wrong), 0.8 (right), 0.55 (right)
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    y = torch.tensor([0, 1, 1, 1])
    rate, acc = threshold_sweep(probs, y, [0.0, 0.58, 0.7, 0.85, 0.95])
    assert rate == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert acc[:4] == pytest.approx([0.75, 2 / 3, 1.0, 1.0])
    assert math.isnan(acc[4])  # nothing passes: the accuracy is undefined


def test_threshold_at_exactly_the_confidence_passes():
    rate, acc = threshold_sweep(torch.tensor([[0.25, 0.75]]), torch.tensor([0]), [0.75])
    assert rate == [1.0] and acc == [0.0]


def test_plot_threshold_sweep_draws_both_curves_and_tau():
    ax = plot_threshold_sweep([0.0, 0.5, 1.0], [1.0, 0.5, 0.0], [0.7, 0.9, float("nan")], tau=0.5)
    assert len(ax.lines) == 3
    assert "tau = 0.50" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(ax.figure)


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    from sslteach.evaluation import confusion_matrix

    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
