"""Running a comparison: the grid of runs (methods x budgets x seeds, or a realistic split), the all-labels
ceiling, and what a grid will cost before it runs (how many runs the cache holds, the seconds for the rest)."""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from ..cache import store_for
from ..data import SPLIT_KINDS, Split, SplitConfig, all_labels_split
from ..methods import METHODS
from ..train import RunSpec, prepare_run, run
from ..utils import check_choice, check_int
from .registry import DEFAULT_MS_PER_STEP, RUN_OVERHEAD_S, TWO_CORE_SPEEDUP, cpu_ms_per_step, methods
from .table import COLUMNS, Table, _finite, _fmt_stat, row_from_result

def _error_row(method, dataset, split, budget, seed, options, error: BaseException) -> dict:
    row = {c: None for c in COLUMNS}
    row.update(method=method, dataset=dataset, split=split, seed=seed, steps=options.get("steps"),
               steps_done=0, from_cache=False, interrupted=False, accuracy=float("nan"),
               balanced_accuracy=float("nan"), wall_seconds=float("nan"), seconds=float("nan"),
               error=f"{type(error).__name__}: {error}")
    if split in ("balanced", "open_set"):
        row["labels_per_class"] = budget
    if split == "long_tailed":
        row["imbalance_ratio"] = options.get("imbalance_ratio", SplitConfig.imbalance_ratio)
    if split == "open_set":
        row["known_classes"] = options.get("known_classes", SplitConfig.known_classes)
    return row


def plan(methods_: Iterable[str], seeds: Iterable[int] = (0, 1, 2), budgets: Iterable[int] | None = None,
         labels_per_class: int = 2) -> list[tuple[str, int, int]]:
    """The runs of a grid, in the order :func:`run_grid` trains them: ``(method, budget, seed)`` with the budget
    (labels per class) outermost, then the method, then the seed."""
    budgets = [labels_per_class] if budgets is None else list(budgets)
    return [(m, b, s) for b in budgets for m in methods_ for s in seeds]


def prepare_one(method, dataset="digits", budget=None, seed=0, split="balanced", cache=None, **options) -> RunSpec:
    """The :class:`~sslteach.train.RunSpec` of one run of a grid (``split="all_labels"``: the ceiling's split)."""
    options = {"progress": False, **options}
    if split == "all_labels":
        return prepare_run(method, split=all_labels_split(dataset), seed=seed, cache=cache, **options)
    return prepare_run(method, dataset, labels_per_class=budget if budget is not None else 2, split=split,
                       seed=seed, cache=cache, **options)


def _train_one(method, dataset, budget, seed, split, cache, options, trainer_hook, runner=run):
    return runner(prepare_one(method, dataset, budget, seed, split, cache, **options), trainer_hook=trainer_hook)


def run_grid(methods_: Iterable[str] | None = None, dataset: str = "digits", seeds: Iterable[int] = (0, 1, 2),
             budgets: Iterable[int] | None = None, labels_per_class: int = 2, split: str = "balanced",
             cache=None, recompute: bool = False, errors: str = "record", verbose: bool = True,
             method_options: dict | None = None, callback: Callable | None = None,
             stop: threading.Event | None = None, trainer_hook: Callable | None = None, runner: Callable = run,
             **options) -> Table:
    """Train every ``method x budget x seed`` (same split per seed, same steps and batch for every method) and
    return the :class:`Table` of the runs.

    ``methods_``: names (``None``: every registered method). ``budgets``: labels per class to sweep (``None``:
    just ``labels_per_class``). ``split``: ``"balanced"``, ``"long_tailed"``, ``"open_set"`` (their settings,
    e.g. ``imbalance_ratio``, ``known_classes``, go in ``options``) or ``"all_labels"`` (every training label:
    the ceiling). ``options``: loop settings for every run (``steps``, ``width``, ``batch_size``, ``device``, ...);
    ``method_options``: ``{method: {knob: value}}``. ``cache``: as in :func:`~sslteach.train` (``None``: the
    default run cache); ``recompute=True`` retrains every run without reading or writing the cache.
    ``errors="record"`` turns a run that raises into a row with ``error`` set (so a new method that cannot run on
    a split does not stop the comparison; the failure is printed); ``"raise"`` re-raises. ``callback(row, i, n)``
    is called after each run; ``stop`` (a :class:`threading.Event`) ends the grid after the current run.
    ``runner(spec, trainer_hook=...)`` runs one :class:`~sslteach.train.RunSpec` (default :func:`sslteach.train.run`;
    a test or a scheduler can hand the runs elsewhere).
    """
    check_choice("errors", errors, ("record", "raise"))
    check_choice("split", split, SPLIT_KINDS + ("all_labels",))
    names = methods() if methods_ is None else list(methods_)
    for m in names:
        check_choice("method", m, METHODS)
    seeds = [check_int("seed", s, 0) for s in seeds]
    runs = plan(names, seeds, _budgets(split, budgets, labels_per_class))
    table = Table()
    method_options = dict(method_options or {})
    t_grid = time.perf_counter()
    for i, (m, b, s) in enumerate(runs):
        if stop is not None and stop.is_set():
            break
        opts = {**options, **method_options.get(m, {})}
        t0 = time.perf_counter()
        try:
            result = _train_one(m, dataset, b, s, split, False if recompute else cache, opts, trainer_hook, runner)
            row = row_from_result(result, time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - recorded in the table and printed, or re-raised
            if errors == "raise":
                raise
            row = _error_row(m, dataset, split, b, s, opts, e)
            print(f"  ! {m} (seed {s}) failed: {row['error'][:200]}", flush=True)
        table.rows.append(row)
        if callback is not None:
            callback(row, i, len(runs))
        last_of_group = i + 1 == len(runs) or runs[i + 1][:2] != (m, b)
        if verbose and last_of_group:
            _print_group(table.where(method=m, labels_per_class=b) if b is not None
                         else table.where(method=m), m, b, split)
    if verbose:
        done = table.rows
        hits = sum(r["from_cache"] for r in done)
        print(f"{len(done)} runs in {time.perf_counter() - t_grid:.1f} s: {hits} from the run cache, "
              f"{len(done) - hits} trained" + (f", {len(table.failed())} failed" if len(table.failed()) else ""),
              flush=True)
    return table


def _budgets(split: str, budgets, labels_per_class: int) -> list:
    if split in ("long_tailed", "all_labels"):
        return [None]  # the split's label counts come from its own settings
    if budgets is None:
        return [check_int("labels_per_class", labels_per_class, 1)]
    return [check_int("labels_per_class", b, 1) for b in budgets]


def _print_group(rows: Table, method: str, budget, split: str) -> None:
    s = rows.summary("accuracy")[0] if len(rows) else None
    if s is None:
        return
    where = "" if split in ("long_tailed", "all_labels") or budget is None else f"{budget} labels/class, "
    acc = _fmt_stat(s, "accuracy")
    extra = ""
    if split == "long_tailed":
        t = rows.summary("tail_accuracy")[0]
        extra = f", tail {_fmt_stat(t, 'tail_accuracy')}"
    if split == "open_set":
        a = rows.summary("auroc")[0]
        extra = f", AUROC {_fmt_stat(a, 'auroc')}"
    walls = f"{s['wall_seconds']:.1f} s/run" if _finite(s["wall_seconds"]) else ""
    print(f"{method:20s} {where}{len(rows)} run(s): {acc}{extra}  {walls}  "
          f"[{s['cached']} cached{', ' + str(s['failed']) + ' failed' if s['failed'] else ''}]", flush=True)


def ceiling(dataset: str = "digits", seeds: Iterable[int] = (0, 1, 2), **kwargs) -> Table:
    """The all-labels ceiling: the supervised baseline trained on every training label (same loop settings)."""
    return run_grid(["supervised"], dataset, seeds=seeds, split="all_labels", **kwargs)


# ------------------------------------------------------------------------------------- the cache, beforehand
def cache_key(method: str, dataset: str = "digits", labels_per_class: int = 2, split="balanced",
              seed: int = 0, **options) -> str:
    """The run cache's key for ``train(method, dataset, labels_per_class, split, seed=seed, **options)``, without
    training: the key of the same :class:`~sslteach.train.RunSpec` that :func:`sslteach.train` runs."""
    check_choice("method", method, METHODS)
    if isinstance(split, Split):
        return prepare_run(method, split=split, seed=seed, cache=False, **options).cache_key()
    return prepare_one(method, dataset, labels_per_class, seed, split, cache=False, **options).cache_key()


def is_cached(method: str, dataset: str = "digits", labels_per_class: int = 2, split="balanced", seed: int = 0,
              cache=None, **options) -> bool:
    """Whether :func:`sslteach.train` would serve this run from the run cache (``cache`` as there)."""
    store = store_for(None if cache is True else cache)
    if store is None:
        return False
    return cache_key(method, dataset, labels_per_class, split, seed, **options) in store


def estimate(runs: Iterable[tuple], steps: int, dataset: str = "digits", split="balanced", cache=None,
             method_options: dict | None = None, **options) -> dict:
    """What a grid will cost before it runs: ``runs`` from :func:`plan`. Returns ``{"runs", "cached",
    "cpu_seconds_cold"`` (one thread, every run trained), ``"cpu_seconds"`` (the runs not in the cache),
    ``"minutes_2_cores_cold"``, ``"minutes_2_cores"``}``; ``method_options`` as in :func:`run_grid`. The per-step costs are each method's ``cpu_ms_per_step`` (measured
    on digits); on another dataset the numbers are ``nan`` (no measurement)."""
    runs = list(runs)
    cold = todo = 0.0
    cached = 0
    for m, b, s in runs:
        cpu = (cpu_ms_per_step().get(m, DEFAULT_MS_PER_STEP) * steps / 1000 + RUN_OVERHEAD_S
               + 0.03 * (steps // max(1, options.get("eval_every", 50)) + 1))
        cold += cpu
        hit = is_cached(m, dataset, b if b is not None else 2, split, s, cache=cache, steps=steps,
                        **{**options, **(method_options or {}).get(m, {})})
        cached += hit
        todo += 0 if hit else cpu
    if dataset != "digits":
        cold = todo = float("nan")
    return {"runs": len(runs), "cached": cached, "cpu_seconds_cold": cold, "cpu_seconds": todo,
            "minutes_2_cores_cold": cold / TWO_CORE_SPEEDUP / 60, "minutes_2_cores": todo / TWO_CORE_SPEEDUP / 60}
