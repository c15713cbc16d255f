"""What a claim measures on one run: a number from a :class:`~sslteach.loop.TrainResult`.

* the results' own numbers: ``accuracy``, ``balanced_accuracy``, ``tail_accuracy`` (mean recall of the rare classes of
  a long-tailed split), ``auroc`` (an open-set split's outlier AUROC);
* ``last:<key>``: the last logged value of a diagnostic (``last:mask_rate``, ``last:ent_pred``, ``last:feat_cos``);
* ``mean:<key>``: the mean of a logged diagnostic over every evaluation of the run (``mean:mask_rate``: how many
  unlabeled images a method used over the whole run, not only at its end; undefined values are left out);
* ``extra:<key>``: a method's own summary (``extra:final_outlier_admit``: OpenMatch's last selection);
* a measurement of the trained model, registered here by name (``swwae.reconstruction_error``, ...).

Each metric has a kind that decides how its numbers are written: ``"share"`` (accuracies, rates: in % and points),
``"score"`` (AUROC: three decimals), ``"nats"`` (entropies), ``"value"`` (errors, cosines, pixels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    kind: str  # "share" | "score" | "nats" | "value"
    fn: Callable


REGISTRY: dict[str, Metric] = {}


def metric(name: str, label: str, kind: str = "value"):
    """Register ``fn(result) -> float`` as the metric ``name``."""
    def add(fn):
        REGISTRY[name] = Metric(name, label, kind, fn)
        return fn
    return add


def get(name: str) -> Metric:
    """The metric ``name`` (``last:<key>`` and ``extra:<key>`` are made on the fly)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith("last:"):
        key = name[5:]
        return Metric(name, f"{key} (last logged)", _kind_of(key), lambda r: _num(r.history.last(key)))
    if name.startswith("mean:"):
        key = name[5:]
        return Metric(name, f"{key} (mean over the run)", _kind_of(key), lambda r: _mean_logged(r, key))
    if name.startswith("extra:"):
        key = name[6:]
        return Metric(name, key.replace("_", " "), "share", lambda r: _num(r.extra.get(key)))
    raise ValueError(f"unknown metric {name!r}; valid: {', '.join(REGISTRY)}, last:<logged key>, mean:<logged key>, "
                     f"extra:<key>")


def value(name: str, result) -> float:
    return get(name).fn(result)


def fmt(kind: str):
    """A formatter ``f(v, diff=False)`` for numbers of this kind."""
    def f(v, diff: bool = False) -> str:
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
            return "n/a"
        if kind == "share":
            return f"{100 * v:+.1f} points" if diff else f"{100 * v:.1f} %"
        if kind == "score":
            return f"{v:+.3f}" if diff else f"{v:.3f}"
        if kind == "nats":
            return f"{v:+.2f} nats" if diff else f"{v:.2f} nats"
        return f"{v:+.3g}" if diff else f"{v:.3g}"
    return f


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("nan")


def _kind_of(key: str) -> str:
    """How a logged diagnostic's numbers are written."""
    if key in ("mask_rate", "pseudo_acc", "inlier_recall", "outlier_admit") or key.startswith("test_acc"):
        return "share"
    return "nats" if key.startswith("ent") else "value"


def _mean_logged(r, key: str) -> float:
    vals = [_num(v) for v in r.history.series(key)[1]]
    vals = [v for v in vals if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


# ------------------------------------------------------------------------------------------- the results' numbers
metric("accuracy", "test accuracy", "share")(lambda r: float(r.test_accuracy))
metric("balanced_accuracy", "balanced accuracy", "share")(lambda r: float(r.balanced_accuracy))
metric("tail_accuracy", "tail-class recall", "share")(lambda r: _num(r.tail_accuracy))
metric("auroc", "outlier AUROC", "score")(lambda r: _num(r.auroc))


# ------------------------------------------------------------------------------------------- measurements of a model
def _test_images(result, n: int | None = None) -> torch.Tensor:
    from ..data import load_dataset, to_float

    x = load_dataset(result.dataset).x_test
    return to_float(x[:n] if n else x)


@metric("noisy_student.gain_over_first_teacher", "last student minus first teacher", "share")
def _student_gain(r) -> float:
    rounds = r.extra.get("rounds") or []
    return float(rounds[-1]["test_acc"] - rounds[0]["test_acc"]) if len(rounds) > 1 else float("nan")


@metric("mean_teacher.teacher_minus_student", "teacher minus student accuracy", "share")
def _teacher_gain(r) -> float:
    return _num(r.history.last("test_acc_teacher")) - _num(r.history.last("test_acc"))


@metric("swwae.reconstruction_error", "reconstruction error per pixel (test set)", "value")
def _swwae_recon(r) -> float:
    from ..methods.swwae import reconstruction_error

    return float(reconstruction_error(r.report_model(), _test_images(r)))


def _what_where(r, shift: int) -> dict:
    from ..methods.swwae import what_where_under_shift

    res = what_where_under_shift(r.report_model(), _test_images(r, 500), shifts=(0, 1, 2), layer=1)
    return {k: v[shift] for k, v in res.items() if isinstance(v, (list, tuple))}


@metric("swwae.what_cos_shift2", "cosine of the strongest 'what' under a 2-pixel shift", "value")
def _what_cos(r) -> float:
    return float(_what_where(r, 2)["global_what_cos"])


@metric("swwae.where_shift2", "movement of the 'where' under a 2-pixel shift (pixels)", "value")
def _where_shift(r) -> float:
    return float(_what_where(r, 2)["where_shift"])


@metric("inversion.hidden_energy", "mean squared activation of the hidden layers (test set)", "value")
def _inversion_hidden_energy(r) -> float:
    """The mean over the hidden layers ``l >= 1`` of the mean squared activation of ``h^(l)`` on 1000 test images:
    how large the network's inner representations are (an inner reconstruction term can be lowered by shrinking
    them; ``benchmarks/levers/LEVERS-24.md``)."""
    model = r.report_model().eval()
    x = _test_images(r, 1000).to(next(model.parameters()).device)
    with torch.no_grad():
        _, _, hs = model.layer_inputs(x)
    return float(sum(h.pow(2).mean() for h in hs[1:]) / max(1, len(hs) - 1))


# ------------------------------------------------------------------------------------------- 11 adaptive thresholds
@metric("bottom3_recall", "mean recall of the 3 hardest classes", "share")
def _bottom3_recall(r) -> float:
    """The mean test recall of the run's three worst classes (its own three: the classes a fixed threshold starves
    are the ones a model learns last, and which those are depends on the labeled set)."""
    pc = sorted(float(v) for v in (r.per_class_accuracy or []))
    return sum(pc[:3]) / 3 if len(pc) >= 3 else float("nan")


@metric("early_accuracy", "test accuracy at a fifth of the run", "share")
def _early_accuracy(r) -> float:
    """The reported model's test accuracy at the first evaluation at or after 20 % of the run's steps (FlexMatch's
    claim of a faster convergence: ahead early, not only at the end)."""
    steps, acc = r.history.series("test_acc_report")
    early = [a for s, a in zip(steps, acc) if s >= 0.2 * r.steps]
    return _num(early[0]) if early else float("nan")
