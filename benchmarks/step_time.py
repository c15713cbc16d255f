"""How much does a FixMatch step cost, and what does FixMatch buy on Fashion-MNIST with 4 labels per class?

    python benchmarks/step_time.py                      # both parts, about 3 minutes on 2 free CPU cores
    python benchmarks/step_time.py --skip-fashion       # step time only (about 30 s)
    python benchmarks/step_time.py --fashion-steps 1000 --fashion-width 32   # the default CNN (CPU: about an hour)

Part 1 — step time. The median wall time of one FixMatch training step inside the real training loop (sampling,
weak + strong augmentation of the batch, one forward pass over B + 2 mu B images, backward, SGD step, EMA update,
logging), against a *bare* forward + backward of the same model on a same-sized batch of ready-made images (no
augmentation, no optimizer). Their ratio is the overhead of everything around the network. The augmentation and
optimizer+EMA parts are also timed alone.

Part 2 — Fashion-MNIST, 4 labels per class (40 labels, 59 960 unlabeled images, 10 000 test images): FixMatch
against the supervised baseline on the same split, accuracy and run time. FixMatch at the default settings
(1000 steps, B = 32, mu = 7, small CNN of width 32) does ~480 images of 28x28 per step: about an hour on 2 CPU cores,
so the default here is a documented setting that fits about a minute of FixMatch on 2 free CPU cores (see
``--help``); on a GPU, pass the default settings.

Timings depend on the machine and on what else runs on it; the script prints the thread count and the load average
so a reader can judge. Everything is seeded; accuracies repeat on the CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from sslteach import balanced_split, load_dataset, train  # noqa: E402
from sslteach.augment import for_dataset  # noqa: E402
from sslteach.data import to_float  # noqa: E402
from sslteach.methods import get_method  # noqa: E402
from sslteach.models import count_parameters, make_model  # noqa: E402
from sslteach.train import EMA, TrainConfig, Trainer, _param_groups  # noqa: E402
from sslteach.utils import describe_device, get_device, seed_everything  # noqa: E402


#: The documented Fashion-MNIST setting that fits about a minute of FixMatch on 2 free CPU cores.
FASHION_DEFAULTS = {"steps": 300, "width": 8, "batch_size": 32, "mu": 7, "eval_every": 100}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn, repeats: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def step_time(dataset: str, steps: int, warmup: int, device: str, batch_size: int, mu: int, width: int,
              model_name: str) -> dict:
    """Median ms of a FixMatch step in the training loop vs a bare forward+backward on the same batch size."""
    dev = get_device(device)
    ds = load_dataset(dataset)
    split = balanced_split(ds, 4, seed=0)

    # (a) the real loop: time between consecutive on_step callbacks (no evaluation inside the timed window)
    stamps: list[float] = []

    def on_step(trainer, logs):
        _sync(dev)
        stamps.append(time.perf_counter())

    method = get_method("fixmatch", mu=mu)
    cfg = TrainConfig(steps=warmup + steps + 1, batch_size=batch_size, eval_every=10**9, eval_size=256,
                      device=device, progress=False, width=width, model=model_name)
    trainer = Trainer(method, split, cfg)
    trainer.add_callback("on_step", on_step)
    trainer.fit()
    gaps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    loop_ms = 1000 * statistics.median(gaps)

    # (b) the same model, a bare forward + backward on B + 2 mu B ready-made images
    seed_everything(0)
    model = make_model(model_name, ds.input_shape, ds.num_classes, width=width).to(dev).train()
    n = batch_size * (1 + 2 * mu)
    x = torch.rand(n, *ds.input_shape, device=dev)
    y = torch.randint(0, ds.num_classes, (n,), device=dev)
    autocast = trainer._autocast()

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        with autocast():
            logits, _ = model(x)
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()

    bare_ms = _median_ms(fwd_bwd, steps, warmup, dev)

    # (c) the parts around it: augmentation of one batch, optimizer step + EMA update
    aug = for_dataset(ds)
    x_lb = to_float(split.x_lb[torch.randint(0, len(split.y_lb), (batch_size,))]).to(dev)
    x_ulb = to_float(split.x_ulb[torch.randint(0, len(split.y_ulb), (mu * batch_size,))]).to(dev)
    aug_ms = _median_ms(lambda: (aug.weak(x_lb), aug.weak(x_ulb), aug.strong(x_ulb)), steps, warmup, dev)
    opt = torch.optim.SGD(_param_groups(model, 5e-4), lr=0.03, momentum=0.9, nesterov=True)
    ema = EMA(model, 0.99)
    fwd_bwd()

    def opt_ema():
        opt.step()
        ema.update(model)

    opt_ms = _median_ms(opt_ema, steps, warmup, dev)
    return {"dataset": dataset, "device": describe_device(dev), "model": type(model).__name__,
            "parameters": count_parameters(model), "batch_images": n, "batch_size": batch_size, "mu": mu,
            "timed_steps": len(gaps), "fixmatch_step_ms": loop_ms, "bare_fwd_bwd_ms": bare_ms,
            "ratio": loop_ms / bare_ms, "augment_ms": aug_ms, "optimizer_ema_ms": opt_ms}


def fashion(labels_per_class: int, steps: int, width: int, batch_size: int, mu: int, eval_every: int, seed: int,
            device: str) -> dict:
    opts = dict(steps=steps, width=width, batch_size=batch_size, eval_every=eval_every, seed=seed, device=device,
                progress=False)
    split = balanced_split(load_dataset("fashion_mnist"), labels_per_class, seed=seed)
    sup = train("supervised", split=split, **opts)
    fm = train("fixmatch", split=split, mu=mu, **opts)
    return {"labels_per_class": labels_per_class, "seed": seed, "settings": {**opts, "mu": mu},
            "supervised_accuracy": sup.test_accuracy, "supervised_seconds": sup.wall_seconds,
            "fixmatch_accuracy": fm.test_accuracy, "fixmatch_seconds": fm.wall_seconds,
            "fixmatch_final_mask_rate": fm.history.last("mask_rate"),
            "fixmatch_final_pseudo_acc": fm.history.last("pseudo_acc")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", help="dataset for the step-time part (default: digits)")
    p.add_argument("--steps", type=int, default=40, help="timed steps (default: 40)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    p.add_argument("--batch-size", type=int, default=32, help="B (default: 32, the CPU default)")
    p.add_argument("--mu", type=int, default=7, help="mu (default: 7, the paper's)")
    p.add_argument("--model", default="auto", help="auto | cnn | wrn28_2 | mlp (default: auto)")
    p.add_argument("--width", type=int, default=32, help="small CNN width for the step-time part (default: 32)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: leave as is)")
    p.add_argument("--skip-fashion", action="store_true", help="only the step-time part")
    p.add_argument("--fashion-labels", type=int, default=4, help="labels per class (default: 4)")
    p.add_argument("--fashion-steps", type=int, default=FASHION_DEFAULTS["steps"],
                   help=f"steps (default: {FASHION_DEFAULTS['steps']}; the package default is 1000)")
    p.add_argument("--fashion-width", type=int, default=FASHION_DEFAULTS["width"],
                   help=f"small CNN width (default: {FASHION_DEFAULTS['width']}; the package default is 32)")
    p.add_argument("--fashion-batch-size", type=int, default=FASHION_DEFAULTS["batch_size"],
                   help=f"B (default: {FASHION_DEFAULTS['batch_size']}; the package default is 32)")
    p.add_argument("--fashion-mu", type=int, default=FASHION_DEFAULTS["mu"],
                   help=f"mu (default: {FASHION_DEFAULTS['mu']}; the paper's is 7)")
    p.add_argument("--fashion-eval-every", type=int, default=FASHION_DEFAULTS["eval_every"],
                   help=f"steps between evaluations on 2000 test images (default: {FASHION_DEFAULTS['eval_every']})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="also write the numbers as JSON here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} cores, "
          f"load average {load:.1f} (other jobs inflate every timing)")
    out = {"threads": torch.get_num_threads(), "load_average_start": load}

    st = step_time(a.dataset, a.steps, a.warmup, a.device, a.batch_size, a.mu, a.width, a.model)
    out["step_time"] = st
    print(f"\n[step time] FixMatch on {st['dataset']}, {st['model']} ({st['parameters']:,} parameters), "
          f"B={st['batch_size']}, mu={st['mu']}: {st['batch_images']} images per forward pass, {st['device']}")
    print(f"  FixMatch training step (loop, median of {st['timed_steps']}): {st['fixmatch_step_ms']:8.1f} ms")
    print(f"  bare forward+backward, same model and batch size:     {st['bare_fwd_bwd_ms']:8.1f} ms")
    print(f"  ratio step / bare:                                     {st['ratio']:8.2f} x")
    print(f"  of which weak+strong augmentation of the batch:        {st['augment_ms']:8.1f} ms")
    print(f"  of which SGD step + EMA update:                        {st['optimizer_ema_ms']:8.1f} ms")

    if not a.skip_fashion:
        try:
            fr = fashion(a.fashion_labels, a.fashion_steps, a.fashion_width, a.fashion_batch_size, a.fashion_mu,
                         a.fashion_eval_every, a.seed, a.device)
        except RuntimeError as e:  # DatasetUnavailableError
            print(f"\n[fashion_mnist] skipped: {e}")
        else:
            out["fashion_mnist"] = fr
            s = fr["settings"]
            print(f"\n[fashion_mnist] {fr['labels_per_class']} labels/class, seed {fr['seed']}: steps={s['steps']}, "
                  f"B={s['batch_size']}, mu={s['mu']}, CNN width={s['width']}")
            print(f"  supervised: {fr['supervised_accuracy']:.1%} in {fr['supervised_seconds']:.0f} s")
            print(f"  FixMatch:   {fr['fixmatch_accuracy']:.1%} in {fr['fixmatch_seconds']:.0f} s "
                  f"(final mask rate {fr['fixmatch_final_mask_rate']:.0%}, "
                  f"pseudo-label accuracy {fr['fixmatch_final_pseudo_acc'] or float('nan'):.0%})")
    out["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
