"""The start-here experiment: test accuracy against the label budget, with the all-labels ceiling."""
from __future__ import annotations

import ipywidgets as W
import plotly.graph_objects as go

from ..data import all_labels_split, balanced_split, load_dataset
from ..train import train
from .panel import STYLE, Panel


class BudgetExplorer(Panel):
    """The start-here experiment: test accuracy against the number of labels per class for one method, with the
    all-labels ceiling. Move the slider and press Train to add a point (each budget remembers its runs)."""

    def __init__(self, method: str = "supervised", dataset: str = "digits", budgets=(1, 2, 5, 10, 20),
                 steps: int = 300, seeds=(0,), device: str = "auto", train_options: dict | None = None):
        self.method_name, self.dataset_name = method, dataset
        self.steps, self.seeds, self.device = steps, tuple(seeds), device
        self.train_options = dict(train_options or {})
        self.budget = W.SelectionSlider(options=list(budgets), value=budgets[min(1, len(budgets) - 1)],
                                        description="labels/class", continuous_update=False,
                                        style=STYLE, layout=W.Layout(width="420px"))
        self.train_button = W.Button(description="Train", button_style="success", icon="play")
        self.status = W.HTML("Pick a label budget and press Train.")
        self.errors = W.Output()
        self.points: dict[int, list[float]] = {}
        self.ceiling: float | None = None
        fig = go.Figure()
        fig.update_layout(height=400, width=760, template="plotly_white", font=dict(size=14),
                          title=f"{method} on {dataset}: test accuracy against the label budget",
                          xaxis=dict(title="labeled images per class (log scale)", type="log",
                                     tickvals=list(budgets)),  # ticks at the budgets, not at 1.5 images
                          yaxis=dict(title="test accuracy", range=[0, 1]), margin=dict(l=60, r=20, t=60, b=50))
        fig.add_scatter(x=[], y=[], mode="markers+lines", name="trained here", marker=dict(size=11))
        fig.add_scatter(x=[], y=[], mode="lines", name="all labels (ceiling)", line=dict(dash="dash", color="black"))
        self.fig = go.FigureWidget(fig)
        self.train_button.on_click(lambda b: self._guard(self.run))
        self.widget = W.VBox([W.HBox([self.budget, self.train_button]), self.status, self.errors, self.fig])

    def _train(self, split, seed):
        return train(self.method_name, split=split, steps=self.steps, seed=seed, device=self.device,
                     progress=False, **self.train_options)

    def run(self, budget: int | None = None) -> float:
        """Train at ``budget`` labels per class (mean over the seeds) and add the point to the plot."""
        budget = self.budget.value if budget is None else budget
        self.status.value = f"Training with {budget} labels per class..."
        ds = load_dataset(self.dataset_name)
        accs = [self._train(balanced_split(ds, budget, seed=s), s).test_accuracy for s in self.seeds]
        self.points.setdefault(budget, []).extend(accs)
        self._redraw()
        mean = sum(accs) / len(accs)
        self.status.value = f"{budget} labels/class: test accuracy {mean:.1%} (mean of {len(accs)} run(s))"
        return mean

    def run_ceiling(self) -> float:
        """Train once on *every* training label: the best this model can do with these steps."""
        self.ceiling = self._train(all_labels_split(self.dataset_name), 0).test_accuracy
        self._redraw()
        return self.ceiling

    def _redraw(self):
        xs = sorted(self.points)
        with self.fig.batch_update():
            self.fig.data[0].x, self.fig.data[0].y = xs, [sum(self.points[b]) / len(self.points[b]) for b in xs]
            if self.ceiling is not None:
                lo = min(xs + [1])
                hi = max(xs + [int(self.budget.options[-1])])
                self.fig.data[1].x, self.fig.data[1].y = [lo, hi], [self.ceiling, self.ceiling]
