"""Issue 24, SWWAE: the BatchNorm confound, post hoc. For runs already in the lever cache (same options as a line of
runs-24-swwae.jsonl: the run is read back, not retrained), re-estimate every BatchNorm layer's running statistics
from one set of images and test again:

    own        the statistics the run ended with (its reported accuracy)
    labeled    recomputed on the labeled images only (what "labels only" training sees)
    unlabeled  recomputed on the unlabeled images
    test       recomputed on the test images (transductive; an upper reference)

If "labels only" beats the arms whose BatchNorm saw unlabeled images only because of the statistics used at test
time, recomputing them removes the gap; if the gap stays, it is in the weights the runs learned.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/bn_recalibrate.py --arms sup sup_bn swwae --set augment=False
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from common24 import CACHE_ROOT, parse_kv, parser  # noqa: E402
from swwae_levers import ARMS  # noqa: E402


@torch.no_grad()
def recalibrated_accuracy(model, x_stats, x_test, y_test, batch=64):
    model = __import__("copy").deepcopy(model)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    perm = torch.randperm(len(x_stats), generator=torch.Generator().manual_seed(0))
    for i in range(0, len(x_stats), batch):
        model(x_stats[perm[i: i + batch]])
    model.eval()
    pred = torch.cat([model(x_test[i: i + 256])[0].argmax(1) for i in range(0, len(x_test), 256)])
    return round(100 * float((pred == y_test).float().mean()), 2)


if __name__ == "__main__":
    from sslteach import prepare_run, train
    from sslteach.data import to_float

    torch.set_num_threads(1)
    p = parser("swwae", ARMS, __doc__)
    args = p.parse_args()
    common = parse_kv(args.set)
    out = Path(args.out).with_name("bn-recalibrate-24.jsonl")
    for name in args.arms or ["sup", "sup_bn", "swwae"]:
        for seed in args.seeds:
            opts = {**ARMS[name], **common}
            spec = prepare_run("swwae", args.dataset, labels_per_class=args.lpc, seed=seed,
                               cache=str(CACHE_ROOT / "swwae"), progress=False, **opts)
            if not spec.cached():
                print(f"{name} seed {seed}: not in the cache, skipped (run swwae_levers.py first)")
                continue
            r = train("swwae", args.dataset, labels_per_class=args.lpc, seed=seed, cache=str(CACHE_ROOT / "swwae"),
                      progress=False, **opts)
            sp = spec.split
            m = r.report_model().cpu()
            xt, yt = to_float(sp.x_test), sp.y_test
            rec = {"arm": name, "seed": seed, "dataset": args.dataset, "labels_per_class": args.lpc, "options": opts,
                   "own": round(100 * r.test_accuracy, 2),
                   "labeled": recalibrated_accuracy(m, to_float(sp.x_lb), xt, yt),
                   "unlabeled": recalibrated_accuracy(m, to_float(sp.x_ulb), xt, yt),
                   "test": recalibrated_accuracy(m, xt, xt, yt)}
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
