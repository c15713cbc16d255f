"""Issue 24, inversion: why the multiscale loss trails the global one, post hoc. For runs already in the lever cache
(same options as lines of runs-24-inversion.jsonl; read back, not retrained), on the test images and per layer l:

    act      mean squared activation of h^(l), per unit (how large the representation is)
    rel_err  R^(l) / ||h^(l)||^2: the reconstruction error relative to the representation's size
    dead     share of the units of h^(l) (l >= 1) that are zero on every test image

An inner-layer term R^(l) = ||h^(l) - dz/dh^(l)||^2 is also minimised by making h^(l) and its template small, which
the input term cannot do (x is data): if the multiscale runs shrink their inner representations, that is where
their weight goes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/inversion_diagnose.py --lpc 5 --arms sup global multiscale
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

from common24 import CACHE_ROOT, parse_kv, parser  # noqa: E402
from inversion_levers import ARMS  # noqa: E402

if __name__ == "__main__":
    from sslteach import prepare_run, train
    from sslteach.data import to_float
    from sslteach.methods.inversion import templates

    torch.set_num_threads(1)
    args = parser("inversion", ARMS, __doc__).parse_args()
    common = parse_kv(args.set)
    out = Path(args.out).with_name("inversion-diagnose-24.jsonl")
    for name in args.arms or ["sup", "global", "multiscale"]:
        for seed in args.seeds:
            opts = {**ARMS[name], **common}
            kw = dict(labels_per_class=args.lpc, seed=seed, cache=str(CACHE_ROOT / "inversion"), progress=False)
            spec = prepare_run("inversion", args.dataset, **kw, **opts)
            if not spec.cached():
                print(f"{name} seed {seed}: not in the cache, skipped")
                continue
            r = train("inversion", args.dataset, **kw, **opts)
            m = r.report_model().cpu().eval()
            x = to_float(spec.split.x_test)
            _, hs, gs, _ = templates(m, x, "predicted", create_graph=False)
            rec = {"arm": name, "seed": seed, "dataset": args.dataset, "labels_per_class": args.lpc, "options": opts,
                   "accuracy": round(100 * r.test_accuracy, 2),
                   "act": [round(float(h.detach().pow(2).mean()), 5) for h in hs],
                   "rel_err": [round(float((h.detach() - g).pow(2).sum() / h.detach().pow(2).sum().clamp_min(1e-12)), 4)
                               for h, g in zip(hs, gs)],
                   "dead": [None] + [round(float((h.detach().flatten(2).amax(dim=(0, 2)) <= 0).float().mean()
                                                 if h.dim() == 4 else (h.detach().amax(0) <= 0).float().mean()), 3)
                                     for h in hs[1:]]}
            with open(out, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
