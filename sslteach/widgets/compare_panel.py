"""The comparison panel of notebook 10: methods x seeds on one split, every run from the run cache or trained."""
from __future__ import annotations

import html
import threading
from typing import Iterable

import matplotlib.pyplot as plt

from ..compare.grid import estimate, plan, run_grid
from ..compare.plots import plot_bars
from ..compare.registry import methods
from ..compare.table import METRICS, Table, _finite
from ..data import OFFLINE_DATASETS, SPLIT_KINDS
from ..viz import figure_png
from .panel import Panel


class ComparePanel(Panel):
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

    def start(self):
        """Compare in a background thread (the Compare button), keeping Stop live."""
        if self.busy:
            return self._thread
        self.compare_button.disabled, self.stop_button.disabled = True, False

        def work():
            try:
                self.run()
            finally:
                self.compare_button.disabled, self.stop_button.disabled = False, True

        return self._launch(work)

    def stop(self) -> None:
        """End the grid: the current run stops early (kept, marked stopped) and no further run starts."""
        self._stop.set()
        if self._trainer is not None:
            self._trainer.stop()
        self.status.value = "Stopping after the current run..."
