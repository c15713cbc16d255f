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
comparison (its year, family, notebook and step cost are read from its class), and a method that fails on a split
is recorded as a failed row (``error``), not a crash.

The pieces, one job per module: :mod:`~sslteach.compare.registry` (which methods, their facts and colours),
:mod:`~sslteach.compare.grid` (running a grid, the ceiling, estimates), :mod:`~sslteach.compare.table` (the table,
pandas underneath), :mod:`~sslteach.compare.stats` (paired differences), :mod:`~sslteach.compare.plots` (the
figures), :mod:`~sslteach.compare.report` (the written summary and the papers' results); the panel is
:class:`sslteach.widgets.ComparePanel`. Every name is importable from ``sslteach.compare``.

A :class:`Table` row is one run: ``method, dataset, split, labels_per_class, imbalance_ratio, known_classes, seed,
steps, steps_done, batch_size, width, accuracy, balanced_accuracy, tail_accuracy, auroc, wall_seconds, seconds,
from_cache, interrupted, error``. ``accuracy`` is the reported model's test accuracy (known classes only on an
open-set split), ``tail_accuracy`` the mean recall of the rarest classes of a long-tailed split, ``auroc`` how well
the method's outlier score separates unknown-class test images on an open-set split. ``wall_seconds`` is the time
the run took to *train* (stored with a cached run), ``seconds`` the time this call spent on it (about zero for a
cache hit).
"""
from __future__ import annotations

from ..data import all_labels_split
from ..viz import figure_png, html_table
from .grid import (_error_row, _print_group, cache_key, ceiling, estimate, is_cached, plan, prepare_one,  # noqa: F401
                   run_grid)
from .plots import (_ceiling_value, _family_legend, plot_bars, plot_budget, plot_compute,  # noqa: F401
                    plot_long_tailed, plot_method_map, plot_open_set, plot_pipeline)
from .registry import (COMPARISON_SCALE, DEFAULT_MS_PER_STEP, FAMILY_COLORS, RUN_OVERHEAD_S, TWO_CORE_SPEEDUP,
                       color, cpu_ms_per_step, info, method_info, methods, resolve_methods)
from .report import PAPER_RESULTS, TORCHSSL_CIFAR10, _pct, _pts, papers_table_markdown, which_method_when  # noqa: F401
from .stats import gap_closed, leader, paired, paired_difference
from .table import COLUMNS, METRIC_LABELS, METRICS, Table, _fmt_stat, row_from_result  # noqa: F401


def __getattr__(name: str):
    """``METHOD_INFO`` and ``CPU_MS_PER_STEP``: views of the registered methods' class attributes, computed when
    asked for (so a method registered later is in them)."""
    if name == "METHOD_INFO":
        return method_info()
    if name == "CPU_MS_PER_STEP":
        return cpu_ms_per_step()
    if name == "ComparePanel":  # the panel lives with the other panels; importing it here would be circular
        from ..widgets import ComparePanel

        return ComparePanel
    raise AttributeError(f"module 'sslteach.compare' has no attribute {name!r}")


__all__ = ["COLUMNS", "COMPARISON_SCALE", "ComparePanel", "DEFAULT_MS_PER_STEP", "FAMILY_COLORS", "RUN_OVERHEAD_S",
           "TWO_CORE_SPEEDUP", "METRICS", "METRIC_LABELS",
           "PAPER_RESULTS", "Table", "all_labels_split", "cache_key", "ceiling", "color", "estimate", "figure_png",
           "gap_closed", "html_table", "info", "is_cached", "leader", "methods", "paired", "paired_difference",
           "papers_table_markdown", "plan", "plot_bars", "plot_budget", "plot_compute", "plot_long_tailed",
           "plot_method_map", "plot_open_set", "plot_pipeline", "resolve_methods", "row_from_result", "run_grid",
           "which_method_when"]
