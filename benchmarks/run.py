"""The benchmark behind the numbers in README / RESULTS.md. Run alone on an idle machine: `make bench`.

    python benchmarks/run.py                      # every method, 3 seeds, digits, 2 labels/class, default settings
    python benchmarks/run.py fixmatch supervised  # only these
    python benchmarks/run.py --step-time          # one training step vs a bare forward+backward
    python benchmarks/run.py --notebook-memory    # peak memory and time of executing 00_start_here
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslteach import METHODS, TrainConfig, balanced_split, get_method, load_dataset, train  # noqa: E402
from sslteach.data import to_float  # noqa: E402
from sslteach.models import make_model  # noqa: E402


def methods_table(names, seeds=(0, 1, 2)):
    rows = []
    for name in names:
        runs = [train(name, "digits", labels_per_class=2, seed=s, progress=False) for s in seeds]
        accs = [r.test_accuracy for r in runs]
        secs = [r.wall_seconds for r in runs]
        rows.append((name, accs, secs))
        print(f"{name:22s} mean {statistics.mean(accs):6.1%}  seeds {' '.join(f'{a:.1%}' for a in accs)}  "
              f"seconds/run {statistics.mean(secs):5.1f} (max {max(secs):.1f})", flush=True)
    return rows


def step_time(method="supervised", steps=300, repeats=3):
    """Median seconds per step of the full trainer step vs a bare forward+backward of the same model on a batch of
    the same size (the forward pass covers every view the method feeds the network)."""
    cfg = TrainConfig(steps=steps, eval_every=10**6, eval_size=1, progress=False, ema_decay=0.99)
    split = balanced_split(load_dataset("digits"), 2, seed=0)
    full = []
    for _ in range(repeats):
        r = train(method, split=split, **{k: getattr(cfg, k) for k in ("steps", "eval_every", "eval_size",
                                                                          "progress")})
        t_steps = r.history.records[-1]["time"]  # time at the final evaluation = the steps (+ one tiny eval)
        full.append(t_steps / steps)
    m = get_method(method)
    n = cfg.batch_size
    if m.unlabeled_ratio() > 0:
        n += 2 * int(m.unlabeled_ratio() * cfg.batch_size)  # weak + strong unlabeled views
    model = make_model("auto", (1, 8, 8), 10)
    x = to_float(split.x_ulb[:n]) if n <= len(split.x_ulb) else torch.rand(n, 1, 8, 8)
    y = torch.randint(0, 10, (n,))
    bare = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            logits, _ = model(x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            model.zero_grad(set_to_none=True)
            loss.backward()
        bare.append((time.perf_counter() - t) / steps)
    f, b = statistics.median(full), statistics.median(bare)
    print(f"{method}: training step {f * 1e3:.2f} ms, bare forward+backward of the same {n} images "
          f"{b * 1e3:.2f} ms, ratio {f / b:.2f}")
    return f, b


def notebook_memory(name="00_start_here"):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{name}.ipynb"),
                        str(Path(tmp) / "out.ipynb"), "-p", "results_path", str(out), "--cwd",
                        str(ROOT / "notebooks")], check=True, capture_output=True)
        wall = time.perf_counter() - t
        res = json.loads(out.read_text())
    print(f"{name} (default parameters): {wall:.0f} s with kernel start-up, {res['notebook_seconds']:.0f} s of "
          f"cells, kernel peak memory {res['peak_memory_mb']:.0f} MiB")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("methods", nargs="*")
    ap.add_argument("--step-time", action="store_true")
    ap.add_argument("--notebook-memory", action="store_true")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if a.step_time:
        step_time("supervised")
        step_time("fixmatch", steps=100)
    if a.notebook_memory:
        notebook_memory()
    if a.methods or not (a.step_time or a.notebook_memory):
        methods_table(a.methods or list(METHODS))
