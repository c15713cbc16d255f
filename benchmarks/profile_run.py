"""Where the time of a training run goes, phase by phase, as the loop runs it.

    python benchmarks/profile_run.py                       # FixMatch, the real_images preset (Fashion-MNIST)
    python benchmarks/profile_run.py mean_teacher --steps 500

The real loop (:meth:`sslteach.train.RunSpec.trainer`) runs as usual; every piece of it is a named phase
(:mod:`sslteach.phases`), and the trainer's :class:`~sslteach.phases.PhaseTimer` adds up each phase's own seconds:
drawing the batch indices, gathering and converting the images, the weak and strong views (a strong view's shift
counts as a weak view), the trained network's forward passes (timed by a forward hook on the model that opens the
phase "forward"; passes during evaluations are left to the evaluation), the rest of the method's step (its losses,
a teacher's or a head's forward), backward, the optimizer step, the EMA update, the method's ``after_step``, the
evaluations during training and the method's lumps (``ctx.lump``). "loop overhead" is the run's time minus all of
these: the schedule, the logging and the callbacks. The final evaluation on the whole test set is timed apart. No
name of the package is patched. Run it alone on an idle machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sslteach import prepare_run  # noqa: E402
from sslteach.phases import open_phases, phase  # noqa: E402
from sslteach.presets import get_preset  # noqa: E402

#: Table rows: (label, the phases that make it up).
ROWS = (("indices", ("batch indices",)), ("images to float", ("batch images",)), ("weak views", ("weak views",)),
        ("strong views", ("strong views",)), ("forward", ("forward",)),
        ("losses and other networks", ("step",)), ("backward", ("backward",)),
        ("optimizer step", ("optimizer step",)), ("EMA update", ("EMA update",)),
        ("after step (teachers, banks)", ("after step",)), ("evaluations during training", ("evaluation",)))
PHASES = tuple(r[0] for r in ROWS) + ("lumps", "loop overhead")


def _time_forwards(model):
    """Forward hooks that open the phase "forward" around each forward of ``model`` outside evaluations."""
    open_ = []

    def pre(module, args):
        names = open_phases()
        if "evaluation" in names or "final evaluation" in names:
            open_.append(None)
            return
        cm = phase("forward")
        cm.__enter__()
        open_.append(cm)

    def post(module, args, out):
        cm = open_.pop()
        if cm is not None:
            cm.__exit__(None, None, None)

    return model.register_forward_pre_hook(pre), model.register_forward_hook(post)


def profile(method="fixmatch", preset="real_images", steps=None, seed=0) -> dict:
    """Seconds per row of :data:`PHASES`, plus ``"run"`` (the loop, final evaluation excluded),
    ``"final evaluation"``, ``"steps"`` and ``"accuracy"``."""
    opts = get_preset(preset).run_options(method)
    if steps:
        opts["steps"] = steps
    trainer = prepare_run(method, seed=seed, progress=False, cache=False, **opts).trainer()
    trainer.setup()
    hooks = _time_forwards(trainer.model)
    try:
        result = trainer.fit()
    finally:
        for h in hooks:
            h.remove()
    sec = trainer.timer.seconds
    run = result.history.records[-1]["time"]  # the loop up to the final evaluation
    out = {label: sum(sec.get(p, 0.0) for p in names) for label, names in ROWS}
    out["lumps"] = trainer.timer.total("lump.")
    out["loop overhead"] = run - sum(out.values())
    out.update({"run": run, "final evaluation": sec.get("final evaluation", 0.0), "steps": result.steps_done,
                "accuracy": result.test_accuracy})
    return out


def table(method="fixmatch", preset="real_images", steps=None) -> str:
    prof = profile(method, preset, steps)
    run = prof["run"]
    lines = [f"`{method}`, preset `{preset}`, {prof['steps']} steps: {run:.1f} s of loop "
             f"({run / prof['steps'] * 1e3:.1f} ms per step with the evaluations), final evaluation on the "
             f"whole test set {prof['final evaluation']:.1f} s.", "",
             "| phase | seconds | share of the loop |", "|---|---|---|"]
    for k in PHASES:
        lines.append(f"| {k} | {prof[k]:.1f} | {prof[k] / run:.1%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method", nargs="?", default="fixmatch")
    ap.add_argument("--preset", default="real_images")
    ap.add_argument("--steps", type=int, default=None)
    a = ap.parse_args()
    print(table(a.method, a.preset, a.steps))
