"""Shared runner of the lever search of issue 24 (swwae_levers.py, inversion_levers.py, cossl_levers.py).

Each script names its arms (a dict of ``train(...)`` options per arm); this module parses the command line, trains
every (arm, seed) through the public API (``sslteach.train``) with a run cache under ``/tmp/levers-cache``, and
appends one JSON line per run to ``benchmarks/levers/runs-24-<method>.jsonl``: the arm, every option given, the
resolved method and loop configs, the seed, the accuracies (overall, balanced, tail on a long-tailed split), the
method's last logged diagnostics, the seconds the run took and the load average around it.

Seconds measured on a loaded 2-core machine are not timings of an idle one: every line carries ``loadavg_before`` /
``loadavg_after`` so a reader can tell.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
CACHE_ROOT = Path(os.environ.get("LEVERS_CACHE", "/tmp/levers-cache"))


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a plain string ("adam", "weak")


def parse_kv(items) -> dict:
    """``["lr=0.01", "optimizer=adam"]`` -> ``{"lr": 0.01, "optimizer": "adam"}``."""
    out = {}
    for it in items or []:
        k, _, v = it.partition("=")
        if not _:
            raise SystemExit(f"expected key=value, got {it!r}")
        out[k.strip()] = _value(v.strip())
    return out


def parser(method: str, arms: dict, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arms", nargs="+", default=None,
                   help="arms to run (default: all), from: " + ", ".join(arms))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (= labeled splits), default 0 1 2")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--lpc", type=int, default=2, help="labels per class")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="options applied to every arm (they override the arm's own): e.g. augment=False steps=2000")
    p.add_argument("--tag", default="", help="a free label stored with each run (the lever's name)")
    p.add_argument("--out", default=str(HERE / f"runs-24-{method}.jsonl"))
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--list", action="store_true", help="print the arms and exit")
    return p


def _last(history, key):
    v = history.last(key)
    return None if v is None else round(float(v), 5)


def run_arms(method: str, arms: dict, args, diagnostics=(), extra=None) -> list[dict]:
    """Train every requested arm on every seed; append and return the JSON records."""
    from sslteach import train
    from sslteach.cache import code_digest

    torch.set_num_threads(1)
    if args.list:
        for k, v in arms.items():
            print(f"{k:>24}: {v}")
        return []
    names = args.arms or list(arms)
    unknown = [n for n in names if n not in arms]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; known: {', '.join(arms)}")
    common = parse_kv(args.set)
    cache = False if args.no_cache else str(CACHE_ROOT / method)
    digest = code_digest()
    out = []
    for name in names:
        for seed in args.seeds:
            opts = {**arms[name], **common}
            load0 = os.getloadavg()
            t0, c0 = time.perf_counter(), time.process_time()
            r = train(method, args.dataset, labels_per_class=args.lpc, seed=seed, cache=cache, progress=False,
                      **opts)
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            rec = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "tag": args.tag, "method": method, "arm": name,
                   "dataset": args.dataset, "labels_per_class": args.lpc, "seed": seed, "options": opts,
                   "accuracy": round(100 * r.test_accuracy, 2),
                   "balanced_accuracy": round(100 * r.balanced_accuracy, 2),
                   "tail_accuracy": None if r.tail_accuracy is None else round(100 * r.tail_accuracy, 2),
                   "per_class": [round(100 * c, 1) for c in r.per_class_accuracy],
                   "diagnostics": {k: _last(r.history, k) for k in ("loss_x", "loss_u", *diagnostics)},
                   "curve": {str(s): round(100 * v, 1) for s, v in zip(*r.history.series("test_acc_report"))
                             if s % 250 == 0 or s == r.steps_done},
                   "seconds": round(secs, 1), "cpu_seconds": round(cpu, 1), "from_cache": r.from_cache, "wall_seconds": round(r.wall_seconds, 1),
                   "loadavg_before": [round(x, 2) for x in load0],
                   "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                   "threads": torch.get_num_threads(), "code_digest": digest,
                   "method_config": r.method_config, "train_config": {k: v for k, v in r.train_config.items()
                                                                      if k not in ("progress",)},
                   "split": {k: v for k, v in (r.split or {}).items() if not isinstance(v, (list, dict))
                             or k == "tail_classes"}}
            if extra is not None:
                rec.update(extra(r))
            with open(args.out, "a") as f:
                f.write(json.dumps(rec, default=str) + "\n")
            out.append(rec)
            tail = f" tail {rec['tail_accuracy']:.1f}" if rec["tail_accuracy"] is not None else ""
            print(f"{name:>22} seed {seed}: {rec['accuracy']:.2f} % (bal {rec['balanced_accuracy']:.1f}{tail}) "
                  f"{secs:.0f} s{' cached' if r.from_cache else ''} load {load0[0]:.1f}", flush=True)
    return out
