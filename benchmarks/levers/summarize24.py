"""Tables of the lever search of issue 24 from runs-24-<method>.jsonl: per group of runs that share every option
but the arm (dataset, labels per class, the --set options), each arm's per-seed accuracies, mean, and the gain per
seed over a baseline arm of the same group. When a (arm, seed) was run twice the last line wins.

    .venv/bin/python benchmarks/levers/summarize24.py swwae --base sup
    .venv/bin/python benchmarks/levers/summarize24.py cossl --base no_tfe --metric tail_accuracy
"""
import argparse
import importlib
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

p = argparse.ArgumentParser()
p.add_argument("method", choices=("swwae", "inversion", "cossl"))
p.add_argument("--base", default="sup", help="the baseline arm of each group")
p.add_argument("--metric", default="accuracy", help="accuracy | balanced_accuracy | tail_accuracy")
p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
p.add_argument("--base-ignores", nargs="*", default=["separate_passes", "mid_stop_grad"],
               help="options that do not change the baseline arm: a group without a baseline of its own takes it "
                    "from the group without these options (e.g. separate_passes does nothing when lambda = 0)")
a = p.parse_args()
ARMS = importlib.import_module(f"{a.method}_levers").ARMS

groups = defaultdict(dict)
secs = defaultdict(list)
for line in open(HERE / f"runs-24-{a.method}.jsonl"):
    r = json.loads(line)
    common = {k: v for k, v in r["options"].items() if not (k in ARMS[r["arm"]] and ARMS[r["arm"]][k] == v)}
    key = (r["dataset"], r["labels_per_class"], json.dumps(common, sort_keys=True))
    groups[key].setdefault(r["arm"], {})[r["seed"]] = r[a.metric]
    if not r["from_cache"]:
        secs[(key, r["arm"])].append(r["seconds"])

for key in sorted(groups):
    arms = groups[key]
    c = {k: v for k, v in json.loads(key[2]).items() if k not in a.base_ignores}
    base = {**groups.get((key[0], key[1], json.dumps(c, sort_keys=True)), {}).get(a.base, {}),
            **arms.get(a.base, {})}  # the group's own baseline runs first, per seed
    print(f"\n### {key[0]}, {key[1]} labels/class, options {key[2]}  ({a.metric})\n")
    print("| arm | " + " | ".join(f"seed {s}" for s in a.seeds) + " | mean | gain vs " + a.base
          + " per seed | s/run under load |")
    print("|---|" + "---|" * (len(a.seeds) + 3))
    for arm, accs in arms.items():
        vals = [accs.get(s) for s in a.seeds]
        have = [v for v in vals if v is not None]
        mean = f"{sum(have) / len(have):.1f}" if have else "-"
        gains = [None if (v is None or base.get(s) is None) else v - base[s] for s, v in zip(a.seeds, vals)]
        g = " / ".join("-" if x is None else f"{x:+.1f}" for x in gains) if arm != a.base else ""
        sec = secs.get((key, arm))
        print(f"| {arm} | " + " | ".join("-" if v is None else f"{v:.1f}" for v in vals) + f" | {mean} | {g} | "
              + (f"{min(sec):.0f}-{max(sec):.0f}" if sec else "-") + " |")
