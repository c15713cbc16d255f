"""The benchmark behind the numbers in README and benchmarks/RESULTS.md. Run it alone on an idle machine:

    make bench                                    # everything below, written to benchmarks/RESULTS.md (~35 min)
    python benchmarks/run.py --digits             # every method, 3 seeds, digits, 2 labels/class, default settings
    python benchmarks/run.py --fashion            # the "real images" preset: accuracy against time, 3 seeds
    python benchmarks/run.py --step-cost          # every method's step against a bare forward + backward
    python benchmarks/run.py --notebook-memory    # peak memory and time of executing 00_start_here
    python benchmarks/run.py --all --write benchmarks/RESULTS.md

Every table says what it measured; the header gives the machine, torch version, thread count, date and the load
average before the run (anything else running on the machine inflates every time).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sslteach import METHODS, train  # noqa: E402
from sslteach.presets import get_preset  # noqa: E402


def header() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"Measured {datetime.date.today().isoformat()} on {platform.machine()} {os.cpu_count()} CPU cores "
            f"({platform.processor() or platform.platform()}), {gpu}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} intra-op threads, load average {os.getloadavg()[0]:.2f} at the start.")


def digits_table(names, seeds=(0, 1, 2)) -> str:
    lines = ["| method | mean accuracy | seeds | seconds per run (max) |", "|---|---|---|---|"]
    for name in names:
        runs = [train(name, "digits", labels_per_class=2, seed=s, progress=False, cache=False) for s in seeds]
        accs, secs = [r.test_accuracy for r in runs], [r.wall_seconds for r in runs]
        lines.append(f"| {name} | {statistics.mean(accs):.1%} | {' / '.join(f'{a:.1%}' for a in accs)} | "
                     f"{statistics.mean(secs):.1f} ({max(secs):.1f}) |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def fashion_table(preset="real_images", seeds=(0, 1, 2), methods=None) -> str:
    """Accuracy (on 2000 fixed test images during training, all 10 000 at the end) against wall seconds."""
    p = get_preset(preset)
    methods = list(methods or p.methods)
    lines = [f"Preset `{preset}`: {p.dataset}, {p.labels_per_class} labels per class, {p.steps} steps, width "
             f"{p.width}, B = {p.batch_size}, method options {json.dumps(p.method_options)}; seeds "
             f"{list(seeds)}.", "",
             "| method | final accuracy (mean) | seeds | seconds per run | accuracy at 25 / 50 / 75 % of the run |",
             "|---|---|---|---|---|"]
    for m in methods:
        accs, secs, curves = [], [], []
        for s in seeds:
            r = train(m, seed=s, progress=False, cache=False, eval_every=max(1, p.steps // 4), eval_size=2000,
                      **p.run_options(m))
            accs.append(r.test_accuracy)
            secs.append(r.wall_seconds)
            curves.append([rec["test_acc_report"] for rec in r.history.records[:-1]])
        mid = [statistics.mean(c[i] for c in curves) for i in range(min(len(c) for c in curves))]
        lines.append(f"| {m} | {statistics.mean(accs):.1%} | {' / '.join(f'{a:.1%}' for a in accs)} | "
                     f"{statistics.mean(secs):.0f} | {' / '.join(f'{a:.1%}' for a in mid[:3])} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def step_cost_table(methods=None, dataset="fashion_mnist") -> str:
    import step_cost

    rows = step_cost.main([*(methods or []), "--dataset", dataset])
    lines = [f"{dataset}, width 16, B = 16, each method's own mu; images through the network per step (with "
             "gradient + without), one training step as the loop runs it, a bare forward + backward of the same "
             "images, and their ratio.", "",
             "| method | images / step | step (ms) | bare fwd+bwd (ms) | ratio |", "|---|---|---|---|---|"]
    for name, n_grad, n_nograd, per_step, bare in rows:
        lines.append(f"| {name} | {n_grad} + {n_nograd} | {per_step * 1e3:.1f} | {bare * 1e3:.1f} | "
                     f"{per_step / bare:.2f} |")
    return "\n".join(lines)


def notebook_memory(name="00_start_here") -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{name}.ipynb"),
                        str(Path(tmp) / "out.ipynb"), "-p", "results_path", str(out), "--cwd",
                        str(ROOT / "notebooks")], check=True, capture_output=True)
        wall = time.perf_counter() - t
        res = json.loads(out.read_text())
    line = (f"{name} (default parameters): {wall:.0f} s with kernel start-up, {res['notebook_seconds']:.0f} s of "
            f"cells, kernel peak memory {res['peak_memory_mb']:.0f} MiB")
    print(line)
    return line


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="sslteach benchmarks (run alone on an idle machine)")
    ap.add_argument("methods", nargs="*", help="methods of the digits / step-cost tables (default: all)")
    ap.add_argument("--digits", action="store_true")
    ap.add_argument("--fashion", action="store_true")
    ap.add_argument("--step-cost", action="store_true")
    ap.add_argument("--notebook-memory", action="store_true")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--write", type=Path, help="write the tables as markdown to this file")
    a = ap.parse_args()
    if not (a.digits or a.fashion or a.step_cost or a.notebook_memory or a.all):
        a.digits = True
    sections = [header()]
    print(sections[0], flush=True)
    if a.all or a.step_cost:
        sections += ["## Step cost", step_cost_table(a.methods or None)]
    if a.all or a.fashion:
        sections += ["## Fashion-MNIST, the real-images preset", fashion_table()]
    if a.all or a.digits:
        sections += ["## Digits, every method at its notebook defaults", digits_table(a.methods or list(METHODS))]
    if a.all or a.notebook_memory:
        sections += ["## Notebook memory", notebook_memory()]
    if a.write:
        a.write.write_text("# Benchmark results (generated by `make bench`)\n\n" + "\n\n".join(sections) + "\n")
        print(f"written to {a.write}")
