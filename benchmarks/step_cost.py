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


#: Methods whose cost partly comes in lumps rather than per step, and the method functions that do the lumps:
#: Noisy Student relabels the whole unlabeled set with its teacher and evaluates on the test set at every round
#: switch, CoSSL computes features of every labeled and unlabeled image when co-learning starts (on Fashion-MNIST,
#: 60 000 images each), OpenMatch re-selects its pseudo-inliers over the unlabeled set every ``select_every`` steps.
#: Their step is timed and counted without the lumps (the lumps' total is printed).
LUMPS = {"noisy_student": ("_finish_round", "_next_round"), "cossl": ("begin_co_learning",),
         "openmatch": ("select",)}


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
        wrap_lumps(m, method, inside)

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


def step_time(method, dataset, options, steps):
    """Seconds per training step as the loop runs it, without the lumps of :data:`LUMPS` (their total is
    printed)."""
    lumped = [0.0]
    r = train(method, dataset, steps=steps, eval_every=10**6, eval_size=1, progress=False, cache=False,
              trainer_hook=lambda trainer: wrap_lumps(trainer.method, method, seconds=lumped), **options)
    if method in LUMPS:
        print(f"  {method}: {lumped[0]:.1f} s of lumps ({', '.join(LUMPS[method])}) in {steps} steps, left out",
              flush=True)
    return (r.history.records[-1]["time"] - lumped[0]) / steps, r


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
