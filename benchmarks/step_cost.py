"""Every method's training step against a bare forward + backward of the same network on the same images.

    python benchmarks/step_cost.py                           # every method, Fashion-MNIST preset settings
    python benchmarks/step_cost.py fixmatch mean_teacher --dataset digits --steps 200

For each method, a short run (no evaluation until the end) gives the time of one training step as the loop runs it:
sampling, augmentation, every forward pass (student, teacher, EMA copy, heads, decoders), backward, SGD, schedule,
EMA update, logging. A forward hook counts the images that pass through the network in a step, with and without
gradient; the *bare* cost is a forward + backward of that many ready-made images (plus the no-gradient forwards,
e.g. a teacher's) through a copy of the same network, nothing else. The ratio is the cost of everything around the
network; a method with extra networks of its own (a decoder, a projection head, a second classifier) pays those
inside its step, so its ratio says how much they cost.

Run it alone on an idle machine: every other job inflates the times (the ratio less so).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslteach import METHODS, load_dataset, train  # noqa: E402


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


def count_images(method, dataset, options, steps=8):
    """(images forwarded with gradient, without gradient) per step, and the trained network."""
    probe = train(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False, **options)
    # every pass through the network (student, teacher copy, EMA copy) goes through its first layer: count there
    first = next(m for m in probe.model.modules() if not list(m.children()) and any(True for _ in m.parameters()))
    first_type, first_shape = type(first), tuple(first.weight.shape)
    calls, inside = [], [False]

    def hook(module, inputs, output):
        if (inside[0] and type(module) is first_type and tuple(module.weight.shape) == first_shape and inputs
                and isinstance(inputs[0], torch.Tensor)):
            calls.append((inputs[0].shape[0], torch.is_grad_enabled()))

    def wrap_step(trainer):  # count only the forwards inside the method's step (not the evaluations)
        m = trainer.method
        orig = m.step

        def step(*args, **kwargs):
            inside[0] = True
            try:
                return orig(*args, **kwargs)
            finally:
                inside[0] = False

        m.step = step

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        r = train(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False,
                  trainer_hook=wrap_step, **options)
    finally:
        handle.remove()
    grad = sum(n for n, g in calls if g) / steps
    nograd = sum(n for n, g in calls if not g) / steps
    return int(round(grad)), int(round(nograd)), r.model


def bare_step(model, shape, n_grad, n_nograd, num_classes, repeats=20):
    model = copy.deepcopy(model).train()
    x = torch.rand(max(n_grad, 1), *shape)
    xn = torch.rand(max(n_nograd, 1), *shape)
    y = torch.randint(0, num_classes, (max(n_grad, 1),))
    times = []
    for i in range(repeats + 3):
        t = time.perf_counter()
        if n_nograd:
            with torch.no_grad():
                model(xn)
        out = _tensors(model(x))
        loss = F.cross_entropy(out[0].float(), y) + sum(o.float().mean() for o in out[1:] if o.requires_grad)
        model.zero_grad(set_to_none=True)
        loss.backward()
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_time(method, dataset, options, steps):
    r = train(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False, **options)
    return r.history.records[-1]["time"] / steps, r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="*", help="methods (default: every registered method)")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per method")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    a = ap.parse_args(argv)
    options = dict(width=a.width, batch_size=a.batch_size, labels_per_class=4)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {a.dataset}, width {a.width}, "
          f"B {a.batch_size}, {a.steps} steps")
    rows = []
    for name in a.methods or list(METHODS):
        n_grad, n_nograd, model = count_images(name, a.dataset, options)
        per_step, r = step_time(name, a.dataset, options, a.steps)
        ds = load_dataset(a.dataset)
        bare = bare_step(model, tuple(ds.input_shape), n_grad, n_nograd, ds.num_classes)
        rows.append((name, n_grad, n_nograd, per_step, bare))
        print(f"| {name} | {n_grad} + {n_nograd} | {per_step * 1e3:.1f} | {bare * 1e3:.1f} | {per_step / bare:.2f} |",
              flush=True)
    return rows


if __name__ == "__main__":
    main()
