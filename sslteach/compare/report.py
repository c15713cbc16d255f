"""The comparison's written summary ("which method when"), every sentence computed from the tables, and the
papers' own results quoted with their settings."""
from __future__ import annotations

from typing import Iterable

from ..methods import METHODS
from .plots import _ceiling_value
from .registry import info
from .stats import gap_closed, leader, paired
from .table import METRIC_LABELS, Table, _finite

#: The one same-setting comparison of several of our methods: the TorchSSL benchmark (Zhang et al., FlexMatch,
#: NeurIPS 2021; README of TorchSSL/TorchSSL @045cc9c): CIFAR-10, WRN-28-2, 2^20 steps, batch 64 (its configs),
#: best test accuracy in %, with 40 / 250 / 4000 labels; "supervised" trained on all 50 000 labels.
TORCHSSL_CIFAR10 = {"labels": (40, 250, 4000), "supervised_all_labels": 95.38,
                    "pi_model": (25.66, 53.76, 86.87), "pseudo_label": (26.26, 53.86, 85.25),
                    "mean_teacher": (29.91, 62.54, 91.90), "fixmatch": (92.53, 95.14, 95.79)}

#: Published results, each with its setting: a different scale from ours (GPU, 32x32 images, ~1M steps).
PAPER_RESULTS = [
    {"source": "TorchSSL benchmark (Zhang et al., FlexMatch, NeurIPS 2021; TorchSSL README)",
     "setting": "CIFAR-10, WRN-28-2, 2^20 steps, batch 64, best test accuracy; 40 / 250 / 4000 labels",
     "metric": "accuracy %",
     "rows": {"supervised (all 50 000 labels)": f"{TORCHSSL_CIFAR10['supervised_all_labels']:.2f}",
              **{m: " / ".join(f"{v:.2f}" for v in TORCHSSL_CIFAR10[m])
                 for m in ("pi_model", "pseudo_label", "mean_teacher", "fixmatch")}}},
    {"source": "Sohn et al., FixMatch, NeurIPS 2020 (abstract)",
     "setting": "CIFAR-10, WRN-28-2, 40 / 250 labels (RandAugment)", "metric": "accuracy %",
     "rows": {"fixmatch": "88.61 / 94.93"}},
    {"source": "Tarvainen & Valpola, Mean Teacher, NeurIPS 2017 (Table 2)",
     "setting": "CIFAR-10, 4000 labels, ConvNet-13", "metric": "error %",
     "rows": {"mean_teacher": "12.31", "supervised (same 4000 labels)": "20.66"}},
    {"source": "Laine & Aila, ICLR 2017", "setting": "CIFAR-10, 4000 labels, ConvNet-13", "metric": "error %",
     "rows": {"temporal_ensembling": "12.16"}},
    {"source": "Xie et al., Noisy Student, CVPR 2020", "setting": "ImageNet (all labels) + 300M unlabeled JFT "
     "images, EfficientNet-L2", "metric": "top-1 %", "rows": {"noisy_student": "88.4"}},
    {"source": "Zheng et al., SimMatch, CVPR 2022", "setting": "ImageNet, 1 % / 10 % labels, ResNet-50, "
     "400 epochs", "metric": "top-1 %", "rows": {"simmatch": "67.2 / 74.4"}},
    {"source": "Assran et al., PAWS, ICCV 2021 (README)", "setting": "ImageNet, 1 % / 10 % labels, ResNet-50, "
     "fine-tuned", "metric": "top-1 %", "rows": {"paws": "66.5 / 75.5"}},
    {"source": "Zhao et al., SWWAE, ICLR 2016 workshop (Sec. 4.3, as quoted by Dumoulin et al. 2017)",
     "setting": "SVHN, 1000 labels", "metric": "error %", "rows": {"swwae": "23.56"}},
    {"source": "Balestriero et al. 2018 (abstract)", "setting": "SVHN, 500 labels, WRN", "metric": "error %",
     "rows": {"inversion": "9.82"}},
    {"source": "Fan et al., CoSSL, CVPR 2022 (README)", "setting": "CIFAR-10-LT, N_max 1500 labeled, "
     "gamma = 50 / 100 / 150, WRN-28-2", "metric": "accuracy %", "rows": {"cossl (FixMatch + CoSSL)":
                                                                          "86.8 / 83.2 / 80.3"}},
    {"source": "Saito et al., OpenMatch, NeurIPS 2021 (Table 1)", "setting": "CIFAR-10, 6 known classes, "
     "50 / 100 / 400 labels per class, WRN-28-2", "metric": "closed-set error %",
     "rows": {"openmatch": "10.4 / 7.1 / 5.9"}},
]


def _pct(v):
    return f"{100 * v:.1f} %" if _finite(v) else "n/a"


def _pts(v):
    return f"{100 * v:+.1f} points" if _finite(v) else "n/a"


def which_method_when(main: Table, ceiling=None, budget: Table | None = None, long_tailed: Table | None = None,
                      open_set: Table | None = None, baseline: str = "supervised", near: float = 0.02) -> str:
    """A short "which method when" written from the numbers (Markdown): the best methods on the balanced split
    and which of them are ahead of the baseline on every seed, the cheapest method close to the best, how the
    gain changes with the label budget, and the realistic splits (each method built for one against the method it
    builds on). Every sentence is computed from the tables; the caveats of small-scale results close it."""
    stats = {s["method"]: s for s in main.summary("accuracy") if s["n"]}
    n_seeds = max((s["n"] for s in stats.values()), default=0)
    out = _balanced_lines(main, stats, baseline, _ceiling_value(ceiling), n_seeds, near)
    if budget is not None and len(budget.ok()):
        out += _budget_lines(budget, baseline)
    for tab, kind in ((long_tailed, "long_tailed"), (open_set, "open_set")):
        if tab is not None and len(tab.ok()):
            out += _realistic_lines(tab, kind, baseline)
    out.append(f"- **Caveats**: 8x8 digits (or the chosen dataset), a small CNN, {_steps(main)} steps and the "
               f"papers' default knobs: these are small-scale results. With {n_seeds} seed(s), a difference smaller "
               "than the seed range is not a finding; rankings at the papers' scale (CIFAR-10, WRN-28-2, ~1M "
               "steps) differ — see the papers' table below. A method whose knobs were tuned for CIFAR can look "
               "worse here than it is.")
    return "\n".join(out)


def _balanced_lines(main: Table, stats: dict, baseline: str, top, n_seeds: int, near: float) -> list[str]:
    base = stats.get(baseline)
    ranked = sorted((s for m, s in stats.items() if m != baseline), key=lambda s: -s["mean"])
    if not ranked or not base:
        return []
    lpc = next((r["labels_per_class"] for r in main.ok()), None)
    best = ranked[0]
    line = (f"- **Few labels, balanced classes** ({lpc} labels per class, {n_seeds} seed(s)): the best mean is "
            f"**{best['method']}** at {_pct(best['mean'])}, {_pts(best['mean'] - base['mean'])} over the "
            f"supervised baseline ({_pct(base['mean'])})")
    closed = gap_closed(best["mean"], base["mean"], top) if top is not None else float("nan")
    if _finite(closed):
        line += f"; it closes {closed:.0%} of the gap to the all-labels ceiling ({_pct(top)})"
    tied = [s["method"] for s in ranked[1:] if s["max"] >= best["min"] and n_seeds > 1]
    if tied:
        line += f". Not separable from it at {n_seeds} seeds (seed ranges overlap): {', '.join(tied)}"
    out = [line + "."]
    always, not_always = [], []
    for s in ranked:
        p = paired(main, s["method"], baseline)
        if p is not None:
            mean_d, wins, _, n = p
            (always if wins == n else not_always).append((s["method"], mean_d, wins, n))
    if always:
        out.append(f"- Ahead of {baseline} on every seed (same labeled images): "
                   + ", ".join(f"{m} ({_pts(d)})" for m, d, _, _ in always) + ".")
    if not_always:
        out.append("- Not ahead on every seed: "
                   + ", ".join(f"{m} ({_pts(d)} on average, ahead on {w} of {n})" for m, d, w, n in not_always) + ".")
    return out + _compute_lines(ranked, best, near)


def _compute_lines(ranked: list[dict], best: dict, near: float) -> list[str]:
    close = [s for s in ranked if _finite(s["wall_seconds"]) and s["mean"] >= best["mean"] - near]
    if not close or not _finite(best["wall_seconds"]):
        return []
    cheap = min(close, key=lambda s: s["wall_seconds"])
    if cheap["method"] != best["method"]:
        return [f"- **Tight compute**: {cheap['method']} is within {100 * near:.0f} points of the best "
                f"({_pct(cheap['mean'])}) at {cheap['wall_seconds']:.1f} s per run, against "
                f"{best['wall_seconds']:.1f} s for {best['method']}."]
    return [f"- **Tight compute**: no method within {100 * near:.0f} points of {best['method']} is cheaper than it "
            f"({best['wall_seconds']:.1f} s per run)."]


def _budget_lines(budget: Table, baseline: str) -> list[str]:
    budgets = sorted({r["labels_per_class"] for r in budget.ok()})
    lo, hi = budgets[0], budgets[-1]
    parts = []
    for m in budget.methods():
        if m == baseline:
            continue
        g_lo = budget.mean(method=m, labels_per_class=lo) - budget.mean(method=baseline, labels_per_class=lo)
        g_hi = budget.mean(method=m, labels_per_class=hi) - budget.mean(method=baseline, labels_per_class=hi)
        if _finite(g_lo) and _finite(g_hi):
            parts.append((m, g_lo, g_hi))
    if not parts or lo == hi:
        return []
    shrink = [m for m, a, b in parts if a > b]
    text = "; ".join(f"{m} {_pts(a)} at {lo} vs {_pts(b)} at {hi}" for m, a, b in parts)
    verdict = ("the gain over supervised is largest when labels are scarcest for "
               + (", ".join(shrink) if shrink else "none of them"))
    return [f"- **Label budget** ({lo}-{hi} labels per class): {text} — {verdict}."]


def _realistic_lines(tab: Table, kind: str, baseline: str) -> list[str]:
    """One line for a long-tailed or open-set table: the best headline and metric, the baseline's, each base
    method's metric against the baseline's, and each method designed for this split against its base."""
    metric, label = ("tail_accuracy", "tail-class accuracy") if kind == "long_tailed" else ("auroc", "outlier AUROC")
    headline = "balanced_accuracy" if kind == "long_tailed" else "accuracy"
    hs = {s["method"]: s for s in tab.summary(headline) if s["n"]}
    ms = {s["method"]: s for s in tab.summary(metric) if s["n"]}
    if not hs or not ms:
        return []
    fmt = (lambda v: f"{v:.3f}") if metric == "auroc" else _pct
    name = "Long-tailed" if kind == "long_tailed" else "Open-set"
    parts = []
    for key, lab, f in ((headline, METRIC_LABELS[headline], _pct), (metric, label, fmt)):
        top = max((hs if key == headline else ms).values(), key=lambda s: s["mean"])
        lead = leader(tab, key)
        parts.append(f"ahead of every other method on every seed in {lab}: **{lead}** ({f(top['mean'])} on the mean)"
                     if lead else f"no method ahead of all the others on every seed in {lab} (highest mean: "
                     f"{top['method']}, {f(top['mean'])})")
    line = f"- **{name} split** ({max(s['n'] for s in hs.values())} seed(s)): " + "; ".join(parts)
    if baseline in ms:
        line += f"; {baseline}: {_pct(hs[baseline]['mean'])} and {fmt(ms[baseline]['mean'])}"
    special = [m for m in ms if info(m).get("designed_for") == kind]
    for base in dict.fromkeys(info(m)["builds_on"] for m in special if info(m)["builds_on"] in ms):
        if baseline in ms:
            d = ms[base]["mean"] - ms[baseline]["mean"]
            line += (f"; {_title(base)}'s {label} is {fmt(ms[base]['mean'])}, "
                     + ("below" if d < 0 else "not below") + " the baseline's")
    for m in special:
        base = info(m)["builds_on"]
        if base in ms and base in hs and m in hs:
            d, dh = ms[m]["mean"] - ms[base]["mean"], hs[m]["mean"] - hs[base]["mean"]
            diff = f"{d:+.3f}" if metric == "auroc" else _pts(d)
            line += (f"; {m}, built for this setting, vs {_title(base)}: {diff} in {label}, {_pts(dh)} in "
                     f"{METRIC_LABELS[headline]}")
    return [line + "."]


def _title(method: str) -> str:
    cls = METHODS.get(method)
    return (cls.title or method) if cls is not None else method


def _steps(table: Table):
    s = sorted({r["steps"] for r in table.ok() if r.get("steps")})
    return "/".join(map(str, s)) or "?"


def papers_table_markdown(names: Iterable[str] | None = None) -> str:
    """:data:`PAPER_RESULTS` as a Markdown table, limited to the given methods (all when ``None``)."""
    keep = None if names is None else set(names)
    lines = ["| method | paper's result | metric | setting | source |", "|---|---|---|---|---|"]
    for p in PAPER_RESULTS:
        for m, v in p["rows"].items():
            if keep is not None and m.split(" ")[0] not in keep:
                continue
            lines.append(f"| {m} | {v} | {p['metric']} | {p['setting']} | {p['source']} |")
    return "\n".join(lines)
