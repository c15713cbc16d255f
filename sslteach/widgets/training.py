"""The training panel: a method's knobs as sliders (from its configuration's metadata), Train / Stop, live plotly
curves (accuracy of every run; the current run's loss terms and diagnostics) and a table that keeps every run; and
the model-view panel of notebook 06.

Every panel is a plain object: ``panel.widget`` is what Jupyter shows (displaying the panel shows it), and
``panel.run(...)`` trains synchronously, so tests drive the panels without a browser. In a notebook the Train
button starts :meth:`TrainingPanel.start`, which trains in a background thread so the Stop button stays live.
"""
from __future__ import annotations

import html
from dataclasses import fields

import ipywidgets as W
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..compare.table import row_from_result
from ..data import OFFLINE_DATASETS, SPLIT_KINDS
from ..methods import METHODS
from ..train import TrainResult, train
from ..utils import check_choice, check_int
from ..viz import html_table, png_bytes
from .panel import STYLE, WIDE, Panel, control_for

#: Curves every method may log; a method's own (its ``diagnostics``) are added by :func:`diagnostics`.
COMMON_DIAGNOSTICS = ("loss", "loss_x", "loss_u", "mask_rate", "pseudo_acc")
#: Loss weights ramp up to large values (Mean Teacher's w_max = 100): drawn against their own y axis on the right of
#: the right-hand plot, so the loss terms (about 0-2) and the rates (0-1) stay readable.
WEIGHTS = ("weight_u",)
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def diagnostics() -> tuple[str, ...]:
    """The curves the live plot draws when a run logs them: the common ones, then every registered method's
    ``diagnostics`` (so a new method's curves appear without editing this module)."""
    out = list(COMMON_DIAGNOSTICS)
    for cls in METHODS.values():
        out += [k for k in cls.diagnostics if k not in out]
    return tuple(out)


class ResultsTable:
    """Every finished run, one row each, for side-by-side comparison (rendered as an HTML table)."""

    def __init__(self):
        self.rows: list[dict] = []
        self.widget = W.HTML(self._html())

    def add(self, result: TrainResult, label: str | None = None) -> dict:
        r = row_from_result(result)
        knobs = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in result.method_config.items())
        sp = result.split or {}
        budget = (("labeled set", f"gamma {sp.get('imbalance_ratio', 0):g}, N_max {sp.get('n_max')}")
                  if r["split"] == "long_tailed" else ("labels/class", result.labels_per_class))
        row = {"run": len(self.rows) + 1, "label": label or result.method, "method": result.method,
               "dataset": result.dataset, budget[0]: budget[1], "seed": result.seed,
               "options": knobs or "-", "steps": result.steps_done, "test accuracy": r["accuracy"]}
        if r["split"] == "long_tailed":
            row["tail accuracy"] = r["tail_accuracy"] if r["tail_accuracy"] is not None else float("nan")
        if r["split"] == "open_set":
            row["AUROC"] = r["auroc"] if r["auroc"] is not None else float("nan")
        row["seconds"] = r["wall_seconds"]
        row["note"] = "; ".join(n for n in ("stopped early" if result.interrupted else "",
                                            "from the run cache" if result.from_cache else "") if n)
        self.rows.append(row)
        self.widget.value = self._html()
        return row

    _FORMATS = {"test accuracy": lambda v: f"{v:.1%}", "tail accuracy": lambda v: f"{v:.1%}" if v == v else "n/a",
                "AUROC": lambda v: f"{v:.3f}" if v == v else "n/a", "seconds": lambda v: f"{v:.1f}"}

    def _html(self) -> str:
        if not self.rows:
            return "<i>No runs yet: press Train.</i>"
        best = max(r["test accuracy"] for r in self.rows)
        shown = [{c: self._FORMATS.get(c, str)(v) for c, v in r.items()} for r in self.rows]
        bold = {(i, "test accuracy") for i, r in enumerate(self.rows) if r["test accuracy"] == best}
        return html_table(shown, css_class="sslteach-results", bold=bold)

    def clear(self):
        self.rows.clear()
        self.widget.value = self._html()


class LivePlot:
    """Two plotly panels updated during training: test accuracy of every run (left; earlier runs stay for
    comparison) and the current run's loss terms and diagnostics (right)."""

    def __init__(self, title_left="Test accuracy", title_right="Loss terms and diagnostics (current run)"):
        fig = make_subplots(rows=1, cols=2, subplot_titles=(title_left, title_right), horizontal_spacing=0.12,
                            specs=[[{}, {"secondary_y": True}]])
        fig.update_layout(height=380, width=980, margin=dict(l=60, r=20, t=50, b=50), font=dict(size=14),
                          legend=dict(font=dict(size=12)), template="plotly_white")
        fig.update_xaxes(title_text="training step", row=1, col=1)
        fig.update_xaxes(title_text="training step", row=1, col=2)
        fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=1)
        fig.update_yaxes(title_text="value", row=1, col=2, secondary_y=False)
        fig.update_yaxes(title_text="loss weight", showgrid=False, rangemode="tozero", tickmode="auto", visible=False,
                         row=1, col=2, secondary_y=True)
        self.fig = go.FigureWidget(fig)
        self._acc_trace = None
        self._extra: dict[str, int] = {}
        self._diag: dict[str, int] = {}

    def begin_run(self, label: str, run_number: int, extra_acc: dict[str, str] | None = None) -> None:
        """Start a new accuracy curve. ``extra_acc`` maps more history keys to curve names, drawn dashed in the
        same colour (e.g. ``{"test_acc": "student"}`` next to a teacher's headline curve)."""
        with self.fig.batch_update():
            # drop the previous run's diagnostic curves, keep every accuracy curve
            self.fig.data = tuple(t for t in self.fig.data if getattr(t, "xaxis", "x") in ("x", None))
            color = PALETTE[(run_number - 1) % len(PALETTE)]
            self.fig.add_scatter(x=[], y=[], mode="lines+markers", name=f"#{run_number} {label}", row=1, col=1,
                                 line=dict(color=color, width=3), legendgroup="acc")
            self._acc_trace = len(self.fig.data) - 1
            self._extra = {}
            for i, (key, name) in enumerate((extra_acc or {}).items()):
                self.fig.add_scatter(x=[], y=[], mode="lines", name=f"#{run_number} {name}", row=1, col=1,
                                     line=dict(color=color, width=2, dash=("dash", "dot", "dashdot")[i % 3]),
                                     legendgroup="acc")
                self._extra[key] = len(self.fig.data) - 1
            self._weight_axis(False)
        self._diag = {}

    def _weight_axis(self, visible: bool) -> None:
        """Show the right-hand y axis of the loss weights (and move the legend clear of its tick labels)."""
        self.fig.update_yaxes(visible=visible, row=1, col=2, secondary_y=True)
        self.fig.update_layout(legend_x=1.07 if visible else 1.02)

    def update(self, record: dict) -> None:
        with self.fig.batch_update():
            t = self.fig.data[self._acc_trace]
            t.x = tuple(t.x or ()) + (record["step"],)
            t.y = tuple(t.y or ()) + (record["test_acc_report"],)
            for key, idx in self._extra.items():
                if record.get(key) is not None:
                    e = self.fig.data[idx]
                    e.x, e.y = tuple(e.x or ()) + (record["step"],), tuple(e.y or ()) + (record[key],)
            for k in diagnostics():
                if record.get(k) is None:
                    continue
                if k not in self._diag:
                    weight = k in WEIGHTS
                    self.fig.add_scatter(x=[], y=[], mode="lines", name=f"{k} (right axis)" if weight else k,
                                         row=1, col=2, secondary_y=weight,
                                         line=dict(dash="dot" if k in ("mask_rate", "pseudo_acc") else "solid"))
                    if weight:
                        self._weight_axis(True)
                    self._diag[k] = len(self.fig.data) - 1
                d = self.fig.data[self._diag[k]]
                d.x = tuple(d.x or ()) + (record["step"],)
                d.y = tuple(d.y or ()) + (record[k],)

    def points(self) -> int:
        """Number of accuracy points of the current run (tests use it)."""
        return 0 if self._acc_trace is None else len(self.fig.data[self._acc_trace].x or ())


class TrainingPanel(Panel):
    """Controls for one or more methods on one dataset: method choice, dataset, label budget, steps, seed, the
    method's own knobs (rebuilt when the method changes), Train / Stop, live curves and the results table.

    ``TrainingPanel(["supervised", "fixmatch"], steps=500)``; ``panel.run()`` trains with the current widget values
    (keyword arguments override them) and returns the :class:`~sslteach.train.TrainResult`.

    ``split="long_tailed"`` replaces the label-budget slider by an imbalance-ratio slider (CoSSL's setting);
    ``split="open_set"`` adds a slider for the number of known classes (OpenMatch's). ``dataset`` may be any
    dataset name (the downloaded ones too). Only the last ``keep_models`` runs keep their trained models in memory
    (older rows keep their numbers and curves), so a long class does not fill the kernel's memory.
    """

    def __init__(self, methods=("supervised",), dataset: str = "digits", datasets=OFFLINE_DATASETS,
                 labels_per_class: int = 2, steps: int = 500, seed: int = 0, device: str = "auto",
                 max_labels: int = 20, max_steps: int = 3000, knobs: dict | None = None, hidden=(),
                 train_options: dict | None = None, extra_acc: dict[str, str] | None = None,
                 split: str = "balanced", imbalance_ratio: float = 50.0, known_classes: int = 6,
                 keep_models: int = 3):
        methods = [methods] if isinstance(methods, str) else list(methods)
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}; valid values: {', '.join(METHODS)}")
        self.device = device
        self.train_options = dict(train_options or {})
        self.hidden = set(hidden)
        self.extra_acc = dict(extra_acc or {})
        self.knob_defaults = dict(knobs or {})
        self.method = W.Dropdown(options=methods, value=methods[0], description="method",
                                 layout=W.Layout(width="300px"))
        datasets = list(datasets) + ([dataset] if dataset not in datasets else [])
        self.dataset = W.Dropdown(options=datasets, value=dataset, description="dataset",
                                  layout=W.Layout(width="300px"))
        self.labels = W.IntSlider(value=labels_per_class, min=1, max=max_labels, description="labels/class",
                                  continuous_update=False, style=STYLE,
                                  layout=W.Layout(width=WIDE))
        self.steps = W.IntSlider(value=steps, min=10, max=max(max_steps, steps), step=10, description="steps",
                                 continuous_update=False, style=STYLE,
                                 layout=W.Layout(width=WIDE))
        self.seed = W.BoundedIntText(value=seed, min=0, max=10**6, description="seed", layout=W.Layout(width="200px"))
        check_choice("split", split, SPLIT_KINDS)
        self.split = split
        self.keep_models = check_int("keep_models", keep_models, 0)
        slider = dict(continuous_update=False, style=STYLE, layout=W.Layout(width=WIDE))
        self.imbalance = W.FloatSlider(value=imbalance_ratio, min=1, max=100, step=1, description="imbalance ratio",
                                       readout_format=".0f", tooltip="gamma = N_max / N_min of the labeled and "
                                       "unlabeled class sizes (CoSSL: 50, 100, 150 on CIFAR-10-LT)", **slider)
        self.known = W.IntSlider(value=known_classes, min=2, max=9, description="known classes",
                                 tooltip="classes 0..K-1 are known (labeled); the others appear only, unlabeled, "
                                         "as outliers", **slider)
        split_controls = {"balanced": [self.labels], "long_tailed": [self.imbalance],
                          "open_set": [self.known, self.labels]}[split]
        self.train_button = W.Button(description="Train", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.status = W.HTML("Ready.")
        self.errors = W.Output()
        self.knob_box = W.VBox()
        self.knobs: dict[str, W.Widget] = {}
        self.plot = LivePlot()
        self.table = ResultsTable()
        self.results: list[TrainResult] = []
        self.trainer = None
        self._pending_stop = False
        self.method.observe(lambda ch: self._guard(self._build_knobs), names="value")
        self.train_button.on_click(lambda b: self._guard(self.start))
        self.stop_button.on_click(lambda b: self._guard(self.stop))
        self._build_knobs()
        left = W.VBox([self.method, self.dataset, *split_controls, self.steps, self.seed])
        buttons = W.HBox([self.train_button, self.stop_button, self.status])
        self.widget = W.VBox([W.HBox([left, self.knob_box]), buttons, self.errors, self.plot.fig,
                              W.HTML("<b>Runs so far</b>"), self.table.widget])
        self.widget.add_class("sslteach-panel")

    # ---------------------------------------------------------------- building
    def _build_knobs(self):
        cls = METHODS[self.method.value]
        self.knobs = {f.name: control_for(f, self.knob_defaults.get(f.name))
                      for f in fields(cls.Config) if f.name not in self.hidden}
        note = []
        if any((f.metadata or {}).get("paper") is not None for f in fields(cls.Config) if f.name in self.knobs):
            note = [W.HTML("<small>* a CPU-scaled default: hover over the slider for the paper's value</small>")]
        self.knob_box.children = ([W.HTML(f"<b>{cls.name}</b>: {html.escape(cls.summary)}")]
                                  + list(self.knobs.values()) + note)

    # ---------------------------------------------------------------- running
    def options(self, **overrides) -> dict:
        opts = {"method": self.method.value, "dataset": self.dataset.value, "labels_per_class": self.labels.value,
                "steps": self.steps.value, "seed": self.seed.value, "device": self.device, "progress": False,
                "split": self.split}
        if self.split == "long_tailed":
            opts["imbalance_ratio"] = float(self.imbalance.value)
        if self.split == "open_set":
            opts["known_classes"] = int(self.known.value)
        opts.update(self.train_options)
        opts.update({k: w.value for k, w in self.knobs.items()})
        opts.update(overrides)
        return opts

    def run(self, label: str | None = None, **overrides) -> TrainResult:
        """Train once with the widgets' values (``overrides`` win); update the plot and the table live."""
        opts = self.options(**overrides)
        method = opts.pop("method")
        self.trainer = None
        label = label or method
        run_number = len(self.results) + 1
        self.plot.begin_run(label, run_number, self.extra_acc)
        self.status.value = f"Training <b>{html.escape(label)}</b> (run {run_number})..."
        self.train_button.disabled, self.stop_button.disabled = True, False

        def hook(trainer):
            self.trainer = trainer
            if self._pending_stop:  # Stop pressed before the run had started: honour it now
                trainer.stop()

        def on_eval(trainer, record):
            self.plot.update(record)
            self.status.value = (f"Training <b>{html.escape(label)}</b>: step {record['step']}/{opts['steps']}, "
                                 f"test accuracy {record['test_acc_report']:.1%}")

        try:
            result = train(method, callbacks={"on_eval": on_eval}, trainer_hook=hook, **opts)
        finally:
            self.train_button.disabled, self.stop_button.disabled = False, True
        self._keep(result)
        self.table.add(result, label)
        self.status.value = html.escape(result.summary())
        return result

    def _keep(self, result: TrainResult, owned: bool = True) -> None:
        """Remember a finished run; the panel's own runs older than the last ``keep_models`` let go of their trained
        models. A run shown with :meth:`add_result` belongs to the caller and is never emptied."""
        self.results.append(result)
        if owned:
            self._owned = getattr(self, "_owned", set()) | {id(result)}
        old = self.results[:-self.keep_models] if self.keep_models else self.results
        for r in old:
            if id(r) in getattr(self, "_owned", set()):
                r.model = r.ema_model = r.method_obj = None

    def add_result(self, result: TrainResult, label: str | None = None) -> None:
        """Show a run trained outside the panel (e.g. by ``train(...)`` in an earlier cell) as if the panel had
        trained it: its accuracy curve and a table row."""
        label = label or result.method
        self.plot.begin_run(label, len(self.results) + 1, self.extra_acc)
        for record in result.history.records:
            self.plot.update(record)
        self._keep(result, owned=False)
        self.table.add(result, label)

    def start(self):
        """What the Train button does: :meth:`run` in a background thread, so Stop stays responsive."""
        if self.busy:
            self.status.value = "A run is already in progress: press Stop first."
            return self._thread
        self.errors.clear_output()
        self._pending_stop = False
        return self._launch(self.run)

    def stop(self) -> None:
        """What the Stop button does: end the current run after this step; its curve and row are kept."""
        if not self.busy:
            self.status.value = "Nothing to stop: no run in progress."
            return
        if self.trainer is None:  # the run is still being set up: it stops as soon as it starts
            self._pending_stop = True
        else:
            self.trainer.stop()
        self.status.value = "Stopping..."


# ------------------------------------------------------------------------------- notebook 06 (SWWAE): a model view


class ModelViewPanel(TrainingPanel):
    """A :class:`TrainingPanel` with a picture of the model under the curves (notebook 06: reconstructions),
    redrawn at every evaluation during training and once more from the reported model when a run ends.

    ``view(model)`` returns a matplotlib ``Figure`` (build it with ``matplotlib.figure.Figure``, not pyplot: it is
    called from the training thread) or ``None`` when the model has nothing to show (e.g. the baseline's network).
    The picture is a PNG ``ipywidgets.Image`` (``panel.view``); like every widget it needs a live kernel, so a notebook
    also draws the final picture statically after the panel.
    """

    def __init__(self, methods=("supervised",), view=None, view_title: str = "", **kwargs):
        self.view_fn = view
        self.view = W.Image(format="png", layout=W.Layout(max_width="980px"))
        self.view_note = W.HTML(f"<b>{html.escape(view_title)}</b>" if view_title else "")
        self.view_count = 0
        self._trainer = None
        super().__init__(methods, **kwargs)
        self.widget.children = tuple(self.widget.children) + (self.view_note, self.view)

    @property
    def trainer(self):
        return self._trainer

    @trainer.setter
    def trainer(self, trainer):  # the base class's run() hands over each new Trainer here: hook the view onto it
        self._trainer = trainer
        if trainer is not None and self.view_fn is not None:
            trainer.add_callback("on_eval", lambda t, record: self.redraw(t.model))

    def redraw(self, model) -> bool:
        """Draw ``view(model)`` into the picture; returns whether there was something to draw."""
        fig = self.view_fn(model) if (self.view_fn is not None and model is not None) else None
        if fig is None:
            return False
        self.view.value = png_bytes(fig)
        self.view_count += 1
        return True

    def run(self, label: str | None = None, **overrides) -> TrainResult:
        result = super().run(label, **overrides)
        self.redraw(result.report_model())
        return result

    def add_result(self, result: TrainResult, label: str | None = None) -> None:
        super().add_result(result, label)
        self.redraw(result.report_model())

