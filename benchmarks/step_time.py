"""How much does a FixMatch step cost, and what does FixMatch buy on Fashion-MNIST with 4 labels per class?

    python benchmarks/step_time.py                     # both parts: a few minutes on 2 CPU cores
    python benchmarks/step_time.py --skip-fashion      # step time only (under a minute)
    python benchmarks/step_time.py --fashion-steps 1000 --fashion-width 32 --fashion-batch-size 32  # package defaults

Part 1 - step time. The median wall time of one FixMatch training step as the training loop runs it (sampling,
weak + strong augmentation, one forward pass over B + 2 mu B images, backward, SGD step, learning-rate schedule, EMA
update, logging) against a *bare* forward + backward of the same model on the same number of ready-made images (no
augmentation, no optimizer). The two are timed alternately, step by step, so that other jobs on the machine slow
both alike; their ratio is the cost of everything around the network. The augmentation alone is timed too.

Part 2 - Fashion-MNIST, 4 labels per class (40 labeled, 59 960 unlabeled, 10 000 test images): FixMatch against the
supervised baseline on the same split, test accuracy and run time. At the package defaults (1000 steps, B = 32,
mu = 7, small CNN of width 32) a FixMatch step pushes 480 images of 28x28 through the CNN: more than an hour on
2 CPU cores. The default here is a documented smaller setting (600 steps, B = 16, mu = 7, CNN width 8; see --help)
meant to take about a minute on 2 free CPU cores; on a GPU, pass the package defaults.

Timings depend on the machine and on what else runs on it: the script prints the thread count and the load average.
On a machine shared with other jobs, run it with ``OMP_NUM_THREADS=1`` (or ``--threads 1``): with 2 OpenMP threads
competing with other processes for 2 cores, CPU training slowed down 20-45x in our measurements (threads spinning
at barriers). Accuracies are seeded and repeat on the CPU (for a given thread count).

Measured on the 2-core development machine, 1 thread, load average 8-9 from other jobs (so every time is inflated
about 3-4x against a free machine; the ratios much less, since both sides are timed alternately):
  digits, SmallCNN width 32, B=32, mu=7 (480 images/step): FixMatch step 150 ms, bare fwd+bwd 147 ms, ratio 1.02
      (augmentation alone 11 ms)
  fashion_mnist, width 8, B=16, mu=7 (240 images/step): step 244 ms, bare 220 ms, ratio 1.11 (augmentation 23 ms)
  fashion_mnist, 4 labels/class, 600 steps, B=16, width 8: supervised 63.5 % (32 s), FixMatch 65.5 % (134 s; final
      mask rate 56 %, pseudo-label accuracy 81 %); 300 steps, B=32: 53.6 % vs 56.1 %.
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
from sslteach.data import IndexSampler, to_float  # noqa: E402
from sslteach.methods import get_method  # noqa: E402
from sslteach.models import count_parameters, make_model  # noqa: E402
from sslteach.train import EMA, Batch, Context, TrainConfig, Trainer, _param_groups, cosine_lr_factor  # noqa: E402
from sslteach.utils import describe_device, get_device, seed_everything  # noqa: E402


#: The documented Fashion-MNIST setting that fits about a minute of FixMatch on 2 free CPU cores.
FASHION_DEFAULTS = {"steps": 600, "width": 8, "batch_size": 16, "mu": 7, "eval_every": 100}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_time(dataset: str, steps: int, warmup: int, device: str, batch_size: int, mu: int, width: int,
              model_name: str) -> dict:
    """Median ms of one FixMatch training step vs a bare forward+backward of the same model on the same number of
    images. The two are timed *alternately*, step by step, so background load hits both alike."""
    dev = get_device(device)
    ds = load_dataset(dataset)
    split = balanced_split(ds, 4, seed=0).to(dev)
    seed_everything(0)
    cfg = TrainConfig(batch_size=batch_size, device=device, width=width, model=model_name)
    autocast = Trainer(get_method("fixmatch", mu=mu), split, cfg)._autocast()
    g = torch.Generator().manual_seed(0)
    aug = for_dataset(ds)

    # (a) a FixMatch step exactly as Trainer.fit runs it: sample, augment, forward, backward, SGD, schedule, EMA, logs
    method = get_method("fixmatch", mu=mu)
    model = make_model(model_name, ds.input_shape, ds.num_classes, width=width).to(dev).train()
    opt = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: cosine_lr_factor(k, warmup + steps))
    ema = EMA(model, cfg.ema_decay)
    ctx = Context(aug, 0, warmup + steps, dev, split.num_classes, len(split.y_ulb), autocast)
    lb = IndexSampler(len(split.y_lb), batch_size, g, dev)
    ulb = IndexSampler(len(split.y_ulb), mu * batch_size, g, dev)

    def fixmatch_step():
        i_lb, i_ulb = next(lb), next(ulb)
        batch = Batch(to_float(split.x_lb[i_lb]), split.y_lb[i_lb], to_float(split.x_ulb[i_ulb]), split.y_ulb[i_ulb])
        with autocast():
            loss, logs = method.step(model, batch, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)
        return {k: float(v) for k, v in logs.items()}  # the loop logs every step (a device sync on a GPU)

    # (b) the same architecture, a bare forward + backward on B + 2 mu B ready-made images (no augmentation,
    #     no optimizer)
    bare = make_model(model_name, ds.input_shape, ds.num_classes, width=width).to(dev).train()
    n = batch_size * (1 + 2 * mu)
    x = torch.rand(n, *ds.input_shape, device=dev)
    y = torch.randint(0, ds.num_classes, (n,), device=dev)

    def fwd_bwd():
        bare.zero_grad(set_to_none=True)
        with autocast():
            logits, _ = bare(x)
        F.cross_entropy(logits.float(), y).backward()

    # (c) the augmentation of one batch alone
    x_lb = to_float(split.x_lb[next(lb)])
    x_ulb = to_float(split.x_ulb[next(ulb)])

    def augment_only():
        aug.weak(x_lb), aug.weak(x_ulb), aug.strong(x_ulb)

    times = {"step": [], "bare": [], "aug": []}
    for i in range(warmup + steps):
        for key, fn in (("step", fixmatch_step), ("bare", fwd_bwd), ("aug", augment_only)):
            _sync(dev)
            t = time.perf_counter()
            fn()
            _sync(dev)
            if i >= warmup:
                times[key].append(time.perf_counter() - t)
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    pair_ratio = statistics.median(a / b for a, b in zip(times["step"], times["bare"]))
    return {"dataset": dataset, "device": describe_device(dev), "model": type(model).__name__,
            "parameters": count_parameters(model), "batch_images": n, "batch_size": batch_size, "mu": mu,
            "timed_steps": steps, "fixmatch_step_ms": ms["step"], "bare_fwd_bwd_ms": ms["bare"],
            "ratio": ms["step"] / ms["bare"], "ratio_median_of_pairs": pair_ratio, "augment_ms": ms["aug"]}


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
    print(f"  FixMatch training step (median of {st['timed_steps']}):          {st['fixmatch_step_ms']:8.1f} ms")
    print(f"  bare forward+backward, same model and batch size:     {st['bare_fwd_bwd_ms']:8.1f} ms")
    print(f"  ratio step / bare:                                     {st['ratio']:8.2f} x "
          f"(median of per-step ratios: {st['ratio_median_of_pairs']:.2f} x)")
    print(f"  weak+strong augmentation of the batch alone:           {st['augment_ms']:8.1f} ms")

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
