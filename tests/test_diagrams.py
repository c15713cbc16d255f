"""The method diagrams (sslteach.diagrams) draw and carry the labels the notebooks talk about."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sslteach import diagrams  # noqa: E402


def _texts(fig: Figure) -> str:
    out = []
    for ax in fig.axes:
        out.append(ax.get_title())
        out.extend(t.get_text() for t in ax.texts)
    return "\n".join(out).lower()


def _check(fig, *expected):
    assert isinstance(fig, Figure)
    fig.canvas.draw()  # renders (mathtext included) without error
    text = _texts(fig)
    for word in expected:
        assert word.lower() in text, f"{word!r} missing from the diagram's labels"
    plt.close(fig)


def test_fixmatch_pipeline():
    _check(diagrams.fixmatch_pipeline(), "weak view", "strong view", "model", "max prob", "\\tau", "one-hot",
           "pseudo-label", "cross-entropy", "stop-gradient")


def test_consistency_targets():
    fig = diagrams.consistency_targets()
    assert len(fig.axes) == 3
    _check(fig, "Π-model", "Temporal ensembling", "Mean Teacher", "another noisy", "EMA of past predictions",
           "bias correction", "EMA of weights", "teacher")


def test_noisy_student_loop():
    _check(diagrams.noisy_student_loop(), "teacher", "pseudo-labels", "no noise", "noised student", "augment",
           "dropout", "stochastic depth", "labeled", "student becomes teacher")
