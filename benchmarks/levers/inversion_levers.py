"""Issue 24, deep network inversion: the lever search. One JSON line per (arm, seed) in runs-24-inversion.jsonl
(see common24.py). All arms train the same BatchNorm-free InversionCNN; they differ by their loss only.

Arms (--dataset digits|fashion_mnist, --lpc 5 for the 2017 paper's 5 labels per class):

    sup            CE on the labeled images only (mode 'supervised': the baseline of the same network)
    entropy        CE + E / log C
    global         + the input reconstruction only, weight 1 / D^(0)
    multiscale     + every layer's reconstruction, weights 1 / (L D^(l)) (2018)
    global_sum, multiscale_sum   the same with the template of the sum of all classes (template='sum')

Levers applied to every arm with --set: optimizer=adam lr=0.01 (the first author's public script), augment=False,
entropy_scale=..., recon_scale=..., steps=..., mu=...

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/inversion_levers.py --lpc 5 --set optimizer=adam lr=0.01
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common24 import parser, run_arms  # noqa: E402

ARMS = {"sup": {"mode": "supervised"}, "entropy": {"mode": "entropy"}, "global": {"mode": "global"},
        "multiscale": {"mode": "multiscale"},
        "global_sum": {"mode": "global", "template": "sum"},
        "multiscale_sum": {"mode": "multiscale", "template": "sum"}}

if __name__ == "__main__":
    args = parser("inversion", ARMS, __doc__).parse_args()
    run_arms("inversion", ARMS, args, diagnostics=("loss_entropy", "loss_recon", *(f"recon_l{l}" for l in range(7))))
