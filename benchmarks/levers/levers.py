"""The lever hunt of issue 17 (2026-11-24): one FixMatch (or other method) run on Fashion-MNIST with 4 labels per
class, with the knobs the library does not expose patched in (which RandAugment operations, zero padding of the weak
shift, distribution alignment before it became ``FixMatch(dist_align=True)``). One JSON line per run on stdout.

    python benchmarks/levers/levers.py --steps 2000 --da 1 --cutout 0.3 --seed 1 --tag da_cut.3_s1

The runs of ``runs-2026-11-24.jsonl`` were made two at a time with one thread each (accuracy only; their seconds
are not timings of an idle machine). What they showed is in ``benchmarks/README.md``.
"""
import argparse, json, time, sys, os
import torch, torch.nn.functional as F
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
import importlib; T = importlib.import_module("sslteach.train"); from sslteach import augment as A
from sslteach.methods.fixmatch import FixMatch, FixMatchConfig

p = argparse.ArgumentParser()
p.add_argument("--method", default="fixmatch")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=1000)
p.add_argument("--width", type=int, default=16)
p.add_argument("--bs", type=int, default=16)
p.add_argument("--mu", type=int, default=3)
p.add_argument("--tau", type=float, default=0.95)
p.add_argument("--lr", type=float, default=0.03)
p.add_argument("--wd", type=float, default=5e-4)
p.add_argument("--ema", type=float, default=0.99)
p.add_argument("--ops", default="all")  # all | geo | nocolor list
p.add_argument("--cutout", type=float, default=0.5)
p.add_argument("--nops", type=int, default=2)
p.add_argument("--tfrac", type=float, default=0.125)
p.add_argument("--da", type=int, default=0)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--eval_every", type=int, default=100)
p.add_argument("--tag", default="")
p.add_argument("--pad", default="reflection")
a = p.parse_args()
torch.set_num_threads(a.threads)

ops = {"all": A.STRONG_OPS,
       "geo": A.GEOMETRIC_OPS + ("identity",),
       "gray": A.GEOMETRIC_OPS + ("identity", "autocontrast", "brightness", "contrast", "sharpness"),
       "nosol": tuple(o for o in A.STRONG_OPS if o not in ("solarize", "posterize"))}[a.ops]
if a.pad == "zeros":  # the weak shift fills with zeros instead of reflecting the image (augment's own F only)
    import types
    _gs = F.grid_sample
    A.F = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")})
    A.F.grid_sample = lambda *args, **kw: _gs(*args, **{**kw, "padding_mode": "zeros"}
                                              if kw.get("padding_mode") == "reflection" else kw)
class Aug(A.Augmenter):
    def strong(self, x):
        return A.randaugment(self.weak(x), a.nops, a.cutout, ops=ops)
A.for_dataset = lambda ds, cutout=None: Aug(ds.kind, flip=ds.flip, translate_frac=a.tfrac)

opts = dict(steps=a.steps, width=a.width, batch_size=a.bs, lr=a.lr, weight_decay=a.wd, ema_decay=a.ema,
            seed=a.seed, progress=False, eval_every=a.eval_every, cache=False)
if a.method == "fixmatch":
    m = FixMatch(FixMatchConfig(tau=a.tau, mu=a.mu, dist_align=bool(a.da)))  # the runs of the .jsonl: the same
    # alignment written out here before the option existed (running mean 0.999 from uniform, then threshold)
else:
    m = a.method
    if a.method != "supervised": opts["mu"] = a.mu
t0 = time.perf_counter()
r = T.train(m, "fashion_mnist", labels_per_class=4, **opts)
dt = time.perf_counter() - t0
h = r.history
key = "test_acc_ema"
s, v = h.series(key)
curve = " ".join(f"{st}:{100*x:.1f}" for st, x in zip(s, v) if st % 500 == 0 or st == s[-1])
_, pa = h.series("pseudo_acc"); _, mr = h.series("mask_rate")
print(json.dumps(dict(tag=a.tag, args=vars(a), acc=round(100 * r.test_accuracy, 2), secs=round(dt, 1),
      pseudo=round(pa[-1], 3) if pa else None, mask=round(mr[-1], 3) if mr else None, curve=curve, pc=[round(100*c) for c in r.per_class_accuracy])), flush=True)
