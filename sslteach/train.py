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

import copy
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
from .data import DATASETS, IndexSampler, Split, balanced_split, load_dataset, to_float
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
    model: str = "auto"  # "auto" (MLP for points, small CNN for images) | "mlp" | "cnn" | "wrn28_2"
    width: int = 32  # channels of the small CNN's first stage
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
        check_choice("model", self.model, MODELS)
        check_int("width", self.width, 1)
        check_float("dropout", self.dropout, 0.0, 1.0)
        check_int("seed", self.seed, 0)
        get_device(self.device)
        return self


class EMA:
    """An exponential moving average of a model's weights: ``theta' <- a * theta' + (1 - a) * theta``.

    As in the Mean Teacher code, the decay starts small, ``a_t = min(a, 1 - 1 / (t + 1))``, so early averages are
    not dominated by the random initialisation. Buffers (BatchNorm statistics) are copied. The averaged model
    never receives gradients (``requires_grad`` is off).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = check_float("ema_decay", decay, 0.0, 1.0)
        self.module = copy.deepcopy(model)
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float | None = None) -> float:
        """One EMA step from ``model``; returns the decay actually used."""
        self.num_updates += 1
        a = self.decay if decay is None else decay
        a = min(a, 1.0 - 1.0 / (self.num_updates + 1))
        for p_ema, p in zip(self.module.parameters(), model.parameters()):
            p_ema.mul_(a).add_(p.detach(), alpha=1 - a)
        for b_ema, b in zip(self.module.buffers(), model.buffers()):
            b_ema.copy_(b)
        return a


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
    """What :func:`train` returns: the trained model(s), the history and the numbers that go into a report."""

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

    def to_dict(self) -> dict:
        """JSON-ready summary (no tensors, no model)."""
        return {"method": self.method, "dataset": self.dataset, "labels_per_class": self.labels_per_class,
                "steps": self.steps, "steps_done": self.steps_done, "seed": self.seed, "device": self.device,
                "test_accuracy": self.test_accuracy, "wall_seconds": self.wall_seconds,
                "interrupted": self.interrupted, "method_config": self.method_config,
                "train_config": self.train_config, "extra": self.extra, "history": self.history.to_list()}

    def save_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, default=_jsonable))

    def summary(self) -> str:
        stop = " (stopped early)" if self.interrupted else ""
        return (f"{self.method} on {self.dataset} ({self.labels_per_class} labels/class, seed {self.seed}): "
                f"test accuracy {self.test_accuracy:.2%} after {self.steps_done} steps in "
                f"{self.wall_seconds:.1f}s on {self.device}{stop}")


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             autocast: Callable = nullcontext) -> float:
    """Accuracy of ``model`` on ``(x, y)``, in eval mode, batch by batch (the mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        with autocast():
            logits, _ = model(to_float(x[i: i + batch_size]))
        correct += (logits.argmax(1) == y[i: i + batch_size]).sum().item()
    model.train(was_training)
    return correct / max(1, len(y))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Softmax probabilities of ``model`` (eval mode) on ``x``, on the CPU."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = [torch.softmax(model(to_float(x[i: i + batch_size].to(dev)))[0].float(), 1).cpu()
           for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


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
            self.model = make_model(cfg.model, ds.input_shape, split.num_classes, cfg.dropout, cfg.width)
        model = self.model.to(self.device)
        model.train()
        params = _param_groups(model, cfg.weight_decay)
        autocast = self._autocast()
        ctx = Context(augment_mod.for_dataset(ds), 0, cfg.steps, self.device, split.num_classes,
                      len(split.y_ulb), autocast)
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

        def record_eval(final=False):
            x, y = (split.x_test, split.y_test) if final else (x_eval, y_eval)
            rec = {"step": self.step, "time": time.perf_counter() - t0, "lr": opt.param_groups[0]["lr"]}
            for k, v in window.items():
                vals = [u for u in v if not math.isnan(u)]
                rec[k] = float(np.mean(vals)) if vals else None
            window.clear()
            rec["test_acc"] = evaluate(model, x, y, autocast=autocast)
            if self.ema is not None:
                rec["test_acc_ema"] = evaluate(self.ema.module, x, y, autocast=autocast)
            for name, m in method.eval_models().items():
                rec[f"test_acc_{name}"] = evaluate(m, x, y, autocast=autocast)
            rec["test_acc_report"] = rec[self._report_key(method)]
            rec["final"] = final
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
        rec = record_eval(final=True)
        wall = time.perf_counter() - t0
        result = TrainResult(
            method=method.name, dataset=ds.name, labels_per_class=split.info.get("labels_per_class"),
            steps=cfg.steps, steps_done=self.step, seed=cfg.seed, device=self.device.type,
            test_accuracy=rec["test_acc_report"], wall_seconds=wall, history=self.history, model=model,
            ema_model=self.ema.module if self.ema is not None else None, interrupted=interrupted,
            method_config=method.config_dict(), train_config=asdict(cfg),
            extra={"report": self._report_key(method), "device_name": describe_device(self.device),
                   "split": repr(self.split)}, method_obj=method)
        extra_results = getattr(method, "extra_results", None)  # a method's own summary (Noisy Student's rounds)
        if callable(extra_results):
            result.extra.update(extra_results())
        self._fire("on_train_end", rec)
        return result

    def _report_key(self, method) -> str:
        report = getattr(method, "report", None)
        if report:
            return f"test_acc_{report}"
        return "test_acc_ema" if self.ema is not None else "test_acc"


def train(method="supervised", dataset="digits", labels_per_class: int = 2, split: Split | None = None,
          callbacks: dict | None = None, trainer_hook: Callable | None = None, network: nn.Module | None = None,
          **options) -> TrainResult:
    """Train ``method`` (a name or a method object) on ``dataset`` with ``labels_per_class`` labels per class.

    ``options`` are :class:`TrainConfig` fields (``steps``, ``seed``, ``device``, ...) and the method's own
    configuration fields (``tau``, ``lambda_u``, ...), sorted automatically::

        result = train("fixmatch", "digits", labels_per_class=2, steps=500, tau=0.95, seed=1)
        result.test_accuracy, result.history.series("mask_rate")

    ``callbacks`` maps an event name to a function (see :class:`Trainer`); ``trainer_hook(trainer)`` is called
    before training starts (the widgets use it to keep a handle for the Stop button). ``network`` trains a given
    ``nn.Module`` (returning ``(logits, features)``) instead of building one from ``model``.
    """
    from .methods import get_method

    train_fields = {f.name for f in fields(TrainConfig)}
    tcfg = {k: v for k, v in options.items() if k in train_fields}
    mcfg = {k: v for k, v in options.items() if k not in train_fields}
    if isinstance(method, str):
        method = get_method(method, **mcfg)
    elif mcfg:
        raise ValueError(f"options {sorted(mcfg)} are not TrainConfig fields; pass them to the method object")
    config = TrainConfig(**tcfg).validate()
    if split is None:
        check_choice("dataset", dataset, DATASETS) if isinstance(dataset, str) else None
        split = balanced_split(load_dataset(dataset) if isinstance(dataset, str) else dataset, labels_per_class,
                               seed=config.seed)
    trainer = Trainer(method, split, config, model=network)
    for event, fn in (callbacks or {}).items():
        trainer.add_callback(event, fn)
    if trainer_hook is not None:
        trainer_hook(trainer)
    return trainer.fit()
