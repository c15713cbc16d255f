"""What every method is made of: a configuration dataclass and a ``step``.

A method's configuration fields carry ``metadata`` (``help``, and ``low``/``high``/``step`` for numbers) from which
the command line builds its flags and the widgets their sliders — one source for both.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils import check_choice, check_float, check_int


def param(default, help: str, low=None, high=None, step=None, choices=None, paper=None):
    """A configuration field with the metadata the CLI and the widgets use. ``paper`` notes the paper's value
    where our CPU default differs."""
    meta = {"help": help, "low": low, "high": high, "step": step, "choices": choices, "paper": paper}
    return field(default=default, metadata=meta)


@dataclass
class MethodConfig:
    """Base class of every method's configuration: validates each field against its metadata."""

    def validate(self):
        for f in fields(self):
            v, m = getattr(self, f.name), f.metadata
            if m.get("choices"):
                check_choice(f.name, v, m["choices"])
            elif isinstance(f.default, bool):
                if not isinstance(v, bool):
                    raise ValueError(f"{f.name} must be True or False; got {v!r}")
            elif isinstance(f.default, int):
                check_int(f.name, v, m.get("low"), m.get("high"))
            elif isinstance(f.default, float):
                check_float(f.name, v, m.get("low"), m.get("high"))
        return self


class Method:
    """Base class. Subclasses set ``name``, ``Config``, ``summary``; implement :meth:`step`; and may override
    :meth:`setup` (build a teacher, a memory bank ...), :meth:`after_step` (EMA updates) and :meth:`eval_models`
    (extra models whose test accuracy is logged, e.g. ``{"teacher": ...}``). ``report`` names the model whose
    accuracy is the run's headline number (``None``: the trainer's EMA model, or the model itself).

    The class attributes below are the method's facts, in one place: the command line, the panels, the comparison,
    the book and the benchmarks read them from here (nothing else needs editing when a method is added).
    """

    name = "method"
    #: The method's name as its paper writes it ("FixMatch", "Mean Teacher"), for sentences and figures.
    title = ""
    summary = ""
    paper = ""
    Config = MethodConfig
    report: str | None = None
    #: Loop settings (:class:`~sslteach.train.TrainConfig` fields) this method defaults to, e.g. ``{"steps": 600}``
    #: for a method whose step costs more; options given to ``train(...)`` override them.
    train_defaults: dict = {}
    #: The paper's year (``None`` for the baseline), its family of ideas, and the notebook that teaches it.
    year: int | None = None
    family: str = "other"
    notebook: str = ""
    #: The split the method was designed for: ``"balanced"``, ``"long_tailed"`` (CoSSL) or ``"open_set"``
    #: (OpenMatch). ``builds_on``: the method it extends, the reference its contribution is measured against.
    designed_for: str = "balanced"
    builds_on: str | None = None
    #: What ``step`` logs besides ``loss_x`` / ``loss_u`` / ``mask_rate`` / ``pseudo_acc``, for the live plot.
    diagnostics: tuple = ()
    #: The attributes that hold learned state (modules, :class:`~sslteach.evaluation.EMA` copies, tensors): what the
    #: run cache stores and restores (:meth:`state_tensors`). Anything else is rebuilt by :meth:`setup`.
    state: tuple = ()
    #: Tensors a method keeps that are per-step scratch or diagnostics, not learned state (not stored).
    transient: tuple = ()
    #: One-thread CPU milliseconds per step at the comparison's scale on digits (``compare.COMPARISON_SCALE``),
    #: for time estimates before a grid runs; ``None``: not measured (``compare.DEFAULT_MS_PER_STEP``).
    cpu_ms_per_step: float | None = None

    def __init__(self, config: MethodConfig | None = None, **overrides):
        if config is None:
            try:
                config = self.Config(**overrides)
            except TypeError as e:
                valid = ", ".join(f.name for f in fields(self.Config)) or "none"
                raise ValueError(f"unknown option for method {self.name!r} ({e}); its options: {valid}") from None
        elif overrides:
            raise ValueError("pass either a config object or keyword options, not both")
        self.config = config.validate()

    # ---- what the trainer calls
    def unlabeled_ratio(self) -> float:
        """mu: unlabeled images per labeled image in a batch (0: the method uses no unlabeled data)."""
        return float(getattr(self.config, "mu", 0))

    def build_model(self, input_shape: tuple, num_classes: int, train_config) -> nn.Module | None:
        """A method that needs its own network (an encoder with a mirrored decoder, say) builds it here from the
        loop settings (``train_config.width``, ``.dropout``, ``.model``); ``None`` (the default): the loop builds
        the usual one (:func:`sslteach.models.make_model`). It must return ``(logits, features)`` like the others."""
        return None

    def setup(self, model: nn.Module, split, ctx) -> None:
        """Called once before training, with the model already on its device."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that live outside the model (a projection head ...)."""
        return []

    def step(self, model: nn.Module, batch, ctx) -> tuple[torch.Tensor, dict]:
        """One training step: return the total loss (a scalar with a graph) and a dict of scalar diagnostics."""
        raise NotImplementedError

    def after_step(self, model: nn.Module, ctx) -> None:
        """Called after each optimizer step (EMA teachers update here)."""

    def eval_models(self) -> dict[str, nn.Module]:
        return {}

    def extra_results(self) -> dict:
        """A method's own summary, merged into ``result.extra`` at the end (Noisy Student: its rounds)."""
        return {}

    def outlier_scores(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Open-set splits: a score per image, high = probably an unknown class (AUROC is computed from it).
        The default is ``1 - max softmax`` of ``model`` (the baseline score of any classifier); OpenMatch overrides
        it with its one-vs-all detectors. ``x`` is a batch of unaugmented images on the model's device."""
        from ..evaluation import max_softmax_outlier_score, predict_logits

        return max_softmax_outlier_score(predict_logits(model, x))

    def config_dict(self) -> dict:
        return asdict(self.config)

    # ---- the run cache: a method's learned state as a flat dict of tensors
    def _state_items(self) -> dict:
        """``{attribute: module or tensor}`` for the attributes named in :attr:`state` that are set."""
        from ..evaluation import EMA

        out = {}
        for k in self.state:
            v = getattr(self, k, None)
            if isinstance(v, EMA):
                v = v.module
            if isinstance(v, (nn.Module, torch.Tensor)):
                out[k] = v
            elif v is not None:
                raise TypeError(f"{type(self).__name__}.state names {k!r}, a {type(v).__name__}: the run cache "
                                "stores modules, EMA copies and tensors only")
        return out

    def state_tensors(self, skip=()) -> dict[str, torch.Tensor]:
        """Everything :meth:`load_state_tensors` needs to rebuild the trained method after :meth:`setup`: the
        attributes of :attr:`state`. Tensors that share memory with one of ``skip`` (the split's data, which
        :meth:`setup` hands over again) are left out."""
        data = {t.data_ptr() for t in skip if isinstance(t, torch.Tensor) and t.numel()}
        out = {}
        for k, v in self._state_items().items():
            if isinstance(v, nn.Module):
                out.update({f"{k}.{n}": t for n, t in v.state_dict().items()})
            elif not (v.numel() and v.data_ptr() in data):
                out[k] = v
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Put the tensors of :meth:`state_tensors` back (called on a freshly set-up method)."""
        for k, v in self._state_items().items():
            if isinstance(v, nn.Module):
                sub = {n[len(k) + 1:]: t for n, t in tensors.items() if n.startswith(k + ".")}
                v.load_state_dict(sub)
            elif k in tensors:
                setattr(self, k, tensors[k].to(device=v.device, dtype=v.dtype))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config_dict().items())
        return f"{type(self).__name__}({args})"


def supervised_loss(logits_x_lb: torch.Tensor, y_lb: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the labeled batch, (1 / B) sum_b H(y_b, p_model(y | x_b)). Shapes ``[B, C]``, ``[B]``."""
    return F.cross_entropy(logits_x_lb, y_lb)


def pseudo_label_accuracy(pseudo: torch.Tensor, y_true: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor:
    """Share of the pseudo-labels that pass the mask and equal the hidden true label (NaN when none pass).
    A diagnostic only: the true labels of unlabeled data never enter a loss."""
    if y_true is None:
        return torch.tensor(float("nan"))
    m = mask > 0
    if not m.any():
        return torch.tensor(float("nan"))
    return (pseudo[m] == y_true[m]).float().mean()
