"""Issue 24, SWWAE: the lever search. One JSON line per (arm, seed) in runs-24-swwae.jsonl (see common24.py).

Arms (all the same SWWAENet; `sup` is notebook 06's "labels only" arm):

    sup        lambda_rec = lambda_M = 0: the same network trained on the labeled images only
    sup_bn     the same, but mu unlabeled images per labeled one also pass through the encoder (no loss on them):
               BatchNorm sees them as in SWWAE — lever (a), the BatchNorm confound
    swwae      the defaults (lambda_rec 1, lambda_M 0.2, mu 1)
    rA_mB      lambda_rec = A, lambda_M = B — lever (b)
    swwae_sg   stop-gradient on the encoder side of the middle terms — lever (c)
    upsample   what without where (the decoder upsamples)

Levers applied to every arm with --set: augment=False (d), dropout=0.5 (e), steps=..., width=..., mu=...

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/swwae_levers.py --arms sup sup_bn swwae --tag a
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/swwae_levers.py --arms sup swwae --set augment=False --tag d
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common24 import parser, run_arms  # noqa: E402

SUP = {"lambda_rec": 0.0, "lambda_m": 0.0}
ARMS = {"sup": SUP, "sup_bn": {**SUP, "encode_unlabeled": True}, "swwae": {},
        "swwae_sg": {"mid_stop_grad": True}, "upsample": {"unpool": "upsample"}}
for r in (0.1, 1.0):
    for m in (0.0, 0.02, 0.2):
        ARMS[f"r{r:g}_m{m:g}"] = {"lambda_rec": r, "lambda_m": m}

if __name__ == "__main__":
    args = parser("swwae", ARMS, __doc__).parse_args()
    run_arms("swwae", ARMS, args, diagnostics=("loss_rec", "loss_mid"))
