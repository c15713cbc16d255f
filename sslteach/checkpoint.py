"""Checkpoints of a run in progress: everything a :class:`~sslteach.loop.Trainer` needs to continue a run exactly
where it stopped — a resumed run ends bit for bit like an uninterrupted one on the CPU.

``TrainConfig(checkpoint="run.ckpt", checkpoint_every=1000)`` writes one every 1000 steps (atomically: a reader never
sees half a file); ``resume=True`` (``--resume`` on the command line) continues from it. What is saved: the step, the
weights, the optimizer, the schedule and the mixed-precision scaler, the EMA copy, the batch samplers (their
shuffled epochs and random generator), every random generator of the process (torch, NumPy, Python), the history so
far, and the method's whole state (its teachers, banks, per-image targets, counters and samplers). The split's
images, the dataset and the model itself are not copied into the file: they are rebuilt by ``setup()`` and the
method's references to them are reconnected on loading.

A checkpoint is a Python pickle, written by sslteach for a run on this machine: load only your own files (unlike
the run cache's weights-only files, a pickle can run code). It records the run it belongs to; resuming another run
from it is refused with a one-line error.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run."""


def _live_objects(trainer) -> dict:
    """Objects a checkpoint refers to instead of copying: the model (its layers, parameters and buffers: a method
    may hold one of them, as Noisy Student its dropout layer), the splits and their dataset and tensors."""
    refs = {"model": trainer.model}
    refs.update({f"model.module.{n}": m for n, m in trainer.model.named_modules() if n})  # e.g. its dropout layer
    refs.update({f"model.param.{n}": p for n, p in trainer.model.named_parameters()})
    refs.update({f"model.buffer.{n}": b for n, b in trainer.model.named_buffers()})
    for name, split in (("split", trainer.split_on_device), ("split_cpu", trainer.split)):
        refs[name] = split
        refs[f"{name}.dataset"] = split.dataset
        for k in ("x_lb", "y_lb", "x_ulb", "y_ulb", "x_test", "y_test"):
            refs[f"{name}.{k}"] = getattr(split, k)
        for k, v in split.info.items():
            if isinstance(v, torch.Tensor):
                refs[f"{name}.info.{k}"] = v
    return refs


class _Pickler(pickle.Pickler):
    def __init__(self, f, refs: dict):
        super().__init__(f, protocol=4)
        self._ids = {}
        for key, obj in refs.items():
            self._ids.setdefault(id(obj), key)

    def persistent_id(self, obj):
        return self._ids.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, refs: dict):
        super().__init__(f)
        self._refs = refs

    def persistent_load(self, pid):
        if pid not in self._refs:
            raise CheckpointError(f"the checkpoint refers to {pid!r}, which this run does not have")
        return self._refs[pid]


def state_of(trainer) -> dict:
    """The state of ``trainer`` after its last completed step."""
    t = trainer
    return {
        "format": FORMAT, "spec": t.run_identity(), "step": t.step,
        "model": {k: v.detach().clone() for k, v in t.model.state_dict().items()},
        "optimizer": t.optimizer.state_dict(), "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "ema": t.ema, "method": dict(vars(t.method)), "lb_sampler": t.lb_sampler, "ulb_sampler": t.ulb_sampler,
        "history": t.history, "window": t._window, "eval_seconds": t.eval_seconds,
        "elapsed": time.perf_counter() - t._t0,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def save(trainer, path: str | Path) -> Path:
    """Write ``trainer``'s checkpoint to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _Pickler(f, _live_objects(trainer)).dump(state_of(trainer))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load(trainer, path: str | Path) -> dict:
    """Read the checkpoint at ``path`` for ``trainer`` (set up, not yet trained), reconnecting its references to
    ``trainer``'s model and split. Raises :class:`CheckpointError` for a file of another run or format."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            state = _Unpickler(f, _live_objects(trainer)).load()
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged file is reported, never half-used
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e)[:120]}); delete it or "
                              "give another --checkpoint") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an sslteach checkpoint of format {FORMAT}")
    if state["spec"] != trainer.run_identity():
        raise CheckpointError(f"checkpoint {path} belongs to another run (method, settings or split differ); delete "
                              "it or give another --checkpoint")
    return state


def restore(trainer, state: dict) -> None:
    """Put a loaded checkpoint's state into ``trainer`` (after its ``setup()``)."""
    t = trainer
    t.model.load_state_dict(state["model"])
    vars(t.method).clear()
    vars(t.method).update(state["method"])
    t.make_optimizer()  # over the restored parameters (a method's heads are new objects)
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    if t.scaler is not None and state["scaler"] is not None:
        t.scaler.load_state_dict(state["scaler"])
    t.ema, t.lb_sampler, t.ulb_sampler = state["ema"], state["lb_sampler"], state["ulb_sampler"]
    t.history, t._window, t.eval_seconds = state["history"], state["window"], state["eval_seconds"]
    t.step = t.ctx.step = state["step"]
    t._t0 = time.perf_counter() - state["elapsed"]
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
