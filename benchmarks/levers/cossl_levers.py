"""Issue 24, CoSSL: Tail-class Feature Enhancement (TFE) on against off, on the metric it claims to improve (the
recall of the tail classes, result.tail_accuracy) and on balanced accuracy. One JSON line per (arm, seed) in
runs-24-cossl.jsonl (see common24.py). Long-tailed digits by default (split='long_tailed'); set the ratio with
--set imbalance_ratio=10|50|100.

Arms:
    tfe            full CoSSL (TFE on, co-learning on)
    no_tfe         TFE off: the head trains on unmixed class-balanced features (cRT + co-learning)
    tfe_weak, no_tfe_weak   the same with the head's images in the weak view (head_view='weak')
    fixmatch       plain FixMatch (warmup=1: co-learning never starts), for reference

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/levers/cossl_levers.py --arms tfe no_tfe --set imbalance_ratio=50
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common24 import parser, run_arms  # noqa: E402

LT = {"split": "long_tailed"}
ARMS = {"tfe": {**LT, "tfe": True}, "no_tfe": {**LT, "tfe": False},
        "tfe_weak": {**LT, "tfe": True, "head_view": "weak"}, "no_tfe_weak": {**LT, "tfe": False, "head_view": "weak"},
        "fixmatch": {**LT, "warmup": 1.0}}


def extra(r):
    pc = r.per_class_accuracy
    tails = (r.split or {}).get("tail_classes") or []
    return {"tail_classes": tails, "head_accuracy": round(100 * sum(v for c, v in enumerate(pc) if c not in tails)
                                                          / max(1, len(pc) - len(tails)), 2),
            "co_learning_started": r.extra.get("co_learning_started")}


if __name__ == "__main__":
    args = parser("cossl", ARMS, __doc__).parse_args()
    run_arms("cossl", ARMS, args, diagnostics=("loss_head", "pl_tail_share", "tfe_rate", "head_batch_acc",
                                               "mask_rate", "pseudo_acc"), extra=extra)
