"""One training loop for every method.

``train("fixmatch", dataset="digits", labels_per_class=2)`` builds the split, the model and the optimizer, then
runs :class:`Trainer`: SGD with Nesterov momentum and FixMatch's cosine learning-rate decay, mixed precision on
CUDA, an EMA copy of the weights for evaluation, evaluation every ``eval_every`` steps, a :class:`History` of every
loss term and diagnostic, callbacks, and a progress bar. A method only supplies its ``step`` (see
:mod:`sslteach.methods.base`).

Stopping early — the Stop button (:meth:`Trainer.stop`), a callback returning ``"stop"``, or Ctrl-C — ends the
loop cleanly: the model, the EMA model and the history so far are kept, and ``result.interrupted`` is True.
"""
from __future__ import annotations

import json
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from . import augment as augment_mod
from .cache import FORMAT as CACHE_FORMAT
from .cache import RunCache, code_digest, make_key, split_digest
from .cache import default_dir as cache_default_dir
from .data import DATASETS, IndexSampler, Split, SplitConfig, load_dataset, make_split, split_settings, to_float
from .evaluation import EMA, auroc, balanced_accuracy, eval_batch_size, per_class_accuracy, predict_logits
from .presets import PRESETS
from .evaluation import evaluate, predict  # noqa: F401 - re-exported: sslteach.train.evaluate etc. still work
from .models import MODELS, make_model
from .utils import check_choice, check_float, check_int, describe_device, get_device, seed_everything


@dataclass
class TrainConfig:
    """Settings shared by every method. Paper values are FixMatch's (Sohn et al., 2020); values marked CPU are
    smaller so a run finishes in well under a minute on 2 CPU cores."""

    steps: int = 1000  # optimizer steps (paper: 2^20; CPU)
    batch_size: int = 32  # labeled images per step, B (paper: 64; CPU)
    lr: float = 0.03  # SGD learning rate (paper)
    momentum: float = 0.9  # Nesterov momentum (paper)
    weight_decay: float = 5e-4  # on weights, not on biases or BatchNorm (paper)
    cosine: bool = True  # lr * cos(7 pi k / (16 K)) (paper)
    ema_decay: float = 0.99  # EMA of the weights used for evaluation; 0 turns it off (paper 0.999 over 2^20 steps)
    eval_every: int = 50  # steps between evaluations
    eval_size: int = 2000  # test images used at each evaluation during training (all of them at the end)
    cutout: float = 0.5  # side of the strong view's Cutout square, as a share of the image side (paper: 0.5)
    model: str = "auto"  # "auto" (MLP for points, small CNN for images) | "mlp" | "cnn" | "wrn28_2"
    width: int = 32  # channels of the small CNN's first stage (digits: 16, see DATASET_DEFAULTS)
    dropout: float = 0.0  # dropout before the classifier
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA, then MPS, then CPU) | "cpu" | "cuda" | "mps"
    amp: bool = True  # mixed precision (bfloat16 / float16) on CUDA; ignored elsewhere
    progress: bool = True  # tqdm progress bar

    def validate(self) -> "TrainConfig":
        check_int("steps", self.steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_float("lr", self.lr, 0.0)
        check_float("momentum", self.momentum, 0.0, 1.0)
        check_float("weight_decay", self.weight_decay, 0.0)
        check_float("ema_decay", self.ema_decay, 0.0, 1.0)
        check_int("eval_every", self.eval_every, 1)
        check_int("eval_size", self.eval_size, 1)
        check_float("cutout", self.cutout, 0.0, 1.0)
        check_choice("model", self.model, MODELS)
        check_int("width", self.width, 1)
        check_float("dropout", self.dropout, 0.0, 1.0)
        check_int("seed", self.seed, 0)
        get_device(self.device)
        return self


class History:
    """Everything a run logged: one record (a dict) per evaluation, with the mean of each loss term and diagnostic
    over the steps since the previous one, the test accuracies, the learning rate and the wall time."""

    def __init__(self):
        self.records: list[dict] = []

    def append(self, record: dict) -> None:
        self.records.append(record)

    def __len__(self):
        return len(self.records)

    def keys(self) -> list[str]:
        out = []
        for r in self.records:
            out += [k for k in r if k not in out]
        return out

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` for one key, skipping records that lack it."""
        pts = [(r["step"], r[key]) for r in self.records if key in r and r[key] is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    def last(self, key: str, default=None):
        for r in reversed(self.records):
            if key in r and r[key] is not None:
                return r[key]
        return default

    def to_list(self) -> list[dict]:
        return [dict(r) for r in self.records]


@dataclass
class Batch:
    """One step's data, already on the device, *not yet augmented* (methods pick their own views).

    ``y_ulb`` are the hidden true labels of the unlabeled images: for diagnostics (pseudo-label accuracy) only.
    ``idx_ulb`` are their positions in the unlabeled set (temporal ensembling keeps per-image targets);
    ``idx_lb`` the labeled images' positions in the labeled set (a labeled memory bank, as in SimMatch).
    """

    x_lb: torch.Tensor
    y_lb: torch.Tensor
    x_ulb: torch.Tensor | None = None
    y_ulb: torch.Tensor | None = None
    idx_ulb: torch.Tensor | None = None
    idx_lb: torch.Tensor | None = None


@dataclass
class Context:
    """What a method's step may look at besides the batch."""

    aug: augment_mod.Augmenter
    step: int
    total_steps: int
    device: torch.device
    num_classes: int
    num_unlabeled: int
    autocast: Callable = nullcontext

    @property
    def progress(self) -> float:
        """Fraction of training done, t / T, in [0, 1]."""
        return self.step / max(1, self.total_steps)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model(s), the history and the numbers that go into a report.

    ``test_accuracy`` is the accuracy of the reported model (the EMA copy, or the method's own choice such as Mean
    Teacher's teacher) on the whole test set — on an open-set split, on its *known* classes (closed-set accuracy).
    ``per_class_accuracy`` is each class's recall, ``balanced_accuracy`` their mean; ``auroc`` (open-set splits
    only) is how well the method's outlier score tells unknown-class test images from known ones. ``split`` holds
    the split's settings; ``from_cache`` says the run was read from the run cache instead of trained.
    """

    method: str
    dataset: str
    labels_per_class: int | None
    steps: int
    steps_done: int
    seed: int
    device: str
    test_accuracy: float
    wall_seconds: float
    history: History
    model: nn.Module
    ema_model: nn.Module | None
    interrupted: bool
    method_config: dict
    train_config: dict
    extra: dict = field(default_factory=dict)
    method_obj: object = None
    per_class_accuracy: list = field(default_factory=list)
    balanced_accuracy: float = float("nan")
    auroc: float | None = None
    split: dict = field(default_factory=dict)
    from_cache: bool = False

    def to_dict(self) -> dict:
        """JSON-ready summary (no tensors, no model)."""
        return {"method": self.method, "dataset": self.dataset, "labels_per_class": self.labels_per_class,
                "steps": self.steps, "steps_done": self.steps_done, "seed": self.seed, "device": self.device,
                "test_accuracy": self.test_accuracy, "balanced_accuracy": self.balanced_accuracy,
                "per_class_accuracy": self.per_class_accuracy, "auroc": self.auroc, "split": self.split,
                "wall_seconds": self.wall_seconds, "interrupted": self.interrupted, "from_cache": self.from_cache,
                "method_config": self.method_config, "train_config": self.train_config, "extra": self.extra,
                "history": self.history.to_list()}

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, default=_jsonable))

    def report_model(self) -> nn.Module:
        """The model whose accuracy is reported (the EMA copy, a teacher, a method's own test-time model)."""
        key = self.extra.get("report", "test_acc")
        name = key[len("test_acc_"):] if key.startswith("test_acc_") else ""
        if name and name != "ema" and self.method_obj is not None:
            models = self.method_obj.eval_models()
            if name in models:
                return models[name]
        if name == "ema" and self.ema_model is not None:
            return self.ema_model
        return self.model

    def summary(self) -> str:
        stop = " (stopped early)" if self.interrupted else ""
        cached = " [from the run cache]" if self.from_cache else ""
        budget = (f"{self.labels_per_class} labels/class" if self.split.get("kind", "balanced") == "balanced"
                  else f"{self.split.get('kind')} split")
        extra = ""
        if self.split.get("kind") == "long_tailed":
            extra = f", balanced accuracy {self.balanced_accuracy:.2%}"
        if self.auroc is not None:
            extra = f" (known classes), outlier AUROC {self.auroc:.3f}"
        return (f"{self.method} on {self.dataset} ({budget}, seed {self.seed}): "
                f"test accuracy {self.test_accuracy:.2%}{extra} after {self.steps_done} steps in "
                f"{self.wall_seconds:.1f}s on {self.device}{stop}{cached}")


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


def _param_groups(model: nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_lr_factor(step: int, total: int) -> float:
    """FixMatch's schedule: lr_k = lr * cos(7 pi k / (16 K)) — ends at cos(7 pi / 16), about 0.2 of the start."""
    return math.cos(7 * math.pi * step / (16 * total))


class Trainer:
    """Runs one method on one split. ``Trainer(method, split, config).fit()`` returns a :class:`TrainResult`.

    Callbacks: ``trainer.add_callback("on_eval", fn)`` (also ``"on_step"``, ``"on_train_end"``); ``fn(trainer,
    record)`` may return ``"stop"`` to end training. ``trainer.stop()`` may be called from another thread.
    """

    EVENTS = ("on_step", "on_eval", "on_train_end")

    def __init__(self, method, split: Split, config: TrainConfig | None = None, model: nn.Module | None = None):
        self.config = (config or TrainConfig()).validate()
        self.method = method
        self.split = split
        self.device = get_device(self.config.device)
        self.callbacks: dict[str, list[Callable]] = {e: [] for e in self.EVENTS}
        self._stop = threading.Event()
        self.history = History()
        self.model = model
        self.ema: EMA | None = None
        self.step = 0

    def add_callback(self, event: str, fn: Callable) -> None:
        check_choice("event", event, self.EVENTS)
        self.callbacks[event].append(fn)

    def stop(self) -> None:
        """Ask the loop to end after the current step (thread-safe)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def _fire(self, event, record=None):
        for fn in self.callbacks[event]:
            if fn(self, record) == "stop":
                self.stop()

    def _autocast(self):
        if self.device.type == "cuda" and self.config.amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return lambda: torch.autocast("cuda", dtype=dtype)
        return nullcontext

    def fit(self) -> TrainResult:
        cfg, method = self.config, self.method
        seed_everything(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        split = self.split.to(self.device)
        ds = split.dataset
        if self.model is None:
            self.model = build_model(method, cfg, ds.input_shape, split.num_classes)
        model = self.model.to(self.device)
        model.train()
        params = _param_groups(model, cfg.weight_decay)
        autocast = self._autocast()
        ctx = Context(augment_mod.for_dataset(ds, cutout=cfg.cutout), 0, cfg.steps, self.device,
                      split.num_classes, len(split.y_ulb), autocast)
        method.setup(model, split, ctx)
        extra_params = method.extra_parameters()
        if extra_params:
            params += _param_groups(nn.ParameterList(extra_params), cfg.weight_decay)
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, (lambda k: cosine_lr_factor(k, cfg.steps)) if cfg.cosine else (lambda k: 1.0))
        scaler = torch.amp.GradScaler("cuda") if (
            self.device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()) else None
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        lb_sampler = IndexSampler(len(split.y_lb), cfg.batch_size, g, self.device)
        mu = method.unlabeled_ratio()
        ulb_sampler = IndexSampler(len(split.y_ulb), int(mu * cfg.batch_size), g, self.device) if mu > 0 else None
        eval_idx = torch.randperm(len(split.y_test), generator=g)[: cfg.eval_size].to(self.device)
        x_eval, y_eval = split.x_test[eval_idx], split.y_test[eval_idx]

        window: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        interrupted = False
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, desc=method.name, leave=False, dynamic_ncols=True)

        open_set = split.kind == "open_set" and isinstance(split.info.get("x_test_open"), torch.Tensor)
        if open_set:
            x_open_all, y_open_all = split.info["x_test_open"], split.info["y_test_open"]
            open_idx = torch.randperm(len(y_open_all), generator=g)[: cfg.eval_size].to(self.device)
            x_open_eval, y_open_eval = x_open_all[open_idx], y_open_all[open_idx]
        tail = split.info.get("tail_classes") if split.kind == "long_tailed" else None

        eval_seconds = [0.0]  # time spent in the evaluations during training (the final one not included)

        def record_eval(final=False):
            t_eval = time.perf_counter()
            x, y = (split.x_test, split.y_test) if final else (x_eval, y_eval)
            rec = {"step": self.step, "time": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"]}
            for k, v in window.items():
                vals = [u for u in v if not math.isnan(u)]
                rec[k] = float(np.mean(vals)) if vals else None
            window.clear()
            report_key = self._report_key(method)
            models = {"test_acc": model}
            if self.ema is not None:
                models["test_acc_ema"] = self.ema.module
            models.update({f"test_acc_{name}": m for name, m in method.eval_models().items()})
            preds = {}
            for key, m in models.items():
                preds[key] = predict_logits(m, x, autocast=autocast).argmax(1)
                rec[key] = (preds[key] == y).float().mean().item() if len(y) else 0.0
            rec["test_acc_report"] = rec[report_key]
            report_model = models[report_key]
            if tail is not None:  # long-tailed split: the rare classes' mean recall, and the others'
                pc = per_class_accuracy(preds[report_key], y, split.num_classes)
                rec["test_acc_tail"] = balanced_accuracy([pc[c] for c in tail])
                rec["test_acc_head"] = balanced_accuracy([v for c, v in enumerate(pc) if c not in tail])
                rec["test_bal_acc"] = balanced_accuracy(pc)
            if open_set:  # open-set split: how well the outlier score finds the unknown classes
                xo, yo = (x_open_all, y_open_all) if final else (x_open_eval, y_open_eval)
                scores = _batched_scores(method, report_model, xo)
                rec["test_auroc"] = auroc(scores, yo < 0)
            if final:
                self._final_pred = preds[report_key]
            rec["final"] = final
            if not final:
                eval_seconds[0] += time.perf_counter() - t_eval
            self.history.append(rec)
            self._fire("on_eval", rec)
            return rec

        try:
            while self.step < cfg.steps and not self.stop_requested:
                ctx.step = self.step
                i_lb = next(lb_sampler)
                batch = Batch(to_float(split.x_lb[i_lb]), split.y_lb[i_lb], idx_lb=i_lb)
                if ulb_sampler is not None:
                    i_ulb = next(ulb_sampler)
                    batch.x_ulb, batch.y_ulb, batch.idx_ulb = to_float(split.x_ulb[i_ulb]), split.y_ulb[i_ulb], i_ulb
                with autocast():
                    loss, logs = method.step(model, batch, ctx)
                opt.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss.backward()
                    opt.step()
                sched.step()
                self.step += 1
                if self.ema is not None:
                    self.ema.update(model)
                method.after_step(model, ctx)
                logs = {"loss": loss.detach(), **logs}
                for k, v in logs.items():
                    window.setdefault(k, []).append(float(v))
                self._fire("on_step", logs)
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    rec = record_eval()
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec.get('loss') or 0:.3f}", acc=f"{rec['test_acc_report']:.3f}")
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()
        interrupted = interrupted or self.step < cfg.steps
        try:
            rec = record_eval(final=True)
        except KeyboardInterrupt:  # Ctrl-C again during the final evaluation: keep what we have, unevaluated
            interrupted = True
            rec = dict(self.history.records[-1]) if self.history.records else {"test_acc_report": float("nan")}
            self._final_pred = None
        wall = time.perf_counter() - t0
        pred = getattr(self, "_final_pred", None)
        pc = per_class_accuracy(pred, split.y_test, split.num_classes) if pred is not None else []
        result = TrainResult(
            method=method.name, dataset=ds.name, labels_per_class=split.info.get("labels_per_class"),
            steps=cfg.steps, steps_done=self.step, seed=cfg.seed, device=self.device.type,
            test_accuracy=rec["test_acc_report"], wall_seconds=wall, history=self.history, model=model,
            ema_model=self.ema.module if self.ema is not None else None, interrupted=interrupted,
            method_config=method.config_dict(), train_config=asdict(cfg),
            extra={"report": self._report_key(method), "device_name": describe_device(self.device),
                   "split": repr(self.split), "eval_seconds": eval_seconds[0]}, method_obj=method,
            per_class_accuracy=pc, balanced_accuracy=balanced_accuracy(pc) if pc else float("nan"),
            auroc=rec.get("test_auroc") if open_set else None, split=split_settings(self.split))
        result.extra.update(method.extra_results())  # a method's own summary (Noisy Student's rounds)
        self._fire("on_train_end", rec)
        return result

    def _report_key(self, method) -> str:
        report = getattr(method, "report", None)
        if report:
            return f"test_acc_{report}"
        return "test_acc_ema" if self.ema is not None else "test_acc"


def build_model(method, config: TrainConfig, input_shape: tuple, num_classes: int) -> nn.Module:
    """The network a run trains: the method's own (:meth:`~sslteach.methods.base.Method.build_model`) or the
    usual one for the data (:func:`~sslteach.models.make_model`)."""
    own = method.build_model(tuple(input_shape), num_classes, config)
    return own if own is not None else make_model(config.model, input_shape, num_classes, config.dropout, config.width)


def _batched_scores(method, model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The method's outlier scores for ``x``, batch by batch, on the CPU."""
    batch_size = batch_size or eval_batch_size(x.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [method.outlier_scores(model, to_float(x[i: i + batch_size])).float().cpu()
               for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


#: Loop settings per dataset, used where neither the caller nor the method sets them (printed by the CLI).
#: Digits: 8x8 images need no more than 16 channels (measured, FixMatch with 2 labels per class, 1000 steps, seeds
#: 0-2: width 16 92.4 % in ~37 ms of one core per step, width 32 95.9 % in ~100 ms; supervised 74.5 vs 72.4 %).
_REAL = PRESETS["real_images"]
#: Fashion-MNIST: the settings of the "real images" preset (sslteach.presets; measured in benchmarks/RESULTS.md);
#: ``method_options`` are method knobs applied to that method only (e.g. FixMatch's mu).
DATASET_DEFAULTS: dict[str, dict] = {
    "digits": {"width": 16},
    "fashion_mnist": {"width": _REAL.width, "batch_size": _REAL.batch_size, "steps": _REAL.steps,
                      **_REAL.train_options, "method_options": _REAL.method_options},
}
SPLIT_OPTIONS = tuple(f.name for f in fields(SplitConfig) if f.name not in ("kind", "labels_per_class"))


def resolve_options(method_cls, dataset_name: str | None, options: dict) -> tuple[dict, dict, dict, dict]:
    """Sort ``train(...)`` options into (loop settings, split settings, method settings) and say which loop
    settings came from a default other than :class:`TrainConfig`'s: the method's ``train_defaults`` (first) or the
    dataset's :data:`DATASET_DEFAULTS`. Options given explicitly always win."""
    train_fields = {f.name for f in fields(TrainConfig)}
    tcfg = {k: v for k, v in options.items() if k in train_fields}
    scfg = {k: v for k, v in options.items() if k in SPLIT_OPTIONS}
    mcfg = {k: v for k, v in options.items() if k not in train_fields and k not in SPLIT_OPTIONS}
    applied = {}
    ds_defaults = DATASET_DEFAULTS.get(dataset_name or "", {})
    loop_defaults = {k: v for k, v in ds_defaults.items() if k != "method_options"}
    for source in (loop_defaults, getattr(method_cls, "train_defaults", {}) or {}):
        for k, v in source.items():
            if k not in tcfg:
                applied[k] = v
    knobs = (ds_defaults.get("method_options") or {}).get(getattr(method_cls, "name", ""), {})
    knobs = {k: v for k, v in knobs.items() if k not in options}
    applied.update(knobs)
    return {**{k: v for k, v in applied.items() if k not in knobs}, **tcfg}, scfg, {**knobs, **mcfg}, applied


def train(method="supervised", dataset="digits", labels_per_class: int = 2, split: Split | str | None = None,
          callbacks: dict | None = None, trainer_hook: Callable | None = None, network: nn.Module | None = None,
          cache: bool | str | Path | None = None, **options) -> TrainResult:
    """Train ``method`` (a name or a method object) on ``dataset`` with ``labels_per_class`` labels per class.

    ``options`` are :class:`TrainConfig` fields (``steps``, ``seed``, ``device``, ...), split settings
    (``imbalance_ratio``, ``n_max``, ``m_max``, ``known_classes``, ... see :class:`~sslteach.data.SplitConfig`) and
    the method's own configuration fields (``tau``, ``lambda_u``, ...), sorted automatically::

        result = train("fixmatch", "digits", labels_per_class=2, steps=500, tau=0.95, seed=1)
        result.test_accuracy, result.history.series("mask_rate")
        train("fixmatch", "digits", split="long_tailed", imbalance_ratio=50)   # CoSSL's setting, scaled down
        train("fixmatch", "digits", split="open_set", known_classes=6)          # OpenMatch's setting

    ``split`` is a kind (``"balanced"``, the default, ``"long_tailed"``, ``"open_set"``) or a ready
    :class:`~sslteach.data.Split` (its seed is the split's own; ``seed`` then seeds the training only).

    ``cache``: reuse a finished run with the same settings from the run cache (:mod:`sslteach.cache`) and store new
    ones there. ``None`` (default): on, in ``$SSLTEACH_CACHE`` or ``~/.cache/sslteach/runs``, unless
    ``SSLTEACH_CACHE=off``; ``False``: train and store nothing; a path: that folder. Runs with ``network=`` or
    stopped early are never stored.

    ``callbacks`` maps an event name to a function (see :class:`Trainer`; a cached run replays its evaluations to
    ``on_eval``); ``trainer_hook(trainer)`` is called before training starts (the widgets use it to keep a handle
    for the Stop button). ``network`` trains a given ``nn.Module`` (returning ``(logits, features)``) instead of
    building one from ``model``.
    """
    from .methods import METHODS, get_method

    ds_name = dataset if isinstance(dataset, str) else getattr(dataset, "name", None)
    if isinstance(split, Split):
        ds_name = split.dataset.name
    if isinstance(method, str):
        check_choice("method", method, METHODS)
        method_cls = METHODS[method]
    else:
        method_cls = type(method)
    tcfg, scfg, mcfg, _ = resolve_options(method_cls, ds_name, options)
    if not isinstance(method, str):  # a method object brings its own knobs: no dataset default for them
        mcfg = {k: v for k, v in mcfg.items() if k in options}
    if isinstance(method, str):
        method = get_method(method, **mcfg)
    elif mcfg:
        raise ValueError(f"options {sorted(mcfg)} are not TrainConfig or split settings; pass them to the method "
                         f"object")
    config = TrainConfig(**tcfg).validate()
    if not isinstance(split, Split):
        if isinstance(dataset, str):
            check_choice("dataset", dataset, DATASETS)
        split_cfg = SplitConfig(kind=split or "balanced", labels_per_class=labels_per_class, **scfg).validate()
        split = make_split(load_dataset(dataset) if isinstance(dataset, str) else dataset, split_cfg,
                           seed=config.seed)
    elif scfg:
        raise ValueError(f"split settings {sorted(scfg)} given together with a ready Split; build the split with them")

    store = None if network is not None else _cache_for(cache)
    key = None
    if store is not None:
        key = make_key(_cache_spec(method, config, split))
        hit = _from_cache(store, key, method, config, split, callbacks)
        if hit is not None:
            return hit

    def run() -> TrainResult:
        trainer = Trainer(method, split, config, model=network)
        for event, fn in (callbacks or {}).items():
            trainer.add_callback(event, fn)
        if trainer_hook is not None:
            trainer_hook(trainer)
        return trainer.fit()

    if store is None:
        return run()
    with store.lock(key):  # another process training the same run: wait for it, then read its result
        hit = _from_cache(store, key, method, config, split, callbacks)
        if hit is not None:
            return hit
        result = run()
        if not result.interrupted:
            _to_cache(store, key, result, split)
    return result


# ------------------------------------------------------------------------------------------------- the run cache
def _cache_for(cache) -> RunCache | None:
    if cache is False:
        return None
    if cache is None or cache is True:
        root = cache_default_dir()
        if root is None:
            if cache is True:
                raise ValueError("cache=True but SSLTEACH_CACHE turns the run cache off; unset it or pass a folder")
            return None
        return RunCache(root)
    return RunCache(cache)


def _cache_spec(method, config: TrainConfig, split: Split) -> dict:
    """Everything that decides a run's result (see :mod:`sslteach.cache`)."""
    tc = asdict(config)
    for k in ("progress", "device"):
        tc.pop(k)
    return {"format": CACHE_FORMAT, "method": f"{type(method).__module__}.{type(method).__qualname__}",
            "method_name": method.name, "method_config": method.config_dict(), "train_config": tc,
            "device": get_device(config.device).type, "dataset": split.dataset.name,
            "split": {k: v for k, v in split_settings(split).items()}, "split_data": split_digest(split),
            "code": code_digest(), "torch": torch.__version__}


def _to_cache(store: RunCache, key: str, result: TrainResult, split: Split) -> None:
    data = [split.x_lb, split.y_lb, split.x_ulb, split.y_ulb, split.x_test, split.y_test,
            *(v for v in split.info.values() if isinstance(v, torch.Tensor))]
    tensors = {f"model.{k}": v for k, v in result.model.state_dict().items()}
    if result.ema_model is not None:
        tensors.update({f"ema.{k}": v for k, v in result.ema_model.state_dict().items()})
    if result.method_obj is not None:
        tensors.update({f"method.{k}": v for k, v in result.method_obj.state_tensors(skip=data).items()})
    try:
        store.store(key, json.loads(json.dumps(result.to_dict(), default=_jsonable)), tensors)
    except OSError as e:  # a full disk or a read-only home must not lose the run that was just trained
        import warnings

        warnings.warn(f"sslteach run cache: could not store the run in {store.root} ({e})", stacklevel=3)


def _from_cache(store: RunCache, key: str, method, config: TrainConfig, split: Split,
                callbacks: dict | None) -> TrainResult | None:
    t0 = time.perf_counter()
    loaded = store.load(key)
    if loaded is None:
        return None
    rec, tensors = loaded
    try:
        device = get_device(config.device)
        ds = split.dataset
        model = build_model(method, config, ds.input_shape, split.num_classes)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        model.to(device).train()
        ema_model = None
        ema_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        if ema_state:
            ema = EMA(model, config.ema_decay or 0.99)
            ema.module.load_state_dict(ema_state)
            ema_model = ema.module
        ctx = Context(augment_mod.for_dataset(ds, cutout=config.cutout), config.steps, config.steps, device,
                      split.num_classes, len(split.y_ulb))
        method.setup(model, split.to(device), ctx)
        method.load_state_tensors({k[7:]: v for k, v in tensors.items() if k.startswith("method.")})
        history = History()
        for r in rec["history"]:
            history.append(r)
        names = {f.name for f in fields(TrainResult)} - {"history", "model", "ema_model", "method_obj",
                                                            "from_cache"}
        result = TrainResult(**{k: rec[k] for k in names if k in rec}, history=history, model=model,
                             ema_model=ema_model, method_obj=method, from_cache=True)
        result.device = device.type
    except Exception as e:  # noqa: BLE001 - an entry that does not fit this code is retrained, not trusted
        import warnings

        warnings.warn(f"sslteach run cache: entry {key} could not be restored ({type(e).__name__}: "
                      f"{str(e)[:150]}); training instead", stacklevel=3)
        return None
    result.extra["cache_load_seconds"] = time.perf_counter() - t0
    on_eval = (callbacks or {}).get("on_eval")
    if on_eval is not None:  # a panel draws a cached run's curve as if it had just trained it
        for r in history.records:
            on_eval(None, r)
    on_end = (callbacks or {}).get("on_train_end")
    if on_end is not None and history.records:
        on_end(None, history.records[-1])
    return result
