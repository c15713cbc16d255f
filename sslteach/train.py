"""``train(...)``: one call from a method's name to a finished run, through the run cache.

A run is prepared, then run: :func:`prepare_run` sorts the options into the method's, the loop's and the split's
settings (applying the method's and the dataset's defaults), builds the method, the :class:`TrainConfig` and the
split, and returns a :class:`RunSpec`; :func:`run` looks the spec up in the run cache (:mod:`sslteach.cache`) and
otherwise trains it with a :class:`~sslteach.loop.Trainer`. ``train(...) = run(prepare_run(...))``, and
``RunSpec.cache_key()`` is the key ``run`` uses, so a comparison's estimate ("3 of 9 runs cached") and the runs
themselves agree by construction.

The loop's pieces (:class:`Trainer`, :class:`TrainConfig`, :class:`TrainResult`, :class:`History`, :class:`Batch`,
:class:`Context`) live in :mod:`sslteach.loop` and are importable from here too.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch.nn as nn

from . import distributed
from .cache import RunCache, load_result, make_key, run_spec, store_for, store_result
from .data import DATASETS, Split, SplitConfig, load_dataset, make_split
from .evaluation import EMA, evaluate, predict  # noqa: F401 - re-exported: sslteach.train.evaluate etc. still work
from .loop import (Batch, Context, Evaluator, History, Trainer, TrainConfig, TrainResult,  # noqa: F401
                   build_model, cosine_lr_factor, param_groups)
from .presets import PRESETS
from .utils import check_choice

#: Loop settings per dataset, used where neither the caller nor the method sets them (printed by the CLI).
#: Digits: 8x8 images need no more than 16 channels (measured, FixMatch with 2 labels per class, 1000 steps, seeds
#: 0-2: width 16 92.4 % in ~37 ms of one core per step, width 32 95.9 % in ~100 ms; supervised 74.5 vs 72.4 %).
_REAL = PRESETS["real_images"]
#: Fashion-MNIST: the settings of the "real images" preset (sslteach.presets; measured in benchmarks/RESULTS.md);
#: ``method_options`` are method knobs applied to that method only (e.g. FixMatch's mu).
#: SWWAE on digits: the regime where its reconstruction helps (benchmarks/levers/LEVERS-24.md, claim
#: ``swwae.reconstruction_helps_with_batchnorm_apart``): the labeled batch normalised on its own, the input
#: reconstruction alone, no augmentation — +4.4 / +2.9 / +5.3 points over the same network on labels alone.
SWWAE_DIGITS = {"separate_passes": True, "lambda_m": 0.0, "augment": False}
DATASET_DEFAULTS: dict[str, dict] = {
    "digits": {"width": 16, "method_options": {"swwae": SWWAE_DIGITS}},
    "fashion_mnist": {"width": _REAL.width, "batch_size": _REAL.batch_size, "steps": _REAL.steps,
                      **_REAL.train_options, "method_options": {  # the adaptive thresholds: mu 3 as FixMatch's
                          **_REAL.method_options, **{m: {"mu": 3} for m in ("flexmatch", "freematch", "softmatch")}}},
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



@dataclass
class RunSpec:
    """Everything a run is: the method object (with its configuration), the loop settings, the split, an optional
    ready network, and the run cache it is stored in (``None``: none). ``applied`` lists the defaults that
    :func:`prepare_run` filled in (the command line prints them)."""

    method: object
    config: TrainConfig
    split: Split
    network: nn.Module | None = None
    store: RunCache | None = None
    applied: dict | None = None

    def spec(self) -> dict:
        """The JSON that decides the run's result (:func:`sslteach.cache.run_spec`)."""
        return run_spec(self.method, self.config, self.split)

    def cache_key(self) -> str:
        """The run cache's key of this run (the one :func:`run` looks up)."""
        return make_key(self.spec())

    def cached(self) -> bool:
        """Whether :func:`run` would serve this run from the run cache."""
        return self.store is not None and self.network is None and self.cache_key() in self.store

    def trainer(self) -> Trainer:
        """A fresh :class:`~sslteach.loop.Trainer` for this run (not yet set up)."""
        return Trainer(self.method, self.split, self.config, model=self.network)


def _method_class(method):
    from .methods import METHODS

    if isinstance(method, str):
        check_choice("method", method, METHODS)
        return METHODS[method]
    return type(method)


def _build_split(dataset, labels_per_class, split, scfg: dict, seed: int) -> Split:
    if isinstance(split, Split):
        if scfg:
            raise ValueError(f"split settings {sorted(scfg)} given together with a ready Split; build the split "
                             "with them")
        return split
    if isinstance(dataset, str):
        check_choice("dataset", dataset, DATASETS)
    split_cfg = SplitConfig(kind=split or "balanced", labels_per_class=labels_per_class, **scfg).validate()
    return make_split(load_dataset(dataset) if isinstance(dataset, str) else dataset, split_cfg, seed=seed)


def prepare_run(method="supervised", dataset="digits", labels_per_class: int = 2, split: Split | str | None = None,
                network: nn.Module | None = None, cache: bool | str | Path | None = None, **options) -> RunSpec:
    """Resolve ``train(...)``'s arguments into a :class:`RunSpec` without training (see :func:`train`)."""
    from .methods import get_method

    ds_name = dataset if isinstance(dataset, str) else getattr(dataset, "name", None)
    if isinstance(split, Split):
        ds_name = split.dataset.name
    method_cls = _method_class(method)
    tcfg, scfg, mcfg, applied = resolve_options(method_cls, ds_name, options)
    if not isinstance(method, str):  # a method object brings its own knobs: no dataset default for them
        mcfg = {k: v for k, v in mcfg.items() if k in options}
        if mcfg:
            raise ValueError(f"options {sorted(mcfg)} are not TrainConfig or split settings; pass them to the method "
                             f"object")
    else:
        method = get_method(method, **mcfg)
    config = TrainConfig(**tcfg).validate()
    split = _build_split(dataset, labels_per_class, split, scfg, config.seed)
    store = None if network is not None else store_for(cache)
    return RunSpec(method, config, split, network, store, applied)


def run(spec: RunSpec, callbacks: dict | None = None, trainer_hook: Callable | None = None) -> TrainResult:
    """Run a :class:`RunSpec`: from the run cache when it holds the run, else trained (and stored, unless stopped
    early). While one process trains a run, another asking for the same run waits for it and reads it."""
    store = spec.store if spec.network is None else None

    def fit() -> TrainResult:
        trainer = spec.trainer()
        for event, fn in (callbacks or {}).items():
            trainer.add_callback(event, fn)
        if trainer_hook is not None:
            trainer_hook(trainer)
        return trainer.fit()

    ranks = distributed.ranks()
    if ranks.active:  # torchrun: rank 0 alone reads and writes the run cache; the others follow its decision
        return _run_distributed(spec, store, fit, callbacks, ranks)
    if store is None:
        return fit()
    key = spec.cache_key()
    hit = load_result(store, key, spec.method, spec.config, spec.split, callbacks)
    if hit is not None:
        return hit
    with store.lock(key):  # another process training the same run: wait for it, then read its result
        hit = load_result(store, key, spec.method, spec.config, spec.split, callbacks)
        if hit is not None:
            return hit
        result = fit()
        if not result.interrupted:
            store_result(store, key, result, spec.split)
    return result


def _run_distributed(spec: RunSpec, store, fit, callbacks, ranks) -> TrainResult | None:
    """One run on several processes: rank 0 looks the run up and tells the others; a hit ends the run (the other
    ranks return ``None``); otherwise every rank trains, rank 0 stores the finished run, the others return their
    (unevaluated) result."""
    from .utils import get_device

    distributed.init(get_device(spec.config.device).type)
    key = spec.cache_key() if store is not None else None
    hit = load_result(store, key, spec.method, spec.config, spec.split, callbacks) if ranks.main and key else None
    if distributed.broadcast_object(hit is not None):
        return hit if ranks.main else None
    result = fit()
    if ranks.main and store is not None and not result.interrupted:
        store_result(store, key, result, spec.split)
    distributed.barrier()
    return result


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

    The same as ``run(prepare_run(method, dataset, ...), callbacks, trainer_hook)``.
    """
    spec = prepare_run(method, dataset, labels_per_class, split, network=network, cache=cache, **options)
    return run(spec, callbacks, trainer_hook)
