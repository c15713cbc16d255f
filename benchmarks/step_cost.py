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
* **own passes**: the method's ``step`` on a batch of the run with views that are the images themselves, and its
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

from sslteach import METHODS, load_dataset, prepare_run  # noqa: E402
from sslteach.augment import Augmenter  # noqa: E402
from sslteach.phases import open_phases  # noqa: E402


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


class _Ready(Augmenter):
    """Views that are the images themselves: a method's step on ready-made images, without augmentation."""

    def weak(self, x):
        return x

    def strong(self, x):
        return x


class _ImageCounter:
    """A forward hook on every module that counts the images entering the network's input layer (the first layer
    with weights that runs inside a step), with and without gradient — inside the phase ``step`` of the loop and
    outside its lumps (:meth:`~sslteach.loop.Context.lump`: Noisy Student's relabelling, CoSSL's feature pass,
    OpenMatch's re-selection), so the count covers exactly the steps that are timed."""

    def __init__(self):
        self.calls: list[tuple[int, bool]] = []
        self.first_key = None

    def __call__(self, module, inputs, output):
        names = open_phases()
        if "step" not in names or any(n.startswith("lump.") for n in names):
            return
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            return
        if not list(module.children()) and getattr(module, "weight", None) is not None:
            key = (type(module), tuple(module.weight.shape))
            if self.first_key is None:
                self.first_key = key
            if key == self.first_key:
                self.calls.append((inputs[0].shape[0], torch.is_grad_enabled()))


def step_time(method, dataset, options, steps):
    """One timed run of ``steps`` steps (no evaluation until the end), through the real loop
    (:meth:`sslteach.train.RunSpec.trainer`). Returns ``(seconds per step without the method's lumps, images
    forwarded with gradient per step, without gradient per step, the result, a (batch, ctx) of the run)``."""
    spec = prepare_run(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False,
                       **options)
    trainer = spec.trainer()
    counter = _ImageCounter()
    handle = torch.nn.modules.module.register_module_forward_hook(counter)
    try:
        r = trainer.fit()
    finally:
        handle.remove()
    lumps = r.extra.get("lump_seconds", {})
    if lumps:
        print(f"  {method}: {sum(lumps.values()):.1f} s of lumps ({', '.join(lumps)}) in {steps} steps, left out",
              flush=True)
    grad = sum(n for n, g in counter.calls if g) / steps
    nograd = sum(n for n, g in counter.calls if not g) / steps
    per_step = (r.history.records[-1]["time"] - sum(lumps.values())) / steps
    return per_step, int(round(grad)), int(round(nograd)), r, (trainer.next_batch(), trainer.ctx)


def own_passes(result, batch, ctx, repeats=20):
    """Seconds of the method's own passes on ready-made images: its ``step`` on a batch of the run with
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
