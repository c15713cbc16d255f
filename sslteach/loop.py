"""The training loop, in public pieces: :class:`Trainer` (``setup``, ``next_batch``, ``train_step``, ``evaluate``,
``fit``), the :class:`Evaluator` of the test set, and the records a run produces (:class:`History`,
:class:`TrainResult`).

``Trainer(method, split, config).fit()`` trains one method on one split: SGD with Nesterov momentum and FixMatch's
cosine learning-rate decay, mixed precision on CUDA, an EMA copy of the weights for evaluation, evaluation every
``eval_every`` steps, a :class:`History` of every loss term and diagnostic, callbacks, and a progress bar. A method
only supplies its ``step`` (see :mod:`sslteach.methods.base`). Every piece of a step runs inside a named
:func:`~sslteach.phases.phase` (``batch indices``, ``batch images``, ``weak views``, ``strong views``, ``step``,
``backward``, ``optimizer step``, ``EMA update``, ``after step``, ``evaluation``, ``lump.<name>``), so
``trainer.timer.seconds`` (or a ``torch.profiler`` trace) says where a run's time goes.

Stopping early — the Stop button (:meth:`Trainer.stop`), a callback returning ``"stop"``, or Ctrl-C — ends the
loop cleanly: the model, the EMA model and the history so far are kept, and ``result.interrupted`` is True.
"""
from __future__ import annotations

import json
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from . import augment as augment_mod
from . import distributed
from .data import IndexSampler, Split, split_settings, to_float
from .evaluation import (EMA, auroc, balanced_accuracy, eval_batch_size, per_class_accuracy, predict_logits,
                         tail_accuracy)
from .models import MODELS, make_model
from .phases import PhaseTimer, phase
from .utils import check_choice, check_float, check_int, describe_device, get_device, seed_everything


OPTIMIZERS = ("sgd", "adam")


def _loop(default, help: str):
    """A loop setting with its help text (the command line's flag help)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Settings shared by every method. Paper values are FixMatch's (Sohn et al., 2020); values marked CPU are
    smaller so a run finishes in well under a minute on 2 CPU cores."""

    steps: int = _loop(1000, "optimizer steps (paper: 2^20; CPU)")
    batch_size: int = _loop(32, "labeled images per step, B (paper: 64; CPU)")
    optimizer: str = _loop("sgd", "'sgd' (SGD with Nesterov momentum, FixMatch's) | 'adam' (CoSSL's, and the inversion "
                                  "author's script's)")
    lr: float = _loop(0.03, "learning rate (paper, SGD)")
    momentum: float = _loop(0.9, "Nesterov momentum (paper)")
    weight_decay: float = _loop(5e-4, "on weights, not on biases or BatchNorm (paper)")
    cosine: bool = _loop(True, "lr * cos(7 pi k / (16 K)) (paper)")
    ema_decay: float = _loop(0.99, "EMA of the weights used for evaluation; 0 turns it off (paper 0.999 over 2^20 "
                                   "steps)")
    eval_every: int = _loop(50, "steps between evaluations")
    eval_size: int = _loop(2000, "test images used at each evaluation during training (all of them at the end)")
    cutout: float = _loop(0.5, "side of the strong view's Cutout square, as a share of the image side (paper: "
                               "0.5)")
    model: str = _loop("auto", "'auto' (MLP for points, small CNN for images) | 'mlp' | 'cnn' | 'wrn28_2'")
    width: int = _loop(32, "channels of the small CNN's first stage (digits: 16, see DATASET_DEFAULTS)")
    dropout: float = _loop(0.0, "dropout before the classifier")
    seed: int = _loop(0, "seeds the split, the initialisation and every random draw of the run")
    device: str = _loop("auto", "'auto' (CUDA, then MPS, then CPU) | 'cpu' | 'cuda' | 'mps'")
    amp: bool = _loop(True, "mixed precision (bfloat16 / float16) on CUDA; ignored elsewhere")
    progress: bool = _loop(True, "tqdm progress bar")
    sync_bn: bool = _loop(True, "several processes (torchrun): BatchNorm statistics over the global batch")
    checkpoint: str = _loop("", "file of the run's checkpoint (empty: none); see --checkpoint-every and --resume")
    checkpoint_every: int = _loop(0, "write the checkpoint every this many steps (0: never)")
    resume: bool = _loop(False, "continue from the checkpoint file if it exists (bit for bit on a CPU)")

    def validate(self) -> "TrainConfig":
        check_int("steps", self.steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
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
        check_int("checkpoint_every", self.checkpoint_every, 0)
        if (self.checkpoint_every or self.resume) and not self.checkpoint:
            raise ValueError("checkpoint_every and resume need a checkpoint file: checkpoint=PATH (--checkpoint PATH)")
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
    rank: int = 0  # this process's rank and the number of processes training the model (torchrun)
    world_size: int = 1

    @property
    def progress(self) -> float:
        """Fraction of training done, t / T, in [0, 1]."""
        return self.step / max(1, self.total_steps)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` of every process concatenated in rank order (one process: ``t``): a method that updates state from
        its batch (a bank, per-image targets, statistics) gathers the global batch first, so every rank's state
        stays identical."""
        return distributed.gather(t)

    def broadcast(self, module: nn.Module) -> None:
        """Rank 0's weights of ``module`` on every process (one process: nothing): after a method trains a part of
        itself outside the loop's optimizer (CoSSL's head, fitted offline), every rank continues from the same one."""
        distributed.broadcast_parameters(module)

    def lump(self, name: str):
        """``with ctx.lump("relabel"): ...`` marks a pass over a whole dataset that a method makes now and then
        (Noisy Student's relabelling, CoSSL's feature bank, OpenMatch's re-selection): the trainer times it as the
        phase ``lump.<name>`` (``result.extra["lump_seconds"]``), and the benchmarks leave it out of a step's cost."""
        return phase(f"lump.{name}")


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
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, default=jsonable))

    @property
    def tail_accuracy(self) -> float | None:
        """Mean recall of the rare classes of a long-tailed split (``None`` on other splits)."""
        if (self.split or {}).get("kind") != "long_tailed":
            return None
        return tail_accuracy(self.per_class_accuracy, self.split.get("tail_classes") or [])

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


def jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)



def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """SGD parameter groups: weight decay on weights, none on biases and BatchNorm (1-d parameters)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_lr_factor(step: int, total: int) -> float:
    """FixMatch's schedule: lr_k = lr * cos(7 pi k / (16 K)) — ends at cos(7 pi / 16), about 0.2 of the start."""
    return math.cos(7 * math.pi * step / (16 * total))


def autocast_for(device: torch.device, amp: bool = True) -> Callable:
    """A factory of autocast contexts: bfloat16 (or float16) mixed precision on CUDA, nothing elsewhere."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return lambda: torch.autocast("cuda", dtype=dtype)
    return nullcontext


def build_model(method, config: TrainConfig, input_shape: tuple, num_classes: int) -> nn.Module:
    """The network a run trains: the method's own (:meth:`~sslteach.methods.base.Method.build_model`) or the
    usual one for the data (:func:`~sslteach.models.make_model`)."""
    own = method.build_model(tuple(input_shape), num_classes, config)
    return own if own is not None else make_model(config.model, input_shape, num_classes, config.dropout, config.width)


def batched_outlier_scores(method, model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """The method's outlier scores for ``x``, batch by batch, on the CPU (eval mode, no gradient)."""
    batch_size = batch_size or eval_batch_size(x.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = [method.outlier_scores(model, to_float(x[i: i + batch_size])).float().cpu()
               for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


class Evaluator:
    """The test-set evaluations of one run. During training: a fixed random subset of ``eval_size`` test images
    (and of the open-set test images), drawn once from ``generator``; at the end (``final=True``): all of them.

    :meth:`evaluate` returns the accuracy of every model it is given (``{"test_acc": model, "test_acc_ema": ...}``)
    under the same keys, ``test_acc_report`` (the reported model's), on a long-tailed split the tail / head /
    balanced accuracy, on an open-set split the AUROC of the method's outlier score; and the reported model's
    predictions on those test images.
    """

    def __init__(self, split: Split, method, eval_size: int, generator: torch.Generator, device: torch.device,
                 autocast: Callable = nullcontext):
        self.split, self.method, self.autocast = split, method, autocast
        idx = torch.randperm(len(split.y_test), generator=generator)[:eval_size].to(device)
        self.x_eval, self.y_eval = split.x_test[idx], split.y_test[idx]
        self.open_set = split.kind == "open_set" and isinstance(split.info.get("x_test_open"), torch.Tensor)
        if self.open_set:
            self.x_open, self.y_open = split.info["x_test_open"], split.info["y_test_open"]
            idx = torch.randperm(len(self.y_open), generator=generator)[:eval_size].to(device)
            self.x_open_eval, self.y_open_eval = self.x_open[idx], self.y_open[idx]
        self.tail = split.info.get("tail_classes") if split.kind == "long_tailed" else None

    def evaluate(self, models: dict[str, nn.Module], report_key: str, final: bool = False) -> tuple[dict, torch.Tensor]:
        """``(record fields, predictions of the reported model)`` on the evaluation images (all of them when
        ``final``)."""
        x, y = (self.split.x_test, self.split.y_test) if final else (self.x_eval, self.y_eval)
        rec, preds = {}, {}
        for key, m in models.items():
            preds[key] = predict_logits(m, x, autocast=self.autocast).argmax(1)
            rec[key] = (preds[key] == y).float().mean().item() if len(y) else 0.0
        rec["test_acc_report"] = rec[report_key]
        if self.tail is not None:  # long-tailed split: the rare classes' mean recall, and the others'
            pc = per_class_accuracy(preds[report_key], y, self.split.num_classes)
            rec["test_acc_tail"] = tail_accuracy(pc, self.tail)
            rec["test_acc_head"] = balanced_accuracy([v for c, v in enumerate(pc) if c not in self.tail])
            rec["test_bal_acc"] = balanced_accuracy(pc)
        if self.open_set:  # open-set split: how well the outlier score finds the unknown classes
            xo, yo = (self.x_open, self.y_open) if final else (self.x_open_eval, self.y_open_eval)
            scores = batched_outlier_scores(self.method, models[report_key], xo)
            rec["test_auroc"] = auroc(scores, yo < 0)
        return rec, preds[report_key]


class Trainer:
    """Runs one method on one split. ``Trainer(method, split, config).fit()`` returns a :class:`TrainResult`.

    The pieces, public so that a benchmark or a profile drives the real loop: :meth:`setup` (model, optimizer,
    schedule, EMA, samplers, the method's own state, the :class:`Evaluator`), :meth:`next_batch`,
    :meth:`train_step` (one optimizer step, returning the logs), :meth:`evaluate` (one history record) and
    :meth:`fit` (all of them, with callbacks, the progress bar and clean stopping). ``trainer.timer`` holds the
    seconds of every phase of the last :meth:`fit`.

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
        self.timer = PhaseTimer()
        self.eval_seconds = 0.0  # time spent in the evaluations during training (the final one not included)
        self.final_pred: torch.Tensor | None = None
        self.ready = False
        self.resumed_from: int | None = None  # the step a checkpoint was resumed at
        self.ranks = distributed.Ranks()

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

    # ------------------------------------------------------------------------------------------- the pieces
    def setup(self) -> None:
        """Everything before the first step, in a fixed order (so a seed repeats a run): seeds, the split on the
        device, the model, the method's state, optimizer, schedule, EMA, samplers and the evaluation subset."""
        cfg, method = self.config, self.method
        self.ranks = distributed.init(self.device.type)
        seed_everything(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed)
        self.split_on_device = split = self.split.to(self.device)
        ds = split.dataset
        if self.model is None:
            self.model = build_model(method, cfg, ds.input_shape, split.num_classes)
        self.model = model = self.model.to(self.device)
        model.train()
        if self.ranks.active:
            self._check_divisible()
            if cfg.sync_bn:
                distributed.convert_batchnorm(model)
            distributed.broadcast_parameters(model)
        self.autocast = autocast_for(self.device, cfg.amp)
        self.ctx = Context(augment_mod.for_dataset(ds, cutout=cfg.cutout), 0, cfg.steps, self.device,
                           split.num_classes, len(split.y_ulb), self.autocast, self.ranks.rank,
                           self.ranks.world_size)
        method.setup(model, split, self.ctx)
        if self.ranks.active and cfg.sync_bn:  # the method's own networks (a projection head ...) too
            for v in vars(method).values():
                if isinstance(v, nn.Module):
                    distributed.convert_batchnorm(v)
        self.make_optimizer()
        if self.ranks.rank > 0:  # each rank its own augmentation stream (rank 0 keeps the one-process stream)
            seed_everything(cfg.seed * 1000 + self.ranks.rank)
        self.scaler = torch.amp.GradScaler("cuda") if (
            self.device.type == "cuda" and cfg.amp and not torch.cuda.is_bf16_supported()) else None
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.lb_sampler = IndexSampler(len(split.y_lb), cfg.batch_size, g, self.device)
        mu = method.unlabeled_ratio()
        self.ulb_sampler = (IndexSampler(len(split.y_ulb), int(mu * cfg.batch_size), g, self.device) if mu > 0
                            else None)
        self.evaluator = Evaluator(split, method, cfg.eval_size, g, self.device, self.autocast)
        self.report_key = self._report_key(method)
        self._window: dict[str, list[float]] = {}
        self._t0 = time.perf_counter()
        self.ready = True
        if cfg.resume and Path(cfg.checkpoint).expanduser().exists():
            from . import checkpoint

            checkpoint.restore(self, checkpoint.load(self, cfg.checkpoint))
            self.resumed_from = self.step

    def _check_divisible(self) -> None:
        world = self.ranks.world_size
        mu = self.method.unlabeled_ratio()
        for n, what in ((self.config.batch_size, "batch_size"), (int(mu * self.config.batch_size), "mu x batch_size")):
            if n % world:
                raise ValueError(f"{what} ({n}) must be a multiple of the number of processes ({world}): the global "
                                 "batch is split evenly over them")

    def make_optimizer(self) -> None:
        """The optimizer over the model's and the method's trainable parameters (weight decay on weights only),
        and the learning-rate schedule."""
        cfg = self.config
        params = param_groups(self.model, cfg.weight_decay)
        extra = self.method.extra_parameters()
        if extra:
            params += param_groups(nn.ParameterList(extra), cfg.weight_decay)
        if cfg.optimizer == "adam":  # momentum is Adam's own (betas); weight decay as L2 on the weights' group
            self.optimizer = torch.optim.Adam(params, lr=cfg.lr)
        else:
            self.optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, (lambda k: cosine_lr_factor(k, cfg.steps)) if cfg.cosine else (lambda k: 1.0))

    def run_identity(self) -> dict:
        """What a checkpoint must match to be resumed by this trainer: the method and its settings, the loop
        settings (other than where and how often to checkpoint), the split, the training code and torch."""
        from .cache import code_digest, split_digest

        tc = {k: v for k, v in asdict(self.config).items()
              if k not in ("progress", "device", "checkpoint", "checkpoint_every", "resume")}
        return {"method": self.method.name, "method_config": self.method.config_dict(), "train_config": tc,
                "split": split_settings(self.split), "split_data": split_digest(self.split), "code": code_digest(),
                "torch": torch.__version__}

    def save_checkpoint(self, path=None) -> Path:
        """Write the run's checkpoint now (to ``config.checkpoint`` unless ``path`` is given)."""
        from . import checkpoint

        with phase("checkpoint"):
            return checkpoint.save(self, path or self.config.checkpoint)

    def next_batch(self) -> Batch:
        """The next labeled (and unlabeled) batch: indices from the samplers, images gathered as floats."""
        split = self.split_on_device
        with phase("batch indices"):
            i_lb = self._shard(next(self.lb_sampler))
            i_ulb = self._shard(next(self.ulb_sampler)) if self.ulb_sampler is not None else None
        with phase("batch images"):
            batch = Batch(to_float(split.x_lb[i_lb]), split.y_lb[i_lb], idx_lb=i_lb)
            if i_ulb is not None:
                batch.x_ulb, batch.y_ulb, batch.idx_ulb = to_float(split.x_ulb[i_ulb]), split.y_ulb[i_ulb], i_ulb
        return batch

    def _shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of the global batch's indices (one process: all of them)."""
        r = self.ranks
        if not r.active:
            return idx
        n = len(idx) // r.world_size
        return idx[r.rank * n: (r.rank + 1) * n]

    def train_step(self, batch: Batch) -> dict:
        """One optimizer step on ``batch``: the method's loss, backward, SGD, schedule, EMA, the method's
        ``after_step``. Returns the step's logs (``loss`` and the method's diagnostics)."""
        model, ctx = self.model, self.ctx
        ctx.step = self.step
        with phase("step"), self.autocast():
            loss, logs = self.method.step(model, batch, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        with phase("backward"):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.ranks.active:
            with phase("all-reduce"):
                distributed.average_gradients([p for grp in self.optimizer.param_groups for p in grp["params"]])
        with phase("optimizer step"):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            with phase("EMA update"):
                self.ema.update(model)
        with phase("after step"):
            self.method.after_step(model, ctx)
        logs = {"loss": loss.detach(), **logs}
        for k, v in logs.items():
            self._window.setdefault(k, []).append(float(v))
        return logs

    def eval_models(self) -> dict[str, nn.Module]:
        """The models evaluated at each evaluation, by history key: the model, its EMA copy, the method's own."""
        models = {"test_acc": self.model}
        if self.ema is not None:
            models["test_acc_ema"] = self.ema.module
        models.update({f"test_acc_{name}": m for name, m in self.method.eval_models().items()})
        return models

    def evaluate(self, final: bool = False) -> dict:
        """One history record: the step, time, learning rate, the mean of every log since the last record, and
        the :class:`Evaluator`'s accuracies (on every test image when ``final``). Fires ``on_eval``."""
        if not self.ranks.main:  # rank 0 alone evaluates; the others only keep their window of logs short
            self._window.clear()
            return {"step": self.step, "test_acc_report": float("nan"), "final": final}
        t_eval = time.perf_counter()
        with phase("final evaluation" if final else "evaluation"):
            rec = {"step": self.step, "time": time.perf_counter() - self._t0,
                   "lr": self.optimizer.param_groups[0]["lr"]}
            for k, v in self._window.items():
                vals = [u for u in v if not math.isnan(u)]
                rec[k] = float(np.mean(vals)) if vals else None
            self._window.clear()
            fields_, pred = self.evaluator.evaluate(self.eval_models(), self.report_key, final)
            rec.update(fields_)
            rec["final"] = final
        if final:
            self.final_pred = pred
        else:
            self.eval_seconds += time.perf_counter() - t_eval
        self.history.append(rec)
        self._fire("on_eval", rec)
        return rec

    # ------------------------------------------------------------------------------------------- the loop
    def fit(self) -> TrainResult:
        """Train until ``config.steps`` (or a stop), evaluate on the whole test set, return the result."""
        cfg = self.config
        with self.timer.active():
            if not self.ready:
                self.setup()
            if self.resumed_from is None:
                self._t0 = time.perf_counter()
            interrupted = self._distributed_guard(self._loop)
            try:
                rec = self.evaluate(final=True)
            except KeyboardInterrupt:  # Ctrl-C again during the final evaluation: keep what we have, unevaluated
                interrupted = True
                rec = dict(self.history.records[-1]) if self.history.records else {"test_acc_report": float("nan")}
                self.final_pred = None
            if self.ranks.active:
                self._distributed_guard(distributed.barrier)  # the others wait for rank 0's final evaluation
        result = self._result(rec, interrupted or self.step < cfg.steps, time.perf_counter() - self._t0)
        self._fire("on_train_end", rec)
        return result

    def _distributed_guard(self, fn):
        """``fn()``; in a multi-process run, Ctrl-C or a failed collective (another rank died) becomes a one-line
        :class:`~sslteach.distributed.DistributedError` on every rank, and nothing is stored."""
        if not self.ranks.active:
            return fn()
        where = f"rank {self.ranks.rank} of {self.ranks.world_size}"
        try:
            out = fn()
        except RuntimeError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise distributed.DistributedError(f"{where}: the run stopped at step {self.step} ({first}); another "
                                               "rank failed or stopped; nothing was stored") from None
        if out is True:  # Ctrl-C ended the loop
            raise distributed.DistributedError(f"{where}: stopped (Ctrl-C, or torchrun ended it after another rank "
                                               f"failed) at step {self.step}; nothing was stored")
        return out

    def _loop(self) -> bool:
        """The steps, with the progress bar and the evaluations during training; True if Ctrl-C ended them."""
        cfg = self.config
        bar = None
        if cfg.progress and self.ranks.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, desc=self.method.name, leave=False, dynamic_ncols=True)
        try:
            while self.step < cfg.steps and not self.stop_requested:
                logs = self.train_step(self.next_batch())
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.ranks.main:
                    self.save_checkpoint()
                self._fire("on_step", logs)
                if bar is not None:
                    bar.update(1)
                if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    rec = self.evaluate()
                    if bar is not None:
                        bar.set_postfix(loss=f"{rec.get('loss') or 0:.3f}", acc=f"{rec['test_acc_report']:.3f}")
        except KeyboardInterrupt:
            return True
        finally:
            if bar is not None:
                bar.close()
        return False

    def _result(self, rec: dict, interrupted: bool, wall: float) -> TrainResult:
        cfg, method, split = self.config, self.method, self.split_on_device
        pred = self.final_pred
        pc = per_class_accuracy(pred, split.y_test, split.num_classes) if pred is not None else []
        lumps = {k[len("lump."):]: v for k, v in self.timer.seconds.items() if k.startswith("lump.")}
        extra = {"report": self.report_key, "device_name": describe_device(self.device), "split": repr(self.split),
                 "eval_seconds": self.eval_seconds}
        if lumps:
            extra["lump_seconds"] = lumps
        if self.resumed_from is not None:
            extra["resumed_from_step"] = self.resumed_from
        result = TrainResult(
            method=method.name, dataset=split.dataset.name, labels_per_class=split.info.get("labels_per_class"),
            steps=cfg.steps, steps_done=self.step, seed=cfg.seed, device=self.device.type,
            test_accuracy=rec["test_acc_report"], wall_seconds=wall, history=self.history, model=self.model,
            ema_model=self.ema.module if self.ema is not None else None, interrupted=interrupted,
            method_config=method.config_dict(), train_config=asdict(cfg), extra=extra, method_obj=method,
            per_class_accuracy=pc, balanced_accuracy=balanced_accuracy(pc) if pc else float("nan"),
            auroc=rec.get("test_auroc") if self.evaluator.open_set else None, split=split_settings(self.split))
        result.extra.update(method.extra_results())  # a method's own summary (Noisy Student's rounds)
        return result

    def _report_key(self, method) -> str:
        report = getattr(method, "report", None)
        if report:
            return f"test_acc_{report}"
        return "test_acc_ema" if self.ema is not None else "test_acc"
