"""Every method's training step against a bare forward + backward of the same network on the same images.

    python benchmarks/step_cost.py                           # every method, Fashion-MNIST preset settings
    python benchmarks/step_cost.py fixmatch mean_teacher --dataset digits --steps 200 --burst 20

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

The three are timed in turns (:func:`interleaved`): a burst of steps, then each reference on the images that burst
counted, again and again through the run; each ratio is the median of the per-burst ratios. A shared host's speed
drifts from second to second (measured 2026-12-03: ratios of one method timed one after the other moved by up to
0.4, some below 1, which a step that contains the bare pass cannot be); timed in turns, the drift slows the step and
its references alike. Run it alone on an idle machine all the same: every other job inflates the times.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslteach import METHODS, prepare_run  # noqa: E402
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


def own_passes(result, batch, ctx, repeats=20, warmup=3):
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

    seconds = _median_seconds(once, repeats, warmup)
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


def bare_step(model, shape, n_grad, n_nograd, num_classes, repeats=20, warmup=3):
    model = copy.deepcopy(model).train()
    dev = next(model.parameters()).device  # the run's device (a GPU when there is one)
    x = torch.rand(max(n_grad, 1), *shape, device=dev)
    xn = torch.rand(max(n_nograd, 1), *shape, device=dev)
    y = torch.randint(0, num_classes, (max(n_grad, 1),), device=dev)

    def once():
        if n_nograd:
            with torch.no_grad():
                model(xn)
        out = _tensors(model(x))
        loss = F.cross_entropy(out[0].float(), y) + sum(o.float().mean() for o in out[1:] if o.requires_grad)
        model.zero_grad(set_to_none=True)
        loss.backward()

    return _median_seconds(once, repeats, warmup)


def interleaved(method, dataset, options, steps, burst=10, repeats=5):
    """The step, the bare pass and the method's own passes timed *in turns*, so that a shared host whose speed
    drifts (other tenants) slows all three alike: the run's ``steps`` steps (the loop's public pieces,
    ``next_batch`` + ``train_step``, lumps left out) go in bursts of ``burst``; after each burst, the bare forward +
    backward of the images that burst counted and the method's own passes on its last batch, ``repeats`` times each
    (median). Returns ``(name, images with gradient per step, without, step s, bare s, own s, lump seconds)``: the
    seconds are medians over the bursts, and the two ratios the caller prints are medians of the per-burst ratios
    (``ratios``, a list of ``(step / bare, step / own)``) returned last."""
    spec = prepare_run(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False,
                       **options)
    trainer = spec.trainer()
    shape, num_classes = tuple(spec.split.dataset.input_shape), spec.split.num_classes
    counter = _ImageCounter()
    handle = torch.nn.modules.module.register_module_forward_hook(counter)
    rounds = []
    try:
        with trainer.timer.active():
            trainer.setup()
            while trainer.step < steps:
                n, first, lumps = min(burst, steps - trainer.step), len(counter.calls), trainer.timer.total("lump.")
                t = time.perf_counter()
                for _ in range(n):
                    batch = trainer.next_batch()
                    trainer.train_step(batch)
                per_step = (time.perf_counter() - t - (trainer.timer.total("lump.") - lumps)) / n
                calls = counter.calls[first:]
                g = sum(k for k, grad in calls if grad) / n
                ng = sum(k for k, grad in calls if not grad) / n
                bare = bare_step(trainer.model, shape, int(round(g)), int(round(ng)), num_classes, repeats, warmup=1)
                own = own_passes(SimpleNamespace(method_obj=trainer.method, model=trainer.model), batch,
                                 trainer.ctx, repeats, warmup=1)
                rounds.append((per_step, bare, own, g, ng))
    finally:
        handle.remove()
    lump_seconds = {k[len("lump."):]: v for k, v in trainer.timer.seconds.items() if k.startswith("lump.")}
    med = [statistics.median(r[i] for r in rounds) for i in range(3)]
    ratios = [(r[0] / r[1], r[0] / r[2]) for r in rounds]
    n_grad = int(round(statistics.mean(r[3] for r in rounds)))
    n_nograd = int(round(statistics.mean(r[4] for r in rounds)))
    return method, n_grad, n_nograd, *med, lump_seconds, ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="*", help="methods (default: every registered method)")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--steps", type=int, default=120, help="timed steps per method, in bursts of --burst")
    ap.add_argument("--burst", type=int, default=10, help="steps per burst (the references are timed after each)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args(argv)
    options = dict(width=a.width, batch_size=a.batch_size, labels_per_class=4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.dataset}, width {a.width}, "
          f"B {a.batch_size}, {a.steps} steps")
    rows = []
    for name in a.methods or list(METHODS):
        *row, lumps, ratios = interleaved(name, a.dataset, options, a.steps, a.burst)
        r_bare, r_own = (statistics.median(r[i] for r in ratios) for i in (0, 1))
        rows.append((*row, lumps, r_bare, r_own))
        _, n_grad, n_nograd, per_step, bare, own = row
        if lumps:
            print(f"  {name}: {sum(lumps.values()):.1f} s of lumps ({', '.join(lumps)}) in {a.steps} steps, left out",
                  flush=True)
        print(f"| {name} | {n_grad} + {n_nograd} | {per_step * 1e3:.1f} | {bare * 1e3:.1f} | {r_bare:.2f} "
              f"| {own * 1e3:.1f} | {r_own:.2f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
