"""Every method side by side (notebook 10): a grid of runs, one tidy table, the figures and a summary.

The grid is methods x seeds x label budgets (or a long-tailed / open-set split), each run trained by
:func:`sslteach.train` and therefore served by the run cache the second time::

    from sslteach import compare
    table = compare.run_grid(compare.methods(), "digits", seeds=[0, 1, 2], labels_per_class=2,
                             **compare.COMPARISON_SCALE)
    ceiling = compare.ceiling("digits", seeds=[0, 1, 2], **compare.COMPARISON_SCALE)
    compare.plot_bars(table, ceiling=ceiling)
    print(compare.which_method_when(table, ceiling=ceiling))

The methods are whatever the registry holds (:data:`sslteach.METHODS`): registering a method adds it to every
comparison, and a method that fails on a split is recorded as a failed row (``error``), not a crash.

A :class:`Table` row is one run: ``method, dataset, split, labels_per_class, imbalance_ratio, known_classes, seed,
steps, steps_done, batch_size, width, accuracy, balanced_accuracy, tail_accuracy, auroc, wall_seconds, seconds,
from_cache, interrupted, error``. ``accuracy`` is the reported model's test accuracy (known classes only on an
open-set split), ``tail_accuracy`` the mean recall of the rarest classes of a long-tailed split, ``auroc`` how well
the method's outlier score separates unknown-class test images on an open-set split. ``wall_seconds`` is the time
the run took to *train* (stored with a cached run), ``seconds`` the time this call spent on it (about zero for a
cache hit).
"""
from __future__ import annotations

import base64
import html
import io
import math
import statistics
import threading
import time
import traceback
import warnings
from typing import Callable, Iterable

import matplotlib.pyplot as plt
import numpy as np

from .data import OFFLINE_DATASETS, SPLIT_KINDS, Split, SplitConfig, load_dataset, make_split
from .methods import METHODS, get_method
from .train import train
from .utils import check_choice, check_int

#: The scale of the comparison: the test suite's claim scale (``tests/conftest.py``: width 16, labeled batch 16,
#: evaluation every 100 steps) with 500 steps, at which the claim tests of notebooks 01-04 measured their margins.
COMPARISON_SCALE = {"steps": 500, "width": 16, "batch_size": 16, "eval_every": 100}

#: One-thread CPU milliseconds per training step at :data:`COMPARISON_SCALE` on digits (balanced split, 2 labels
#: per class): ``time.process_time`` of a 80-step run minus a 20-step run, divided by 60, on the project's 2-core
#: x86 development machine (torch 2, shared with other jobs: about +-20 %). Used only to *estimate* the cost of a
#: grid before it runs; the long-tailed and open-set splits cost within ~10 % of these (OpenMatch: ~20-24 ms there).
#: A method missing here is assumed to cost :data:`DEFAULT_MS_PER_STEP`: add its line when it lands.
CPU_MS_PER_STEP = {"supervised": 4.5, "pseudo_label": 13.6, "noisy_student": 11.5, "pi_model": 19.4,
                   "temporal_ensembling": 11.9, "mean_teacher": 16.9, "fixmatch": 22.0, "crmatch": 23.1,
                   "simmatch": 21.4, "paws": 22.3, "swwae": 7.3, "inversion": 9.7, "cossl": 27.2,
                   "openmatch": 12.6}
DEFAULT_MS_PER_STEP = 25.0
#: Per-run CPU seconds besides the steps (building the split, the model and the method's state, the evaluations).
RUN_OVERHEAD_S = 0.3
#: Two cores against one thread for these small networks: the collection's convention for time estimates.
TWO_CORE_SPEEDUP = 1.7

#: Where each method comes from and what it builds on (for the map of methods and the summary). A method that is
#: registered but missing here is shown as "other": add a line when a new notebook lands.
METHOD_INFO = {
    "supervised": {"notebook": "00", "year": None, "family": "baseline"},
    "pseudo_label": {"notebook": "01", "year": 2013, "family": "pseudo-labels"},
    "noisy_student": {"notebook": "01", "year": 2020, "family": "pseudo-labels"},
    "pi_model": {"notebook": "02", "year": 2017, "family": "consistency"},
    "temporal_ensembling": {"notebook": "02", "year": 2017, "family": "consistency"},
    "mean_teacher": {"notebook": "02", "year": 2017, "family": "consistency"},
    "fixmatch": {"notebook": "03", "year": 2020, "family": "pseudo-labels + consistency"},
    "crmatch": {"notebook": "04", "year": 2021, "family": "pseudo-labels + consistency"},
    "simmatch": {"notebook": "04", "year": 2022, "family": "similarity to labeled images"},
    "paws": {"notebook": "05", "year": 2021, "family": "similarity to labeled images"},
    "swwae": {"notebook": "06", "year": 2016, "family": "reconstruction"},
    "inversion": {"notebook": "07", "year": 2017, "family": "reconstruction"},
    "cossl": {"notebook": "08", "year": 2022, "family": "long-tailed data", "designed_for": "long_tailed"},
    "openmatch": {"notebook": "09", "year": 2021, "family": "open-set data", "designed_for": "open_set"},
}
FAMILY_COLORS = {"baseline": "#7f7f7f", "pseudo-labels": "#ff7f0e", "consistency": "#1f77b4",
                 "pseudo-labels + consistency": "#d62728", "similarity to labeled images": "#9467bd",
                 "reconstruction": "#2ca02c", "long-tailed data": "#8c564b", "open-set data": "#e377c2",
                 "other": "#17becf"}

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

COLUMNS = ("method", "dataset", "split", "labels_per_class", "imbalance_ratio", "known_classes", "seed", "steps",
           "steps_done", "batch_size", "width", "accuracy", "balanced_accuracy", "tail_accuracy", "auroc",
           "wall_seconds", "seconds", "from_cache", "interrupted", "error")
METRICS = ("accuracy", "balanced_accuracy", "tail_accuracy", "auroc")
METRIC_LABELS = {"accuracy": "test accuracy", "balanced_accuracy": "balanced accuracy",
                 "tail_accuracy": "tail-class accuracy", "auroc": "outlier AUROC",
                 "wall_seconds": "seconds per run (training)"}


# ================================================================================================ the registry
def methods(include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[str]:
    """The registered methods, the supervised baseline first, in registry order: every method the package knows,
    so a newly registered one joins every comparison. ``include`` keeps only those (in the registry's order;
    unknown names raise), ``exclude`` drops some."""
    names = list(METHODS)
    if "supervised" in names:
        names.remove("supervised")
        names.insert(0, "supervised")
    if include is not None:
        include = list(include)
        for m in include:
            check_choice("method", m, METHODS)
        names = [m for m in names if m in include]
    return [m for m in names if m not in set(exclude)]


def resolve_methods(spec, default: Iterable[str] | None = None) -> list[str]:
    """A notebook parameter to a list of methods: ``[]`` -> ``default`` (every method when ``None``),
    ``["all"]`` -> every registered method, otherwise the names that are registered (others are skipped with a
    warning: a notebook written for a method that has not landed yet still runs)."""
    spec = list(spec or [])
    if not spec:
        return methods() if default is None else resolve_methods(list(default))
    if spec == ["all"]:
        return methods()
    missing = [m for m in spec if m not in METHODS]
    if missing:
        warnings.warn(f"not registered (skipped): {', '.join(missing)}", stacklevel=2)
    return methods(include=[m for m in spec if m in METHODS])


def info(method: str) -> dict:
    """:data:`METHOD_INFO` for ``method``, with the registry's summary and paper (``family`` "other" if unknown)."""
    d = {"notebook": "", "year": None, "family": "other", **METHOD_INFO.get(method, {})}
    cls = METHODS.get(method)
    d["summary"] = getattr(cls, "summary", "") if cls else ""
    d["paper"] = getattr(cls, "paper", "") if cls else ""
    return d


def color(method: str) -> str:
    return FAMILY_COLORS.get(info(method)["family"], FAMILY_COLORS["other"])


# ================================================================================================ the table
def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Table:
    """A tidy table: one dict per run (see the module docstring for the columns). Filter with :meth:`where`,
    aggregate over seeds with :meth:`summary`, show it with :meth:`to_html` (notebooks display it directly)."""

    def __init__(self, rows: Iterable[dict] = ()):
        self.rows = [dict(r) for r in rows]

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __add__(self, other: "Table") -> "Table":
        return Table(self.rows + list(other))

    def __repr__(self):
        return f"Table({len(self.rows)} runs: {', '.join(self.methods())})"

    def where(self, **conditions) -> "Table":
        """Rows whose columns equal the given values (a list or tuple value means "one of these")."""
        def ok(r):
            for k, v in conditions.items():
                if isinstance(v, (list, tuple, set)):
                    if r.get(k) not in v:
                        return False
                elif r.get(k) != v:
                    return False
            return True

        return Table(r for r in self.rows if ok(r))

    def ok(self) -> "Table":
        """The runs that finished: no error, not stopped early."""
        return Table(r for r in self.rows if not r.get("error") and not r.get("interrupted"))

    def failed(self) -> "Table":
        return Table(r for r in self.rows if r.get("error"))

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    def methods(self) -> list[str]:
        out = []
        for r in self.rows:
            if r["method"] not in out:
                out.append(r["method"])
        return out

    def values(self, name: str) -> list[float]:
        """The finite values of a column."""
        return [v for v in self.column(name) if _finite(v)]

    def summary(self, metric: str = "accuracy", by=("method",)) -> list[dict]:
        """One dict per group (in order of first appearance): the group's columns, ``n`` (finished runs with a
        value), ``mean``, ``std`` (sample standard deviation over the seeds; 0 for one run), ``min``, ``max``,
        ``by_seed`` ({seed: value}), ``wall_seconds`` (mean training time per run), ``cached`` (runs served by the
        cache) and ``failed`` (runs that raised)."""
        by = (by,) if isinstance(by, str) else tuple(by)
        groups: dict[tuple, list[dict]] = {}
        for r in self.rows:
            groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
        out = []
        for key, rows in groups.items():
            good = [r for r in rows if not r.get("error") and not r.get("interrupted") and _finite(r.get(metric))]
            vals = [float(r[metric]) for r in good]
            walls = [float(r["wall_seconds"]) for r in good if _finite(r.get("wall_seconds"))]
            d = dict(zip(by, key))
            d.update(n=len(vals), mean=statistics.fmean(vals) if vals else float("nan"),
                     std=statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else float("nan")),
                     min=min(vals) if vals else float("nan"), max=max(vals) if vals else float("nan"),
                     by_seed={r["seed"]: float(r[metric]) for r in good},
                     wall_seconds=statistics.fmean(walls) if walls else float("nan"),
                     cached=sum(bool(r.get("from_cache")) for r in rows),
                     failed=sum(bool(r.get("error")) for r in rows))
            out.append(d)
        return out

    def mean(self, metric: str = "accuracy", **conditions) -> float:
        """Mean of ``metric`` over the finished runs matching ``conditions`` (NaN if none)."""
        vals = [float(r[metric]) for r in self.where(**conditions).ok() if _finite(r.get(metric))]
        return statistics.fmean(vals) if vals else float("nan")

    # ------------------------------------------------------------------------------------------- display
    def summary_rows(self, metrics=("accuracy",), by=("method",)) -> list[dict]:
        """A display table: one row per group, ``mean ± sd (min-max)`` per metric, seconds per run, cache hits."""
        by = (by,) if isinstance(by, str) else tuple(by)
        per_metric = {m: {tuple(s[k] for k in by): s for s in self.summary(m, by)} for m in metrics}
        keys = list(per_metric[metrics[0]])
        rows = []
        for key in keys:
            row = dict(zip(by, key))
            first = per_metric[metrics[0]][key]
            for m in metrics:
                s = per_metric[m][key]
                row[METRIC_LABELS.get(m, m)] = _fmt_stat(s, m)
            row["runs"] = first["n"] + first["failed"]
            row["s / run"] = f"{first['wall_seconds']:.1f}" if _finite(first["wall_seconds"]) else "-"
            row["cached"] = first["cached"]
            if first["failed"]:
                row["note"] = f"{first['failed']} failed"
            rows.append(row)
        return rows

    def to_html(self, metrics=("accuracy",), by=("method",), title: str = "") -> str:
        rows = self.summary_rows(metrics, by)
        return html_table(rows, title)

    def runs_html(self, columns=("method", "seed", "accuracy", "wall_seconds", "from_cache")) -> str:
        """Every run, one row each, cached runs marked."""
        rows = []
        for r in self.rows:
            row = {}
            for c in columns:
                v = r.get(c)
                if c in METRICS:
                    v = "-" if not _finite(v) else (f"{v:.3f}" if c == "auroc" else f"{v:.1%}")
                elif c == "wall_seconds":
                    v = f"{v:.1f}" if _finite(v) else "-"
                elif c == "from_cache":
                    v = "cached" if v else ("failed" if r.get("error") else "trained")
                row[c] = v
            if r.get("error"):
                row["error"] = r["error"][:80]
            rows.append(row)
        return html_table(rows)

    def _repr_html_(self):
        metrics = [m for m in METRICS if self.values(m)] or ["accuracy"]
        return self.to_html(tuple(metrics))

    def to_records(self) -> list[dict]:
        """JSON-ready rows (NaN -> None)."""
        return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                for r in self.rows]


def _fmt_stat(s: dict, metric: str) -> str:
    if not s["n"]:
        return "-"
    if metric == "auroc":
        f = "{:.3f}"
        text = f.format(s["mean"])
        if s["n"] > 1:
            text += f" ± {s['std']:.3f} ({s['min']:.3f}-{s['max']:.3f})"
        return text
    text = f"{s['mean']:.1%}"
    if s["n"] > 1:
        text += f" ± {100 * s['std']:.1f} ({100 * s['min']:.1f}-{100 * s['max']:.1f})"
    return text


def html_table(rows: list[dict], title: str = "") -> str:
    if not rows:
        return "<i>No runs yet.</i>"
    cols = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    head = "".join(f"<th style='padding:3px 10px;text-align:left'>{html.escape(str(c))}</th>" for c in cols)
    body = ""
    for r in rows:
        cells = "".join(f"<td style='padding:3px 10px'>{html.escape(str(r.get(c, '')))}</td>" for c in cols)
        body += f"<tr>{cells}</tr>"
    cap = f"<caption style='text-align:left;font-weight:bold'>{html.escape(title)}</caption>" if title else ""
    return (f"<table class='sslteach-compare-table' style='font-size:14px;border-collapse:collapse'>{cap}"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


# ================================================================================================ running
def all_labels_split(dataset: str = "digits") -> Split:
    """Every training image labeled, none unlabeled: the split of the all-labels ceiling."""
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    return Split(ds, ds.x_train, ds.y_train, ds.x_train[:0], ds.y_train[:0], ds.x_test, ds.y_test, "all_labels", 0,
                 {"labels_per_class": int(ds.class_counts().min())})


def row_from_result(result, seconds: float = float("nan")) -> dict:
    """One table row from a :class:`~sslteach.train.TrainResult`."""
    sp = result.split or {}
    kind = sp.get("kind", "balanced")
    pc = list(result.per_class_accuracy or [])
    tail = [c for c in (sp.get("tail_classes") or []) if c < len(pc)]
    known = sp.get("known_classes")
    tc = result.train_config or {}
    return {"method": result.method, "dataset": result.dataset, "split": kind,
            "labels_per_class": result.labels_per_class if kind in ("balanced", "open_set", "all_labels") else None,
            "imbalance_ratio": sp.get("imbalance_ratio") if kind == "long_tailed" else None,
            "known_classes": (len(known) if isinstance(known, (list, tuple)) else known) if kind == "open_set"
            else None,
            "seed": result.seed, "steps": result.steps, "steps_done": result.steps_done,
            "batch_size": tc.get("batch_size"), "width": tc.get("width"),
            "accuracy": float(result.test_accuracy),
            "balanced_accuracy": float(result.balanced_accuracy),
            "tail_accuracy": statistics.fmean(pc[c] for c in tail) if kind == "long_tailed" and tail else None,
            "auroc": float(result.auroc) if result.auroc is not None else None,
            "wall_seconds": float(result.wall_seconds), "seconds": float(seconds),
            "from_cache": bool(result.from_cache), "interrupted": bool(result.interrupted), "error": ""}


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


def _train_one(method, dataset, budget, seed, split, cache, options, trainer_hook):
    if split == "all_labels":
        return train(method, split=all_labels_split(dataset), seed=seed, progress=False, cache=cache,
                     trainer_hook=trainer_hook, **options)
    return train(method, dataset, labels_per_class=budget if budget is not None else 2, split=split, seed=seed,
                 progress=False, cache=cache, trainer_hook=trainer_hook, **options)


def run_grid(methods_: Iterable[str] | None = None, dataset: str = "digits", seeds: Iterable[int] = (0, 1, 2),
             budgets: Iterable[int] | None = None, labels_per_class: int = 2, split: str = "balanced",
             cache=None, recompute: bool = False, errors: str = "record", verbose: bool = True,
             method_options: dict | None = None, callback: Callable | None = None,
             stop: threading.Event | None = None, trainer_hook: Callable | None = None, **options) -> Table:
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
    """
    check_choice("errors", errors, ("record", "raise"))
    check_choice("split", split, SPLIT_KINDS + ("all_labels",))
    names = methods() if methods_ is None else list(methods_)
    for m in names:
        check_choice("method", m, METHODS)
    seeds = [check_int("seed", s, 0) for s in seeds]
    if split in ("long_tailed", "all_labels"):
        budgets = [None]  # the split's label counts come from its own settings
    elif budgets is None:
        budgets = [check_int("labels_per_class", labels_per_class, 1)]
    else:
        budgets = [check_int("labels_per_class", b, 1) for b in budgets]
    runs = plan(names, seeds, budgets)
    table = Table()
    method_options = dict(method_options or {})
    t_grid = time.perf_counter()
    for i, (m, b, s) in enumerate(runs):
        if stop is not None and stop.is_set():
            break
        opts = {**options, **method_options.get(m, {})}
        t0 = time.perf_counter()
        try:
            result = _train_one(m, dataset, b, s, split, False if recompute else cache, opts, trainer_hook)
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
    training (the same steps as :func:`sslteach.train` takes before it looks the run up)."""
    from .cache import make_key
    from .train import TrainConfig, _cache_spec, resolve_options

    ds_name = dataset if isinstance(dataset, str) else dataset.name
    tcfg, scfg, mcfg, _ = resolve_options(METHODS[check_choice("method", method, METHODS)], ds_name,
                                          {**options, "seed": seed})
    m = get_method(method, **mcfg)
    config = TrainConfig(**tcfg).validate()
    if split == "all_labels":
        sp = all_labels_split(dataset)
    elif isinstance(split, Split):
        sp = split
    else:
        cfg = SplitConfig(kind=split or "balanced", labels_per_class=labels_per_class, **scfg).validate()
        sp = make_split(load_dataset(dataset) if isinstance(dataset, str) else dataset, cfg, seed=config.seed)
    return make_key(_cache_spec(m, config, sp))


def is_cached(method: str, dataset: str = "digits", labels_per_class: int = 2, split="balanced", seed: int = 0,
              cache=None, **options) -> bool:
    """Whether :func:`sslteach.train` would serve this run from the run cache (``cache`` as there)."""
    from .train import _cache_for

    store = _cache_for(None if cache is True else cache) if cache is not False else None
    if store is None:
        return False
    return cache_key(method, dataset, labels_per_class, split, seed, **options) in store


def estimate(runs: Iterable[tuple], steps: int, dataset: str = "digits", split="balanced", cache=None,
             method_options: dict | None = None, **options) -> dict:
    """What a grid will cost before it runs: ``runs`` from :func:`plan`. Returns ``{"runs", "cached",
    "cpu_seconds_cold"`` (one thread, every run trained), ``"cpu_seconds"`` (the runs not in the cache),
    ``"minutes_2_cores_cold"``, ``"minutes_2_cores"``}``; ``method_options`` as in :func:`run_grid`. The per-step costs are :data:`CPU_MS_PER_STEP` (measured
    on digits); on another dataset the numbers are ``nan`` (no measurement)."""
    runs = list(runs)
    cold = todo = 0.0
    cached = 0
    for m, b, s in runs:
        cpu = (CPU_MS_PER_STEP.get(m, DEFAULT_MS_PER_STEP) * steps / 1000 + RUN_OVERHEAD_S
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


# ================================================================================================ statistics
def paired_difference(acc_a, acc_b) -> tuple[float, int, float]:
    """Method A against method B on the same labeled sets (seed i of A and seed i of B share a split): the mean
    difference, the number of seeds where A is ahead, and the smallest difference (the worst seed for A)."""
    a, b = [float(v) for v in acc_a], [float(v) for v in acc_b]
    if len(a) != len(b) or not a:
        raise ValueError(f"acc_a and acc_b must be non-empty and of the same length; got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    return statistics.fmean(d), sum(x > 0 for x in d), min(d)


def gap_closed(acc: float, acc_supervised: float, acc_ceiling: float) -> float:
    """How much of the gap between the supervised baseline and the all-labels ceiling a method closes:
    (acc - supervised) / (ceiling - supervised); 1 = as good as having every label, 0 = no better than the
    baseline, negative = worse. NaN when the ceiling is not above the baseline."""
    gap = acc_ceiling - acc_supervised
    return (acc - acc_supervised) / gap if gap > 0 else float("nan")


def _paired(table: Table, a: str, b: str, metric: str = "accuracy", **where):
    sa = {r["seed"]: r[metric] for r in table.where(method=a, **where).ok() if _finite(r.get(metric))}
    sb = {r["seed"]: r[metric] for r in table.where(method=b, **where).ok() if _finite(r.get(metric))}
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return None
    return paired_difference([sa[s] for s in seeds], [sb[s] for s in seeds]) + (len(seeds),)


# ================================================================================================ figures
def _ceiling_value(ceiling) -> float | None:
    if ceiling is None:
        return None
    if isinstance(ceiling, Table):
        v = ceiling.mean("accuracy")
        return v if _finite(v) else None
    return float(ceiling)


def plot_bars(table: Table, metric: str = "accuracy", baseline: str = "supervised", ceiling=None, ax=None,
              title: str | None = None, sort: bool = True):
    """One horizontal bar per method: the mean over seeds, a dot per seed, the min-max range as an error bar;
    the baseline's mean as a dashed line (its seed range shaded) and the all-labels ceiling (a number or the
    :func:`ceiling` table) as a dotted line. Bars are coloured by family (:data:`METHOD_INFO`)."""
    stats = [s for s in table.summary(metric) if s["n"]]
    if sort:
        stats.sort(key=lambda s: s["mean"])
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.45 * len(stats) + 1.8))
    ys = np.arange(len(stats))
    for y, s in zip(ys, stats):
        c = color(s["method"])
        ax.barh(y, s["mean"], color=c, alpha=0.75, zorder=2)
        ax.errorbar(s["mean"], y, xerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], color="black",
                    capsize=4, lw=1.5, zorder=3)
        vals = list(s["by_seed"].values())
        ax.scatter(vals, [y] * len(vals), color="black", s=18, zorder=4)
    ax.set_yticks(ys, [s["method"] for s in stats])
    base = next((s for s in stats if s["method"] == baseline), None)
    if base is not None:
        ax.axvline(base["mean"], color="black", ls="--", lw=1.5, label=f"{baseline} (mean)", zorder=1)
        ax.axvspan(base["min"], base["max"], color="0.85", zorder=0, label=f"{baseline} (seed range)")
    top = _ceiling_value(ceiling)
    if top is not None and metric in ("accuracy", "balanced_accuracy"):
        ax.axvline(top, color="black", ls=":", lw=2, label="all labels (ceiling)")
    lo = min([s["min"] for s in stats] + ([top] if top else [])) if stats else 0
    ax.set_xlim(max(0.0, lo - 0.1) if metric != "auroc" else max(0.0, lo - 0.05), 1.0)
    label = METRIC_LABELS.get(metric, metric)
    ax.set_xlabel(f"{label} (bar: mean; dots: seeds; whiskers: min-max)")
    ax.set_title(title or f"{label} of every method")
    ax.legend(loc="lower right", fontsize=11)
    ax.grid(axis="y", alpha=0)
    return ax


def plot_compute(table: Table, metric: str = "accuracy", baseline: str = "supervised", ceiling=None, ax=None,
                 title: str | None = None):
    """Accuracy against training seconds per run (mean over seeds, log scale; the seed range as error bars):
    the compute trade-off. Cached runs keep the time they took when they were trained."""
    stats = [s for s in table.summary(metric) if s["n"] and _finite(s["wall_seconds"])]
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6))
    for s in stats:
        ax.errorbar(s["wall_seconds"], s["mean"], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], fmt="o",
                    color=color(s["method"]), ms=9, capsize=3)
        ax.annotate(s["method"], (s["wall_seconds"], s["mean"]), textcoords="offset points", xytext=(6, 4),
                    fontsize=11)
    top = _ceiling_value(ceiling)
    if top is not None:
        ax.axhline(top, color="black", ls=":", lw=2, label="all labels (ceiling)")
    base = next((s for s in stats if s["method"] == baseline), None)
    if base is not None:
        ax.axhline(base["mean"], color="black", ls="--", lw=1.5, label=f"{baseline}")
    ax.set_xscale("log")
    ax.set_xlabel("training time per run, seconds (log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or "Accuracy against compute")
    _family_legend(ax, [s["method"] for s in stats], extra=True)
    return ax


def plot_budget(table: Table, metric: str = "accuracy", ceiling=None, ax=None, title: str | None = None):
    """Accuracy against labels per class (log scale), one line per method: the mean over seeds with the seed
    range shaded."""
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6))
    budgets = sorted({r["labels_per_class"] for r in table.ok() if r.get("labels_per_class") is not None})
    for m in table.methods():
        stats = sorted((s for s in table.where(method=m).summary(metric, by=("labels_per_class",)) if s["n"]),
                       key=lambda s: s["labels_per_class"])
        if not stats:
            continue
        xs = [s["labels_per_class"] for s in stats]
        c = color(m) if m != "supervised" else "black"
        ax.plot(xs, [s["mean"] for s in stats], marker="o", color=c, label=m, ls="--" if m == "supervised" else "-")
        ax.fill_between(xs, [s["min"] for s in stats], [s["max"] for s in stats], color=c, alpha=0.12)
    top = _ceiling_value(ceiling)
    if top is not None:
        ax.axhline(top, color="black", ls=":", lw=2, label="all labels (ceiling)")
    ax.set_xscale("log", base=2)
    if budgets:
        ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("labeled images per class (log scale)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or "Accuracy against the label budget")
    ax.legend(fontsize=11, loc="lower right")
    return ax


def plot_long_tailed(table: Table, ax=None, title: str | None = None):
    """Balanced accuracy (mean recall over classes) and tail-class accuracy, side by side for every method, with
    the seeds as dots."""
    stats_b = {s["method"]: s for s in table.summary("balanced_accuracy") if s["n"]}
    stats_t = {s["method"]: s for s in table.summary("tail_accuracy") if s["n"]}
    names = sorted(stats_b, key=lambda m: stats_b[m]["mean"])
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.5 * len(names) + 1.8))
    ys = np.arange(len(names))
    for y, m in zip(ys, names):
        for dy, st, alpha, lab in ((0.2, stats_b, 0.8, "balanced accuracy"), (-0.2, stats_t, 0.4,
                                                                              "tail-class accuracy")):
            s = st.get(m)
            if s is None:
                continue
            ax.barh(y + dy, s["mean"], height=0.38, color=color(m), alpha=alpha, zorder=2,
                    hatch="" if dy > 0 else "//", edgecolor="white" if dy > 0 else "black")
            vals = list(s["by_seed"].values())
            ax.scatter(vals, [y + dy] * len(vals), color="black", s=12, zorder=4)
    if "supervised" in stats_t:
        ax.axvline(stats_t["supervised"]["mean"], color="black", ls="--", lw=1.5, label="supervised, tail")
    ax.set_yticks(ys, names)
    ax.set_xlim(0, 1)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="0.5", alpha=0.8, label="balanced accuracy (upper bar)"),
               Patch(facecolor="0.8", hatch="//", edgecolor="black", label="tail-class accuracy (lower bar)")]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="lower right", fontsize=11)
    ax.set_xlabel("accuracy on the balanced test set")
    ax.set_title(title or "Long-tailed split")
    ax.grid(axis="y", alpha=0)
    return ax


def plot_open_set(table: Table, ax=None, title: str | None = None):
    """Closed-set accuracy (known classes) against outlier AUROC, one point per method (mean over seeds): the best
    methods are up and to the right; AUROC 0.5 is a coin flip."""
    acc = {s["method"]: s for s in table.summary("accuracy") if s["n"]}
    au = {s["method"]: s for s in table.summary("auroc") if s["n"]}
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 6))
    for m in acc:
        if m not in au:
            continue
        ax.errorbar(acc[m]["mean"], au[m]["mean"], xerr=[[acc[m]["mean"] - acc[m]["min"]],
                                                         [acc[m]["max"] - acc[m]["mean"]]],
                    yerr=[[au[m]["mean"] - au[m]["min"]], [au[m]["max"] - au[m]["mean"]]], fmt="o", ms=9,
                    color=color(m), capsize=3)
        ax.annotate(m, (acc[m]["mean"], au[m]["mean"]), textcoords="offset points", xytext=(6, 4), fontsize=11)
    ax.axhline(0.5, color="black", ls=":", lw=1.5, label="AUROC 0.5 (chance)")
    ax.set_xlabel("closed-set accuracy (known classes)")
    ax.set_ylabel("outlier AUROC (unknown classes)")
    ax.set_title(title or "Open-set split")
    ax.legend(loc="lower right", fontsize=11)
    return ax


def _family_legend(ax, names, extra=False):
    from matplotlib.lines import Line2D

    fams = []
    for m in names:
        f = info(m)["family"]
        if f not in fams:
            fams.append(f)
    handles = [Line2D([], [], marker="o", ls="", color=FAMILY_COLORS.get(f, FAMILY_COLORS["other"]), label=f,
                      ms=9) for f in fams]
    if extra:
        handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=10, loc="lower right")


def plot_method_map(names: Iterable[str] | None = None, ax=None):
    """The methods of the collection by year and family (the notebook each comes from in brackets)."""
    names = methods() if names is None else list(names)
    fams = [f for f in FAMILY_COLORS if any(info(m)["family"] == f for m in names)]
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.7 * len(fams) + 1.5))
    placed: dict[tuple, int] = {}
    for m in names:
        d = info(m)
        if d["year"] is None:
            continue
        y = fams.index(d["family"])
        k = placed.get((d["year"], y), 0)
        placed[(d["year"], y)] = k + 1
        ax.scatter(d["year"], y, s=120, color=color(m), zorder=3)
        ax.annotate(f"{m} ({d['notebook']})" if d["notebook"] else m, (d["year"], y), textcoords="offset points",
                    xytext=(8, 6 - 16 * k), fontsize=11)
    ax.set_yticks(range(len(fams)), fams)
    years = [info(m)["year"] for m in names if info(m)["year"]]
    if years:
        ax.set_xlim(min(years) - 1, max(years) + 2)
    ax.set_xlabel("year of the paper")
    ax.set_title("The methods of the collection (notebook in brackets)")
    return ax


def plot_pipeline(ax=None):
    """The comparison as a pipeline: registry -> grid -> train() <-> run cache -> table -> figures and summary."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(13, 3.6))
    boxes = {"registry": (0.02, 0.55, "registry\nsslteach.METHODS"),
             "grid": (0.22, 0.55, "grid\nmethods x seeds x budgets\n(or a realistic split)"),
             "train": (0.45, 0.55, "train(...)\nsame steps, batch,\nlabeled split per seed"),
             "cache": (0.45, 0.05, "run cache\n(hit: well under a second)"),
             "table": (0.68, 0.55, "tidy table\none row per run"),
             "out": (0.86, 0.55, "figures and\n'which method when'")}
    w, h = 0.15, 0.36
    for x, y, text in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", fc="#eef3fb", ec="#1f77b4", lw=1.5))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=11)

    def arrow(a, b, dy=0.0, style="-|>"):
        xa, ya, _ = boxes[a]
        xb, yb, _ = boxes[b]
        if ya == yb:
            p, q = (xa + w, ya + h / 2 + dy), (xb, yb + h / 2 + dy)
        else:
            p, q = (xa + w / 2 + dy, ya), (xb + w / 2 + dy, yb + h)
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle=style, mutation_scale=16, lw=1.5, color="0.3"))

    arrow("registry", "grid")
    arrow("grid", "train")
    arrow("train", "table")
    arrow("table", "out")
    arrow("train", "cache", dy=-0.03)
    arrow("cache", "train", dy=0.03)
    ax.text(0.545, 0.46, "store / look up", fontsize=10, color="0.3")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1)
    ax.axis("off")
    return ax


def figure_png(fig) -> str:
    """A figure as a base64 PNG (for an HTML widget; safe to call from a background thread)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


# ================================================================================================ the summary
def _pct(v):
    return f"{100 * v:.1f} %" if _finite(v) else "n/a"


def _pts(v):
    return f"{100 * v:+.1f} points" if _finite(v) else "n/a"


def which_method_when(main: Table, ceiling=None, budget: Table | None = None, long_tailed: Table | None = None,
                      open_set: Table | None = None, baseline: str = "supervised", near: float = 0.02) -> str:
    """A short "which method when" written from the numbers (Markdown): the best methods on the balanced split
    and which of them are ahead of the baseline on every seed, the cheapest method close to the best, how the
    gain changes with the label budget, and the realistic splits. Every sentence is computed from the tables;
    the caveats of small-scale results close it."""
    out = []
    stats = {s["method"]: s for s in main.summary("accuracy") if s["n"]}
    base = stats.get(baseline)
    ranked = sorted((s for m, s in stats.items() if m != baseline), key=lambda s: -s["mean"])
    n_seeds = max((s["n"] for s in stats.values()), default=0)
    top = _ceiling_value(ceiling)
    lpc = next((r["labels_per_class"] for r in main.ok()), None)
    if ranked and base:
        best = ranked[0]
        line = (f"- **Few labels, balanced classes** ({lpc} labels per class, {n_seeds} seed(s)): the best mean is "
                f"**{best['method']}** at {_pct(best['mean'])}, {_pts(best['mean'] - base['mean'])} over the "
                f"supervised baseline ({_pct(base['mean'])})")
        closed = gap_closed(best["mean"], base["mean"], top) if top is not None else float("nan")
        if _finite(closed):
            line += f"; it closes {closed:.0%} of the gap to the all-labels ceiling ({_pct(top)})"
        tied = [s["method"] for s in ranked[1:] if s["max"] >= best["min"] and n_seeds > 1]
        if tied:
            line += (f". Not separable from it at {n_seeds} seeds (seed ranges overlap): "
                     f"{', '.join(tied)}")
        out.append(line + ".")
        always, not_always = [], []
        for s in ranked:
            p = _paired(main, s["method"], baseline)
            if p is None:
                continue
            mean_d, wins, worst, n = p
            (always if wins == n else not_always).append((s["method"], mean_d, wins, n))
        if always:
            out.append(f"- Ahead of {baseline} on every seed (same labeled images): "
                       + ", ".join(f"{m} ({_pts(d)})" for m, d, _, _ in always) + ".")
        if not_always:
            out.append(f"- Not ahead on every seed: "
                       + ", ".join(f"{m} ({_pts(d)} on average, ahead on {w} of {n})" for m, d, w, n in not_always)
                       + ".")
        timed = [s for s in ranked if _finite(s["wall_seconds"])]
        close = [s for s in timed if s["mean"] >= best["mean"] - near]
        if close and _finite(best["wall_seconds"]):
            cheap = min(close, key=lambda s: s["wall_seconds"])
            if cheap["method"] != best["method"]:
                out.append(f"- **Tight compute**: {cheap['method']} is within {100 * near:.0f} points of the best "
                           f"({_pct(cheap['mean'])}) at {cheap['wall_seconds']:.1f} s per run, against "
                           f"{best['wall_seconds']:.1f} s for {best['method']}.")
            else:
                out.append(f"- **Tight compute**: no method within {100 * near:.0f} points of {best['method']} "
                           f"is cheaper than it ({best['wall_seconds']:.1f} s per run).")
    if budget is not None and len(budget.ok()):
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
        if parts and lo != hi:
            shrink = [m for m, a, b in parts if a > b]
            text = "; ".join(f"{m} {_pts(a)} at {lo} vs {_pts(b)} at {hi}" for m, a, b in parts)
            verdict = ("the gain over supervised is largest when labels are scarcest for "
                       + (", ".join(shrink) if shrink else "none of them"))
            out.append(f"- **Label budget** ({lo}-{hi} labels per class): {text} — {verdict}.")
    for tab, kind, metric, label in ((long_tailed, "long-tailed", "tail_accuracy", "tail-class accuracy"),
                                     (open_set, "open-set", "auroc", "outlier AUROC")):
        if tab is None or not len(tab.ok()):
            continue
        headline = "balanced_accuracy" if kind == "long-tailed" else "accuracy"
        hs = {s["method"]: s for s in tab.summary(headline) if s["n"]}
        ms = {s["method"]: s for s in tab.summary(metric) if s["n"]}
        if not hs or not ms:
            continue
        nn = max(s["n"] for s in hs.values())
        b1 = max(hs.values(), key=lambda s: s["mean"])
        b2 = max(ms.values(), key=lambda s: s["mean"])
        fmt = (lambda v: f"{v:.3f}") if metric == "auroc" else _pct
        line = (f"- **{kind.capitalize()} split** ({nn} seed(s)): best {METRIC_LABELS[headline]} "
                f"{b1['method']} ({_pct(b1['mean'])}), best {label} {b2['method']} ({fmt(b2['mean'])})")
        if baseline in ms:
            line += f"; {baseline}: {_pct(hs[baseline]['mean'])} and {fmt(ms[baseline]['mean'])}"
        if "fixmatch" in ms and baseline in ms:
            d = ms["fixmatch"]["mean"] - ms[baseline]["mean"]
            line += (f"; FixMatch's {label} is {fmt(ms['fixmatch']['mean'])}, "
                     + ("below" if d < 0 else "not below") + f" the baseline's")
        special = [m for m in ms if info(m).get("designed_for") == ("long_tailed" if kind == "long-tailed"
                                                                     else "open_set")]
        for m in special:
            if "fixmatch" in ms:
                d = ms[m]["mean"] - ms["fixmatch"]["mean"]
                dh = hs[m]["mean"] - hs["fixmatch"]["mean"]
                diff = f"{d:+.3f}" if metric == "auroc" else _pts(d)
                line += (f"; {m}, built for this setting, vs FixMatch: {diff} in {label}, {_pts(dh)} in "
                         f"{METRIC_LABELS[headline]}")
        out.append(line + ".")
    out.append(f"- **Caveats**: 8x8 digits (or the chosen dataset), a small CNN, {_steps(main)} steps and the "
               f"papers' default knobs: these are small-scale results. With {n_seeds} seed(s), a difference smaller "
               "than the seed range is not a finding; rankings at the papers' scale (CIFAR-10, WRN-28-2, ~1M "
               "steps) differ — see the papers' table below. A method whose knobs were tuned for CIFAR can look "
               "worse here than it is.")
    return "\n".join(out)


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


# ================================================================================================ presets
def preset_settings(name: str) -> dict:
    """The settings of a "real images" preset from :mod:`sslteach.presets` (issue 17): a dict with ``dataset``,
    ``labels_per_class`` and loop settings (``steps``, ``width``, ``batch_size``, ...), and optionally
    ``methods`` and ``expected_seconds``. Raises a one-line error while that module does not exist."""
    try:
        from . import presets  # noqa: F401 - written for issue 17
    except ImportError:
        raise ValueError(f"preset {name!r}: sslteach.presets does not exist yet (issue 17); use preset = ''") \
            from None
    table = getattr(presets, "PRESETS", {})
    check_choice("preset", name, table)
    p = table[name]
    if hasattr(p, "as_dict"):
        p = p.as_dict()
    elif hasattr(p, "__dataclass_fields__"):
        from dataclasses import asdict

        p = asdict(p)
    return dict(p)


# ================================================================================================ the panel
class ComparePanel:
    """Pick the methods, the dataset, the split, the label budget, the number of seeds and the steps; press
    Compare: every run comes from the run cache when it is there (marked "cached" in the table) and is trained
    otherwise; tick "recompute" to retrain every run without the cache. Stop ends the grid after the current run
    (that run is kept, marked stopped). The estimate line says how many runs are cached before you press.

    ``panel.run()`` compares synchronously (tests); the button runs it in a background thread.
    """

    def __init__(self, methods_: Iterable[str] | None = None, selected: Iterable[str] | None = None,
                 dataset: str = "digits", datasets=OFFLINE_DATASETS, labels_per_class: int = 2, seeds: int = 3,
                 steps: int = 500, split: str = "balanced", device: str = "auto",
                 train_options: dict | None = None, cache=None, table: Table | None = None, max_steps: int = 3000):
        import ipywidgets as W

        names = methods() if methods_ is None else list(methods_)
        selected = [m for m in (selected or names[:3]) if m in names]
        self.train_options = {k: v for k, v in (train_options or {}).items() if k != "steps"}
        self.device, self.cache = device, cache
        lay = {"style": {"description_width": "110px"}, "layout": W.Layout(width="360px")}
        self.methods = W.SelectMultiple(options=names, value=tuple(selected), rows=min(len(names), 8),
                                        description="methods", **lay)
        datasets = list(datasets) + ([dataset] if dataset not in datasets else [])
        self.dataset = W.Dropdown(options=datasets, value=dataset, description="dataset", **lay)
        self.split = W.Dropdown(options=list(SPLIT_KINDS), value=split, description="split", **lay)
        self.labels = W.IntSlider(value=labels_per_class, min=1, max=20, description="labels/class",
                                  continuous_update=False, **lay)
        self.seeds = W.IntSlider(value=seeds, min=1, max=5, description="seeds", continuous_update=False, **lay)
        self.steps = W.IntSlider(value=steps, min=10, max=max(max_steps, steps), step=10, description="steps",
                                 continuous_update=False, **lay)
        self.recompute = W.Checkbox(value=False, description="recompute (retrain, ignore the run cache)",
                                    indent=False)
        self.compare_button = W.Button(description="Compare", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.estimate_line = W.HTML()
        self.status = W.HTML("Pick methods and press Compare.")
        self.errors = W.Output()
        self.table_html = W.HTML()
        self.figure = W.HTML()
        self.table = table if table is not None else Table()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trainer = None
        for w in (self.methods, self.dataset, self.split, self.labels, self.seeds, self.steps, self.recompute):
            w.observe(lambda ch: self._guard(self.update_estimate), names="value")
        self.compare_button.on_click(lambda b: self._guard(self.start))
        self.stop_button.on_click(lambda b: self._guard(self.stop))
        left = W.VBox([self.methods, self.dataset, self.split])
        right = W.VBox([self.labels, self.seeds, self.steps, self.recompute])
        self.widget = W.VBox([W.HBox([left, right]), W.HBox([self.compare_button, self.stop_button, self.status]),
                              self.estimate_line, self.errors, self.table_html, self.figure])
        self.widget.add_class("sslteach-compare")
        self.update_estimate()
        if len(self.table):
            self.show(self.table)

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - shown in the panel, not swallowed
            self.status.value = f"<span style='color:#b00'>Error: {html.escape(str(e))}</span>"
            with self.errors:
                traceback.print_exc()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def options(self) -> dict:
        """What :func:`run_grid` gets from the current widget values."""
        opts = {**self.train_options, "steps": self.steps.value, "device": self.device}
        return {"methods_": list(self.methods.value), "dataset": self.dataset.value, "split": self.split.value,
                "seeds": list(range(self.seeds.value)), "labels_per_class": self.labels.value, "options": opts}

    def update_estimate(self) -> str:
        o = self.options()
        if not o["methods_"]:
            self.estimate_line.value = "<i>No method selected.</i>"
            return self.estimate_line.value
        runs = plan(o["methods_"], o["seeds"], [None] if o["split"] == "long_tailed" else [o["labels_per_class"]])
        est = estimate(runs, o["options"]["steps"], o["dataset"], o["split"],
                       cache=False if self.recompute.value else self.cache,
                       **{k: v for k, v in o["options"].items() if k != "steps"})
        runs_text = (f"{len(runs)} runs, all retrained" if self.recompute.value
                     else f"{len(runs)} runs, {est['cached']} in the run cache")
        t = est["minutes_2_cores"]
        when = (f"; about {t * 60:.0f} s of training on 2 cores" if _finite(t)
                else "; no per-step measurement for this dataset")
        self.estimate_line.value = f"<small>{runs_text}{when}.</small>"
        return self.estimate_line.value

    def run(self, **overrides) -> Table:
        """Compare with the current widget values (``overrides`` replace :meth:`options` entries); the table and
        the bar chart are redrawn after every run."""
        o = {**self.options(), **overrides}
        if not o["methods_"]:
            raise ValueError("methods: pick at least one method")
        self._stop.clear()
        self.table = Table()
        self.status.value = "Comparing..."

        def on_row(row, i, n):
            self.table.rows.append(row)
            src = "cached" if row["from_cache"] else ("failed" if row["error"] else "trained")
            self.status.value = f"run {i + 1}/{n}: {html.escape(row['method'])} seed {row['seed']} ({src})"
            self.show(self.table, draw=(i + 1 == n))

        def hook(trainer):
            self._trainer = trainer
            if self._stop.is_set():
                trainer.stop()

        run_grid(o["methods_"], o["dataset"], seeds=o["seeds"], labels_per_class=o["labels_per_class"],
                 split=o["split"], cache=self.cache, recompute=self.recompute.value, verbose=False,
                 callback=on_row, stop=self._stop, trainer_hook=hook, **o["options"])
        self._trainer = None
        hits = sum(r["from_cache"] for r in self.table)
        stopped = " (stopped)" if self._stop.is_set() else ""
        self.status.value = (f"Done{stopped}: {len(self.table)} runs, {hits} from the run cache, "
                             f"{len(self.table) - hits} trained.")
        self.show(self.table)
        self.update_estimate()
        return self.table

    def show(self, table: Table, draw: bool = True) -> None:
        """Show a table (summary and every run, cached runs marked) and its bar chart."""
        metrics = tuple(m for m in METRICS if table.values(m)) or ("accuracy",)
        self.table_html.value = (table.to_html(metrics) + "<details><summary>every run</summary>"
                                 + table.runs_html() + "</details>")
        if draw and len(table.ok()):
            fig, ax = plt.subplots(figsize=(10, 0.45 * len(table.methods()) + 1.8))
            plot_bars(table, ax=ax)
            self.figure.value = f"<img src='data:image/png;base64,{figure_png(fig)}'/>"

    def start(self) -> threading.Thread:
        """Compare in a background thread (the Compare button), keeping Stop live."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        self.compare_button.disabled, self.stop_button.disabled = True, False

        def work():
            try:
                self._guard(self.run)
            finally:
                self.compare_button.disabled, self.stop_button.disabled = False, True

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """End the grid: the current run stops early (kept, marked stopped) and no further run starts."""
        self._stop.set()
        if self._trainer is not None:
            self._trainer.stop()
        self.status.value = "Stopping after the current run..."

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
