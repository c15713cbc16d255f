"""Break a method's ``step`` one line at a time and check that its tests notice (CONTRIBUTING.md, "Tests").

    python tests/mutate.py adaptive            # every mutant of FlexMatch / FreeMatch / SoftMatch (~3 min, 1 core)
    python tests/mutate.py adaptive --list     # the mutants, without running anything
    python tests/mutate.py adaptive -k soft    # only the mutants whose name contains "soft"

Each mutant is one plausible wiring bug (a view swapped, a row set widened, a warm-up dropped, a statistic updated
before it is used, BatchNorm in the wrong mode, a temperature dropped, a stop-gradient removed), written as an exact
text replacement in the method's file. The package and the tests are copied to a temporary folder, the mutant is
applied there (the checkout is never touched) and the method's test file is run with ``pytest -x``. A mutant that
*survives* (every test passes) is a hole in the tests: the script lists it and exits with 1. Not part of ``make test``
(each mutant is a test run of its own); rerun it after changing a step or its tests.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_FLEX_LOSS = ("thresholded_unlabeled_loss(logits_x_ulb_w, logits_x_ulb_s, thresholds,\n"
              "                                                          cfg.hard_label")
_FREE_Q = "q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)\n        # (several"
_SOFT_Q = "q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1)\n        q_all"

#: name -> (file, test file, [(old, new, occurrence)]); ``occurrence`` counts from 0 among equal texts.
MUTANTS: dict[str, dict[str, tuple]] = {"adaptive": {
    # FlexMatch
    "flex: mask from the strong view": (_FLEX_LOSS, _FLEX_LOSS.replace("ulb_w", "ulb_s"), 0),
    "flex: marks from the strong view": ("max_q = torch.softmax(logits_x_ulb_w.detach().float(), dim=1).max(",
                                         "max_q = torch.softmax(logits_x_ulb_s.detach().float(), dim=1).max(", 0),
    "flex: warm-up dropped in the step": ("ctx.num_classes, cfg.thresh_warmup)", "ctx.num_classes, False)", 0),
    "flex: thresholds from this batch's marks (updated before use)": (
        "        thresholds = flexmatch_thresholds(self.beta, cfg.tau, cfg.mapping)\n",
        "        self.selected_label = flexmatch_update_marks(self.selected_label, batch.idx_ulb, torch.softmax("
        "logits_x_ulb_w.detach().float(), 1).max(1).values, logits_x_ulb_w.argmax(1), cfg.tau)\n"
        "        self.beta = flexmatch_learning_effect(self.selected_label, ctx.num_classes, cfg.thresh_warmup)\n"
        "        thresholds = flexmatch_thresholds(self.beta, cfg.tau, cfg.mapping)\n", 0),
    "flex: marks at batch positions, not image indices": (
        "ctx.gather(batch.idx_ulb), ctx.gather(max_q)", "ctx.gather(torch.arange(len(batch.idx_ulb))), "
        "ctx.gather(max_q)", 0),
    "flex: marks with the flexible threshold, not tau": ("ctx.gather(pseudo), cfg.tau)",
                                                          "ctx.gather(pseudo), thresholds[pseudo])", 0),
    "flex: convex mapping dropped": ("flexmatch_thresholds(self.beta, cfg.tau, cfg.mapping)",
                                     "flexmatch_thresholds(self.beta, cfg.tau, 'linear')", 0),
    # the shared forward and loss
    "shared: weak unlabeled rows shifted into the labeled ones": (
        "logits_x_ulb_w, logits_x_ulb_s = logits[n_lb:].split(n_ulb)",
        "logits_x_ulb_w, logits_x_ulb_s = logits[:n_lb + n_ulb][-n_ulb:].roll(1, 0), logits[n_lb + n_ulb:]", 0),
    "shared: strong view replaced by a weak one": ("x_ulb_s = ctx.aug.strong(batch.x_ulb) if",
                                                   "x_ulb_s = ctx.aug.weak(batch.x_ulb) if", 0),
    "shared: strong view of other images": ("x_ulb_s = ctx.aug.strong(batch.x_ulb) if",
                                            "x_ulb_s = ctx.aug.strong(batch.x_ulb.roll(1, 0)) if", 0),
    "shared: BatchNorm in evaluation mode for the step's forward": (
        "        logits, _ = model(torch.cat([x_lb_w, x_ulb_w, x_ulb_s]))",
        "        model.eval()\n        logits, _ = model(torch.cat([x_lb_w, x_ulb_w, x_ulb_s]))\n        model.train()",
        0),
    "shared: soft-label temperature dropped": ("pseudo_targets(logits_x_ulb_w, False, temperature)",
                                               "pseudo_targets(logits_x_ulb_w, False, 1.0)", 0),
    "shared: unlabeled mean over the kept rows only": ("return (per_row * weight.detach()).mean()",
                                                       "return (per_row * weight).sum() / weight.sum().clamp_min(1)", 0),
    # FreeMatch
    "free: mask from the strong view": (_FLEX_LOSS, _FLEX_LOSS.replace("ulb_w", "ulb_s"), 1),
    "free: statistics from the labeled rows too": (
        _FREE_Q, _FREE_Q.replace("logits_x_ulb_w.detach()", "torch.cat([logits_x_lb, logits_x_ulb_w]).detach()"), 0),
    "free: statistics from the strong view": (_FREE_Q, _FREE_Q.replace("ulb_w", "ulb_s"), 0),
    "free: thresholds from the statistics before this batch": (
        "        # 1. before the mask: the statistics include this batch's weak views, every unlabeled row\n",
        "        thresholds_old = freematch_thresholds(self.tau_t, self.p_t)\n", 0,
        "thresholds = freematch_thresholds(self.tau_t, self.p_t)\n        loss_u",
        "thresholds = thresholds_old\n        loss_u"),
    "free: fairness term on the weak view": ("freematch_fairness_loss(logits_x_ulb_s, mask",
                                             "freematch_fairness_loss(logits_x_ulb_w, mask", 1),  # 0: the def line
    "free: fairness term dropped": ("loss = loss_x + cfg.lambda_u * loss_u + cfg.lambda_f * loss_fair",
                                    "loss = loss_x + cfg.lambda_u * loss_u", 0),
    # SoftMatch
    "soft: pseudo-label from the aligned prediction": ("pseudo = q.argmax(dim=1)  # from the raw prediction",
                                                       "pseudo = q_al.argmax(dim=1)", 0),
    "soft: moments from the raw confidence": ("q_al_all.max(dim=1).values, cfg.ema_p)",
                                              "q_all.max(dim=1).values, cfg.ema_p)", 0),
    "soft: weight from the moments before this batch": (
        "        self.mu_t, self.var_t = softmatch_update_moments(",
        "        weight0 = softmatch_weight(max_al, self.mu_t, self.var_t, cfg.n_sigma)\n"
        "        self.mu_t, self.var_t = softmatch_update_moments(", 0,
        "weight = softmatch_weight(max_al, self.mu_t, self.var_t, cfg.n_sigma)", "weight = weight0"),
    "soft: uniform alignment dropped": (
        "q_al, q_al_all = uniform_alignment(q, self.p_hat), uniform_alignment(q_all, self.p_hat)",
        "q_al, q_al_all = q, q_all", 0),
    "soft: weight from the strong view": (_SOFT_Q, _SOFT_Q.replace("ulb_w", "ulb_s"), 0),
}}
FILES = {"adaptive": ("sslteach/methods/adaptive.py", "tests/test_adaptive.py")}


def apply(text: str, old: str, new: str, nth: int = 0, *more: str) -> str:
    """``text`` with the ``nth`` occurrence of ``old`` replaced by ``new`` (then each further (old, new) pair of
    ``more`` once); a pattern that is not there is an error (the file changed: update the mutant)."""
    at = -1
    for _ in range(nth + 1):
        at = text.find(old, at + 1)
        if at < 0:
            raise LookupError(f"pattern not found (occurrence {nth}): {old[:60]!r}")
    text = text[:at] + new + text[at + len(old):]
    for a, b in zip(more[::2], more[1::2]):
        if text.count(a) != 1:
            raise LookupError(f"second pattern found {text.count(a)} times: {a[:60]!r}")
        text = text.replace(a, b)
    return text


def run(group: str, only: str = "") -> list[tuple[str, str]]:
    path, test = FILES[group]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("sslteach", "tests", "pyproject.toml"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, Path(tmp) / part)
        target = Path(tmp) / path
        original = target.read_text()
        env = {**os.environ, "PYTHONPATH": tmp, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist", test]
        base = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        if base.returncode:
            raise SystemExit(f"{test} fails without any mutant; fix that first:\n{base.stdout[-2000:]}")
        for name, spec in MUTANTS[group].items():
            if only not in name:
                continue
            target.write_text(apply(original, *spec))
            p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            failed = next((ln for ln in p.stdout.splitlines() if ln.startswith("FAILED")), "")
            results.append((name, f"caught by {failed[7:].split(' - ')[0]}" if p.returncode else "SURVIVED"))
            print(f"{'ok ' if p.returncode else 'BAD'} {name}: {results[-1][1]}", flush=True)
        target.write_text(original)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("group", choices=sorted(MUTANTS))
    ap.add_argument("--list", action="store_true", help="list the mutants and check that each still applies")
    ap.add_argument("-k", default="", help="only the mutants whose name contains this text")
    a = ap.parse_args(argv)
    if a.list:
        text = (ROOT / FILES[a.group][0]).read_text()
        for name, spec in MUTANTS[a.group].items():
            apply(text, *spec)
            print(name)
        return 0
    survived = [n for n, r in run(a.group, a.k) if r == "SURVIVED"]
    print(f"{len(survived)} mutant(s) survived" + (": " + "; ".join(survived) if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
