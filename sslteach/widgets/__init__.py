"""Widgets the notebooks share: the training panel (a method's knobs as sliders, Train / Stop, live curves, a table
that keeps every run), the model-view panel (06), the label-budget explorer (00) and the comparison panel (10),
all on one :class:`~sslteach.widgets.panel.Panel` base.

Every panel is a plain object: ``panel.widget`` is what Jupyter shows (displaying the panel shows it), and
``panel.run(...)`` works synchronously, so tests drive the panels without a browser.
"""
from __future__ import annotations

from .budget import BudgetExplorer
from .compare_panel import ComparePanel
from .panel import Panel, control_for
from .training import (COMMON_DIAGNOSTICS, PALETTE, WEIGHTS, LivePlot, ModelViewPanel, ResultsTable, TrainingPanel,
                       diagnostics)


def __getattr__(name: str):
    """``DIAGNOSTICS``: every curve the live plot knows, computed from the registered methods when asked for."""
    if name == "DIAGNOSTICS":
        return diagnostics()
    raise AttributeError(f"module 'sslteach.widgets' has no attribute {name!r}")


__all__ = ["BudgetExplorer", "COMMON_DIAGNOSTICS", "ComparePanel", "LivePlot", "ModelViewPanel", "PALETTE", "Panel",
           "ResultsTable", "TrainingPanel", "WEIGHTS", "control_for", "diagnostics"]
