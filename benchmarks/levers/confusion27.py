"""Issue 27, what limits Fashion-MNIST with 40 labels: are pullover, coat and shirt *starved* by the threshold (few
of their images pass it, and a lower or class-wise threshold would feed them), or *confused* (the images a lower
threshold lets through are other upper-body garments)? One experiment, read from trained runs:

1. every method at the `real_images` preset (the dataset's CLI defaults, as in `run.py --fashion`), one seed:
   the test confusion of the reported model: where each class's test images go;
2. the trained FixMatch student (eval mode, the plain unlabeled images — the weak view without its flip and shift,
   and without the preset's distribution alignment), a threshold sweep: for each class c and tau, how many unlabeled
   images get the pseudo-label c (as a share of the images of class c) and how many of those are right (precision);
3. the adaptive methods' own training-time record: the last window of `class_trace` (per-class threshold, share of
   each class's images used, precision of the pseudo-labels kept).

One JSON line per run in confusion-27.jsonl; `--from FILE` prints the tables from those lines without training.

    .venv/bin/python benchmarks/levers/confusion27.py --seed 0
    .venv/bin/python benchmarks/levers/confusion27.py --from benchmarks/levers/confusion-27.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from sslteach import prepare_run, run
from sslteach.data import FASHION_CLASSES
from sslteach.evaluation import confusion_matrix, predict_logits
from sslteach.presets import get_preset
from sslteach.viz import pct

HERE = Path(__file__).resolve().parent
UPPER = (0, 2, 3, 4, 6)  # T-shirt/top, pullover, dress, coat, shirt: the upper-body garments
HARD = (2, 4, 6)
TAUS = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)


def sweep(probs: torch.Tensor, y: torch.Tensor, taus=TAUS) -> dict:
    """For each tau: per class c, the share (of the images of class c) of unlabeled images whose pseudo-label is c
    with confidence >= tau, and the precision of those pseudo-labels."""
    conf, pred = probs.max(1)
    k = probs.shape[1]
    out = {}
    for tau in taus:
        keep = conf >= tau
        n = torch.bincount(pred[keep], minlength=k).double()
        right = torch.bincount(pred[keep & (pred == y)], minlength=k).double()
        size = torch.bincount(y, minlength=k).double()
        out[str(tau)] = {"coverage": (n / size).tolist(),
                         "precision": torch.where(n > 0, right / n.clamp_min(1), torch.nan).tolist(),
                         "wrong_from_upper": _wrong_from_upper(pred[keep], y[keep], k)}
    return out


def _wrong_from_upper(pred, y, k) -> list[float]:
    """Per pseudo-label c: the share of its *wrong* pseudo-labels whose true class is an upper-body garment."""
    wrong = pred != y
    allw = torch.bincount(pred[wrong], minlength=k).double()
    up = torch.isin(y, torch.tensor(UPPER))
    upw = torch.bincount(pred[wrong & up], minlength=k).double()
    return torch.where(allw > 0, upw / allw.clamp_min(1), torch.nan).tolist()


def measure(method: str, seed: int, steps: int | None = None) -> dict:
    p = get_preset("real_images")
    options = {**p.run_options(method), **({"steps": steps} if steps else {})}
    spec = prepare_run(method, seed=seed, progress=False, cache=False, **options)
    t = time.perf_counter()
    r = run(spec)
    split = spec.split
    k = split.num_classes
    rec = {"method": method, "seed": seed, "accuracy": r.test_accuracy, "seconds": time.perf_counter() - t,
           "threads": torch.get_num_threads(), "load_at_start": os.getloadavg()[0],
           "test_confusion": confusion_matrix(split.y_test, predict_logits(r.report_model(), split.x_test).argmax(1),
                                              k).tolist()}
    if method == "fixmatch":
        probs = predict_logits(r.model, split.x_ulb).softmax(1).cpu()
        rec["sweep"] = sweep(probs, split.y_ulb.cpu())
    trace = r.extra.get("class_trace")
    if trace:
        rec["last_window"] = {key: trace[-1][key] for key in ("threshold", "mask_rate", "pseudo_precision")}
    print(json.dumps({k2: v for k2, v in rec.items() if k2 in ("method", "seed", "accuracy", "seconds")}), flush=True)
    return rec


def _pct(x) -> str:
    return pct(x, ".0%")


def tables(recs: list[dict]) -> str:
    names = FASHION_CLASSES
    lines = ["Where the test images of each garment go (reported model, share of the class's test images):", "",
             "| method | class | recall | to the other upper-body classes | to the rest | largest confusion |",
             "|---|---|---|---|---|---|"]
    for r in recs:
        m = r["test_confusion"]
        for c in (*HARD, 3, 0):
            row, tot = m[c], sum(m[c])
            others = sum(row[j] for j in UPPER if j != c)
            big = max((j for j in range(len(row)) if j != c), key=lambda j: row[j])
            lines.append(f"| {r['method']} | {names[c]} | {_pct(row[c] / tot)} | {_pct(others / tot)} | "
                         f"{_pct((tot - row[c] - others) / tot)} | {names[big]} {_pct(row[big] / tot)} |")
    fm = next((r for r in recs if "sweep" in r), None)
    if fm:
        lines += ["", "FixMatch's trained student on the unlabeled images: images pseudo-labelled c with confidence "
                  ">= tau (as a share of the images of class c) / precision of those pseudo-labels:", "",
                  "| class | " + " | ".join(f"tau {t}" for t in fm["sweep"]) + " |", "|---|" + "---|" * len(fm["sweep"])]
        for c in range(len(names)):
            cells = [f"{_pct(s['coverage'][c])} / {_pct(s['precision'][c])}" for s in fm["sweep"].values()]
            lines.append(f"| {names[c]} | " + " | ".join(cells) + " |")
        lo = fm["sweep"][str(min(TAUS))]
        lines += ["", "At tau " + str(min(TAUS)) + ", the share of the wrong pseudo-labels of pullover / coat / shirt "
                  "whose image is another upper-body garment: "
                  + " / ".join(_pct(lo["wrong_from_upper"][c]) for c in HARD) + "."]
    ad = [r for r in recs if "last_window" in r]
    if ad:
        lines += ["", "The adaptive methods' last training window (threshold; share of the class's unlabeled images "
                  "used; precision of the pseudo-labels kept):", "",
                  "| method | " + " | ".join(names[c] for c in (*HARD, 1, 7)) + " |", "|---|" + "---|" * 5]
        for r in ad:
            w = r["last_window"]
            lines.append(f"| {r['method']} | " + " | ".join(
                f"{w['threshold'][c]:.2f}; {_pct(w['mask_rate'][c])}; {_pct(w['pseudo_precision'][c])}"
                for c in (*HARD, 1, 7)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="*", default=["supervised", "fixmatch", "freematch", "softmatch"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="fewer steps than the preset's (a smoke test)")
    ap.add_argument("--log", type=Path, default=HERE / "confusion-27.jsonl")
    ap.add_argument("--from", dest="src", type=Path, help="print the tables from these records, no training")
    a = ap.parse_args()
    if a.src:
        records = [json.loads(line) for line in a.src.read_text().splitlines() if line.strip()]
    else:
        records = []
        for name in a.methods:
            records.append(measure(name, a.seed, a.steps))
            with open(a.log, "a") as f:
                f.write(json.dumps(records[-1]) + "\n")
    print(tables(records))
