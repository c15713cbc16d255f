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
import math
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


def fashion_table(preset="real_images", seeds=(0, 1, 2), methods=None, long_steps=8000) -> str:
    """Accuracy (on 2000 fixed test images during training, all 10 000 at the end) against wall seconds, with the
    preset's evaluation cadence (as in the notebooks and the CLI) and the share of the run spent in those
    evaluations; then FixMatch again with ``long_steps`` steps (the 5-minute budget of issue 17)."""
    p = get_preset(preset)
    methods = list(methods or p.methods)
    hard = [2, 4, 6]  # pullover, coat, shirt: the classes that limit every method at this scale
    lines = [f"Preset `{preset}`: {p.dataset}, {p.labels_per_class} labels per class, {p.steps} steps, width "
             f"{p.width}, B = {p.batch_size}, loop settings {json.dumps(p.train_options)}, method options "
             f"{json.dumps(p.method_options)}; seeds {list(seeds)}. The last row is FixMatch with the same settings "
             f"and {long_steps} steps.", "",
             "| method | final accuracy (mean) | seeds | seconds per run | of which evaluation | accuracy at 25 / 50 / 75 "
             "% of the run | pullover / coat / shirt recall |", "|---|---|---|---|---|---|---|"]
    rows = [(m, {}) for m in methods]
    if long_steps and "fixmatch" in methods:
        rows.append(("fixmatch", {"steps": long_steps}))
    for m, extra in rows:
        accs, secs, evals, curves, hard_recall = [], [], [], [], []
        for s in seeds:
            r = train(m, seed=s, progress=False, cache=False, **{**p.run_options(m), **extra})
            accs.append(r.test_accuracy)
            secs.append(r.wall_seconds)
            evals.append(r.extra["eval_seconds"] / r.wall_seconds)
            rec = r.history.records[:-1]
            curves.append({q: next((x["test_acc_report"] for x in rec if x["step"] >= q * r.steps / 4), math.nan)
                           for q in (1, 2, 3)})
            hard_recall.append([r.per_class_accuracy[c] for c in hard])
        mid = [statistics.mean(c[q] for c in curves) for q in (1, 2, 3)]
        hard_mean = [statistics.mean(h[i] for h in hard_recall) for i in range(len(hard))]
        name = m + (f", {extra['steps']} steps" if extra else "")
        lines.append(f"| {name} | {statistics.mean(accs):.1%} | {' / '.join(f'{a:.1%}' for a in accs)} | "
                     f"{statistics.mean(secs):.0f} | {statistics.mean(evals):.1%} | "
                     f"{' / '.join(f'{a:.1%}' for a in mid)} | {' / '.join(f'{a:.0%}' for a in hard_mean)} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def step_cost_table(methods=None, dataset="fashion_mnist") -> str:
    import step_cost

    rows = step_cost.main([*(methods or []), "--dataset", dataset])
    lines = [f"{dataset}, width 16, B = 16, each method's own mu; images through the network per step (with "
             "gradient + without), one training step as the loop runs it, a bare forward + backward of the same "
             "images through the classifier, the method's own passes on the same (ready-made) images with their "
             "backward (decoders, heads and double backward included), and the step's ratio to each "
             "(`benchmarks/README.md`).", "",
             "| method | images / step | step (ms) | bare fwd+bwd (ms) | step / bare | own passes (ms) | step / own |",
             "|---|---|---|---|---|---|---|"]
    for name, n_grad, n_nograd, per_step, bare, own in rows:
        lines.append(f"| {name} | {n_grad} + {n_nograd} | {per_step * 1e3:.1f} | {bare * 1e3:.1f} | "
                     f"{per_step / bare:.2f} | {own * 1e3:.1f} | {per_step / own:.2f} |")
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
    ap.add_argument("--profile", action="store_true", help="where the time of a FixMatch run goes (real_images)")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--write", type=Path, help="write the tables as markdown to this file")
    a = ap.parse_args()
    if not (a.digits or a.fashion or a.step_cost or a.notebook_memory or a.profile or a.all):
        a.digits = True
    sections = [header()]
    print(sections[0], flush=True)
    if a.all or a.step_cost:
        sections += ["## Step cost", step_cost_table(a.methods or None)]
    if a.all or a.profile:
        import profile_run

        sections += ["## Where the time of a run goes", profile_run.table()]
    if a.all or a.fashion:
        sections += ["## Fashion-MNIST, the real-images preset", fashion_table()]
    if a.all or a.digits:
        sections += ["## Digits, every method at its notebook defaults", digits_table(a.methods or list(METHODS))]
    if a.all or a.notebook_memory:
        sections += ["## Notebook memory", notebook_memory()]
    if a.write:
        a.write.write_text("# Benchmark results (generated by `make bench`)\n\n" + "\n\n".join(sections) + "\n")
        print(f"written to {a.write}")
