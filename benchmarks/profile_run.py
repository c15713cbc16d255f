"""Where the time of a training run goes, phase by phase, as the loop runs it.

    python benchmarks/profile_run.py                       # FixMatch, the real_images preset (Fashion-MNIST)
    python benchmarks/profile_run.py mean_teacher --steps 500

The real loop (:func:`sslteach.train`) runs with timers wrapped around its pieces: drawing the batch indices
(``IndexSampler``), gathering and converting the images (``to_float``), the weak and strong views, the network's
forward passes (every call of the top module, with or without gradient), the optimizer step, the EMA update and the
evaluations during training. "backward and the rest" is the run's time minus all of these: the backward pass, the
losses' arithmetic, ``zero_grad``, the schedule and the logging. The final evaluation on the whole test set is
timed apart. Run it alone on an idle machine.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslteach import augment, data, evaluation  # noqa: E402
from sslteach.presets import get_preset  # noqa: E402

train_mod = importlib.import_module("sslteach.train")

PHASES = ("indices", "images to float", "weak views", "strong views", "forward", "optimizer step", "EMA update",
          "evaluations during training", "backward and the rest")


def _timed(fn, bucket, totals, state):
    def wrapper(*args, **kwargs):
        if state["depth"]:  # nested inside another timed phase: counted there
            return fn(*args, **kwargs)
        state["depth"] += 1
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[bucket] += time.perf_counter() - t
            state["depth"] -= 1
    return wrapper


def profile(method="fixmatch", preset="real_images", steps=None, seed=0) -> dict:
    """Seconds per phase of one run (``PHASES``), plus ``"run"`` (the loop, final evaluation excluded),
    ``"final evaluation"`` and ``"steps"``."""
    p = get_preset(preset)
    opts = p.run_options(method)
    if steps:
        opts["steps"] = steps
    totals, state = defaultdict(float), {"depth": 0}
    saved = []

    def patch(obj, name, bucket):
        orig = getattr(obj, name)
        saved.append((obj, name, orig))
        setattr(obj, name, _timed(orig, bucket, totals, state))

    class TimedAugmenter(augment.Augmenter):
        pass

    patch(data.IndexSampler, "__next__", "indices")
    patch(train_mod, "to_float", "images to float")
    patch(TimedAugmenter, "weak", "weak views")
    patch(TimedAugmenter, "strong", "strong views")
    patch(torch.optim.SGD, "step", "optimizer step")
    patch(evaluation.EMA, "update", "EMA update")
    orig_for_dataset = augment.for_dataset
    saved.append((augment, "for_dataset", orig_for_dataset))
    augment.for_dataset = lambda ds, cutout=0.5: TimedAugmenter(ds.kind, flip=ds.flip, cutout=cutout)

    def pre(module, args):
        state.setdefault("t_fwd", []).append(time.perf_counter())

    def post(module, args, out):
        t0 = state["t_fwd"].pop()
        if not state["depth"] and not state["eval"]:
            totals["forward"] += time.perf_counter() - t0

    orig_build = train_mod.build_model

    def build_model(*args, **kwargs):  # the network the loop trains: time each of its forward passes
        model = orig_build(*args, **kwargs)
        model.register_forward_pre_hook(pre)
        model.register_forward_hook(post)
        return model

    orig_predict = train_mod.predict_logits

    def predict_logits(*args, **kwargs):  # evaluations are timed as a whole (the loop's eval_seconds)
        state["eval"] = True
        try:
            return orig_predict(*args, **kwargs)
        finally:
            state["eval"] = False

    state["eval"] = False
    saved += [(train_mod, "build_model", orig_build), (train_mod, "predict_logits", orig_predict)]
    train_mod.build_model, train_mod.predict_logits = build_model, predict_logits

    result = None
    try:
        result = train_mod.train(method, seed=seed, progress=False, cache=False, **opts)
    finally:
        for obj, name, orig in reversed(saved):
            setattr(obj, name, orig)
    rec = result.history.records
    run = rec[-1]["time"]  # the loop up to the final evaluation
    totals["evaluations during training"] = result.extra["eval_seconds"]
    out = {k: totals[k] for k in PHASES if k != "backward and the rest"}
    out["backward and the rest"] = run - sum(out.values())
    out.update({"run": run, "final evaluation": result.wall_seconds - run, "steps": result.steps_done,
                "accuracy": result.test_accuracy})
    return out


def table(method="fixmatch", preset="real_images", steps=None) -> str:
    prof = profile(method, preset, steps)
    run = prof["run"]
    lines = [f"`{method}`, preset `{preset}`, {prof['steps']} steps: {run:.1f} s of loop "
             f"({run / prof['steps'] * 1e3:.1f} ms per step with the evaluations), final evaluation on the "
             f"whole test set {prof['final evaluation']:.1f} s.", "",
             "| phase | seconds | share of the loop |", "|---|---|---|"]
    for k in PHASES:
        lines.append(f"| {k} | {prof[k]:.1f} | {prof[k] / run:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method", nargs="?", default="fixmatch")
    ap.add_argument("--preset", default="real_images")
    ap.add_argument("--steps", type=int, default=None)
    a = ap.parse_args()
    print(table(a.method, a.preset, a.steps))
