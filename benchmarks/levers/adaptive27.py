"""Issue 27: FixMatch against FlexMatch, FreeMatch and SoftMatch. One JSON line per (method, arm, seed) in
runs-27.jsonl (the fields of common24.py, plus the last per-class window of the adaptive methods).

Arms (options on top of the dataset's / preset's settings):

    digits        claim scale (width 16, labeled batch 16, eval every 100), 2 labels per class; --set steps=...
    fashion       the `real_images` preset's loop settings (width 16, B 16, 4000 steps, Cutout 0.3, eval every
                  500), 4 labels per class, mu = 3 for every method; FixMatch also with the preset's distribution
                  alignment (arm `fashion`), the adaptive methods without it

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/adaptive27.py --methods fixmatch flexmatch --arm digits \
        --seeds 0 1 2 --set steps=1000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/adaptive27.py --methods flexmatch --arm fashion --seeds 0
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common24 import HERE, run_arms  # noqa: E402

from sslteach.presets import get_preset  # noqa: E402

DIAGNOSTICS = ("mask_rate", "pseudo_acc", "thresh_mean", "thresh_min", "thresh_max", "unused", "tau_t", "loss_fair",
               "mu_t", "sigma_t", "weight_min", "weight_max")


def arms_for(method: str) -> dict:
    real = get_preset("real_images")
    fashion = {k: v for k, v in real.run_options("fixmatch").items()
               if k not in ("dataset", "labels_per_class", "dist_align")}
    if method == "fixmatch":
        fashion["dist_align"] = real.method_options["fixmatch"].get("dist_align", False)
    return {"digits": {"width": 16, "batch_size": 16, "eval_every": 100}, "fashion": fashion}


def last_window(r) -> dict:
    trace = r.extra.get("class_trace") or []
    if not trace:
        return {}
    last = trace[-1]
    return {"class_window": {k: [None if v != v else round(v, 3) for v in last[k]]
                             for k in ("threshold", "mask_rate", "pseudo_acc")}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["fixmatch", "flexmatch", "freematch", "softmatch"])
    p.add_argument("--arm", choices=("digits", "fashion"), default="digits")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default=str(HERE / "runs-27.jsonl"))
    p.add_argument("--no-cache", action="store_true")
    args = p.parse_args()
    dataset, lpc = ("digits", 2) if args.arm == "digits" else ("fashion_mnist", 4)
    for method in args.methods:
        ns = argparse.Namespace(arms=[args.arm], seeds=args.seeds, dataset=dataset, lpc=lpc, set=args.set,
                                tag=args.tag, out=args.out, no_cache=args.no_cache, list=False)
        run_arms(method, arms_for(method), ns, diagnostics=DIAGNOSTICS, extra=last_window)


if __name__ == "__main__":
    main()
