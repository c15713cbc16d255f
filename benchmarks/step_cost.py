"""Every method's training step against a bare forward + backward of the same network on the same images.

    python benchmarks/step_cost.py                           # every method, Fashion-MNIST preset settings
    python benchmarks/step_cost.py fixmatch mean_teacher --dataset digits --steps 200

For each method, a short run (no evaluation until the end) gives the time of one training step as the loop runs it:
sampling, augmentation, every forward pass (student, teacher, EMA copy, heads, decoders), backward, SGD, schedule,
EMA update, logging. A forward hook counts the images that pass through the network's input layer in the timed
steps, with and without gradient. Two references for that step:

* **bare**: a forward + backward of that many ready-made images (plus the no-gradient forwards, e.g. a teacher's)
  through a copy of the classifier, nothing else. ``step / bare`` is the cost of everything around the classifier,
  including a method's extra networks (a decoder, a projection head, a second classifier) and gradients taken
  inside its loss — so SWWAE (a decoder as large as the encoder) and the inversion (a double backward) are far
  above 1 by design;
* **own passes**: the method's ``step`` on the run's last batch with views that are the images themselves, and its
  backward — every pass the method makes, decoder and double backward included, without sampling, augmentation,
  SGD, EMA or logging. ``step / own`` is the loop's overhead around the method's own computation.

Run it alone on an idle machine: every other job inflates the times (the ratio less so).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslteach import METHODS, load_dataset, train  # noqa: E402
from sslteach.augment import Augmenter  # noqa: E402


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


#: Methods whose cost partly comes in lumps rather than per step, and the method functions that do the lumps:
#: Noisy Student relabels the whole unlabeled set with its teacher and evaluates on the test set at every round
#: switch, CoSSL computes features of every labeled and unlabeled image when co-learning starts (on Fashion-MNIST,
#: 60 000 images each), OpenMatch re-selects its pseudo-inliers over the unlabeled set every ``select_every`` steps.
#: Their step is timed and counted without the lumps (the lumps' total is printed).
LUMPS = {"noisy_student": ("_finish_round", "_next_round"), "cossl": ("begin_co_learning",),
         "openmatch": ("select",)}


class _Ready(Augmenter):
    """Views that are the images themselves: a method's step on ready-made images, without augmentation."""

    def weak(self, x):
        return x

    def strong(self, x):
        return x


def step_time(method, dataset, options, steps):
    """One timed run of ``steps`` steps (no evaluation until the end). Returns ``(seconds per step without the
    lumps of LUMPS, images forwarded with gradient per step, without gradient per step, the run, the last step's
    (batch, ctx))``. The images are counted by a forward hook on the network's first layer, inside the method's
    ``step`` only, over the same steps that are timed (a method whose passes change during the run, such as
    OpenMatch's FixMatch term after its warm-up, is counted as it is timed)."""
    lumped, calls, inside, last = [0.0], [], [False], {}
    first_key = []

    def hook(module, inputs, output):
        if not inside[0] or not inputs or not isinstance(inputs[0], torch.Tensor):
            return
        if not list(module.children()) and getattr(module, "weight", None) is not None:
            key = (type(module), tuple(module.weight.shape))
            if not first_key:  # the first layer with weights that runs inside a step: the network's input layer
                first_key.append(key)
            if key == first_key[0]:
                calls.append((inputs[0].shape[0], torch.is_grad_enabled()))

    def wrap(trainer):
        m = trainer.method
        orig = m.step

        def step(model, batch, ctx):
            inside[0] = True
            try:
                return orig(model, batch, ctx)
            finally:
                inside[0] = False
                last["batch"], last["ctx"] = batch, ctx

        m.step = step
        wrap_lumps(m, method, inside, seconds=lumped)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        r = train(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False,
                  trainer_hook=wrap, **options)
    finally:
        handle.remove()
    if method in LUMPS:
        print(f"  {method}: {lumped[0]:.1f} s of lumps ({', '.join(LUMPS[method])}) in {steps} steps, left out",
              flush=True)
    grad = sum(n for n, g in calls if g) / steps
    nograd = sum(n for n, g in calls if not g) / steps
    per_step = (r.history.records[-1]["time"] - lumped[0]) / steps
    return per_step, int(round(grad)), int(round(nograd)), r, (last["batch"], last["ctx"])


def own_passes(result, batch, ctx, repeats=20):
    """Seconds of the method's own passes on ready-made images: its ``step`` on the last batch of the run with
    views that are the images themselves, then the backward — every forward it makes (student, teacher, heads,
    decoder, a gradient taken inside the loss) and the backward through them, without sampling, augmentation,
    SGD, schedule, EMA or logging."""
    method, model = result.method_obj, result.model.train()
    ctx = dataclasses.replace(ctx, aug=_Ready(ctx.aug.kind, flip=False))

    def once():
        with ctx.autocast():
            loss, _ = method.step(model, batch, ctx)
        model.zero_grad(set_to_none=True)
        loss.backward()

    seconds = _median_seconds(once, repeats)
    model.zero_grad(set_to_none=True)
    return seconds


def _median_seconds(fn, repeats=20, warmup=3):
    """Median wall seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bare_step(model, shape, n_grad, n_nograd, num_classes, repeats=20):
    model = copy.deepcopy(model).train()
    x = torch.rand(max(n_grad, 1), *shape)
    xn = torch.rand(max(n_nograd, 1), *shape)
    y = torch.randint(0, num_classes, (max(n_grad, 1),))

    def once():
        if n_nograd:
            with torch.no_grad():
                model(xn)
        out = _tensors(model(x))
        loss = F.cross_entropy(out[0].float(), y) + sum(o.float().mean() for o in out[1:] if o.requires_grad)
        model.zero_grad(set_to_none=True)
        loss.backward()

    return _median_seconds(once, repeats)


def wrap_lumps(m, method, inside=None, seconds=None):
    """Wrap the lump functions of ``m`` (see :data:`LUMPS`): their forwards are not counted (``inside`` off) and
    their time is added to ``seconds[0]``."""
    for fname in LUMPS.get(method, ()):
        orig = getattr(m, fname)

        def lump(*args, _orig=orig, **kwargs):
            was = inside[0] if inside is not None else None
            if inside is not None:
                inside[0] = False
            t = time.perf_counter()
            try:
                return _orig(*args, **kwargs)
            finally:
                if seconds is not None:
                    seconds[0] += time.perf_counter() - t
                if inside is not None:
                    inside[0] = was

        setattr(m, fname, lump)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="*", help="methods (default: every registered method)")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per method (60 gave rows ±0.2 apart)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args(argv)
    options = dict(width=a.width, batch_size=a.batch_size, labels_per_class=4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.dataset}, width {a.width}, "
          f"B {a.batch_size}, {a.steps} steps")
    rows = []
    ds = load_dataset(a.dataset)
    for name in a.methods or list(METHODS):
        per_step, n_grad, n_nograd, r, (batch, ctx) = step_time(name, a.dataset, options, a.steps)
        bare = bare_step(r.model, tuple(ds.input_shape), n_grad, n_nograd, ds.num_classes)
        own = own_passes(r, batch, ctx)
        rows.append((name, n_grad, n_nograd, per_step, bare, own))
        print(f"| {name} | {n_grad} + {n_nograd} | {per_step * 1e3:.1f} | {bare * 1e3:.1f} | {per_step / bare:.2f} "
              f"| {own * 1e3:.1f} | {per_step / own:.2f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
