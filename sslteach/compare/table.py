"""The comparison's table: one row per run, with pandas underneath (:meth:`Table.to_frame`, :meth:`Table.to_csv`).

A row is one run: ``method, dataset, split, labels_per_class, imbalance_ratio, known_classes, seed, steps,
steps_done, batch_size, width, accuracy, balanced_accuracy, tail_accuracy, auroc, wall_seconds, seconds, from_cache,
interrupted, error`` (see :mod:`sslteach.compare`).
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable

import pandas as pd

from ..viz import html_table

COLUMNS = ("method", "dataset", "split", "labels_per_class", "imbalance_ratio", "known_classes", "seed", "steps",
           "steps_done", "batch_size", "width", "accuracy", "balanced_accuracy", "tail_accuracy", "auroc",
           "wall_seconds", "seconds", "from_cache", "interrupted", "error")
METRICS = ("accuracy", "balanced_accuracy", "tail_accuracy", "auroc")
METRIC_LABELS = {"accuracy": "test accuracy", "balanced_accuracy": "balanced accuracy",
                 "tail_accuracy": "tail-class accuracy", "auroc": "outlier AUROC",
                 "wall_seconds": "seconds per run (training)"}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Table:
    """A tidy table: one dict per run (see the module docstring for the columns). Filter with :meth:`where`,
    aggregate over seeds with :meth:`summary`, show it with :meth:`to_html` (notebooks display it directly), hand
    it to pandas with :meth:`to_frame` or to a spreadsheet with :meth:`to_csv`."""

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
        cache) and ``failed`` (runs that raised). Computed with pandas from :meth:`to_frame`."""
        by = (by,) if isinstance(by, str) else tuple(by)
        if not self.rows:
            return []
        frame = self.to_frame()
        good = ~frame["error"].map(lambda e: isinstance(e, str) and bool(e)) & ~frame["interrupted"].map(
            lambda v: v is True)
        value = pd.to_numeric(frame[metric], errors="coerce") if metric in frame else pd.Series(float("nan"),
                                                                                              index=frame.index)
        good &= value.map(_finite)
        keys = frame[list(by)].astype(object).where(frame[list(by)].notna(), None)
        out = []
        for _, group in keys.groupby(list(by), sort=False, dropna=False):
            idx = list(group.index)
            rows = [self.rows[i] for i in idx]
            ok = [i for i in idx if good[i]]
            vals, walls = value[ok], pd.to_numeric(frame.loc[ok, "wall_seconds"], errors="coerce").dropna()
            d = {k: rows[0].get(k) for k in by}
            d.update(n=len(vals), mean=float(vals.mean()) if len(vals) else float("nan"),
                     std=float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else float("nan")),
                     min=float(vals.min()) if len(vals) else float("nan"),
                     max=float(vals.max()) if len(vals) else float("nan"),
                     by_seed={self.rows[i]["seed"]: float(value[i]) for i in ok},
                     wall_seconds=float(walls.mean()) if len(walls) else float("nan"),
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

    def to_frame(self):
        """The runs as a pandas ``DataFrame`` (one row per run, the columns of :data:`COLUMNS` first)."""
        cols = list(COLUMNS) + [c for r in self.rows for c in r if c not in COLUMNS]
        cols = list(dict.fromkeys(cols))
        return pd.DataFrame(self.rows, columns=cols)

    def to_csv(self, path=None) -> str | None:
        """The runs as CSV (one row per run): written to ``path``, or returned as a string."""
        return self.to_frame().to_csv(path, index=False)

    def to_records(self) -> list[dict]:
        """JSON-ready rows (NaN -> None)."""
        return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                for r in self.rows]


def row_from_result(result, seconds: float = float("nan")) -> dict:
    """One table row from a :class:`~sslteach.train.TrainResult`."""
    sp = result.split or {}
    kind = sp.get("kind", "balanced")
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
            "tail_accuracy": result.tail_accuracy if kind == "long_tailed" and sp.get("tail_classes") else None,
            "auroc": float(result.auroc) if result.auroc is not None else None,
            "wall_seconds": float(result.wall_seconds), "seconds": float(seconds),
            "from_cache": bool(result.from_cache), "interrupted": bool(result.interrupted), "error": ""}


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
