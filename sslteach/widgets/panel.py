"""What every panel shares: widgets built from a configuration field's metadata, callbacks whose exceptions are
shown in the panel (never swallowed), display in Jupyter, and a background thread for the long job so the Stop
button stays live."""
from __future__ import annotations

import html
import threading
import traceback

import ipywidgets as W

STYLE = {"description_width": "110px"}
WIDE = "360px"


def control_for(f, value=None) -> W.Widget:
    """A widget for one configuration field, from its metadata: a slider for a number with a range, a checkbox for
    a bool, a dropdown for choices. Sliders only update when released (``continuous_update=False``)."""
    m = f.metadata or {}
    v = f.default if value is None else value
    desc = f.name
    layout = W.Layout(width=WIDE)
    tip = m.get("help", "")
    if m.get("paper") is not None:  # a CPU-scaled default: the paper's value is one hover away
        tip = f"{tip} (paper: {m['paper']})"
        desc = f"{f.name} *"
    if m.get("choices"):
        return W.Dropdown(options=list(m["choices"]), value=v, description=desc, style=STYLE, layout=layout,
                          tooltip=tip)
    if isinstance(f.default, bool):
        return W.Checkbox(value=v, description=desc, indent=False, tooltip=tip)
    lo, hi, st = m.get("low"), m.get("high"), m.get("step")
    if isinstance(f.default, int):
        hi = hi if hi is not None else max(10, 4 * int(f.default))
        return W.IntSlider(value=v, min=lo if lo is not None else 0, max=hi, step=st or 1, description=desc,
                           continuous_update=False, style=STYLE, layout=layout, tooltip=tip)
    if isinstance(f.default, float):
        lo = lo if lo is not None else 0.0
        hi = m.get("slider_high") or (hi if hi is not None else max(1.0, 4 * float(f.default)))
        return W.FloatSlider(value=v, min=lo, max=hi, step=st or (hi - lo) / 100, description=desc,
                             continuous_update=False, style=STYLE, layout=layout, readout_format=".3g", tooltip=tip)
    return W.Text(value=str(v), description=desc, style=STYLE, layout=layout)


class Panel:
    """The base of the panels: ``widget`` is what Jupyter shows (displaying the panel shows it), ``status`` an
    HTML line and ``errors`` an output area that a subclass creates. :meth:`_guard` runs a callback and shows its
    exception in the panel; :meth:`_launch` runs a job in a background thread (one at a time); :meth:`wait` joins
    it (tests)."""

    widget: W.Widget
    status: W.HTML
    errors: W.Output
    _thread: threading.Thread | None = None

    def _guard(self, fn, *args):
        """Run a widget callback; show any exception in the panel instead of losing it."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - shown to the user, not swallowed
            self.status.value = f"<span style='color:#b00'>Error: {html.escape(str(e))}</span>"
            with self.errors:
                traceback.print_exc()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @property
    def busy(self) -> bool:
        """A background job is running."""
        return self._thread is not None and self._thread.is_alive()

    def _launch(self, job) -> threading.Thread:
        """Run ``job()`` (guarded) in a background thread and return the thread."""
        self._thread = threading.Thread(target=self._guard, args=(job,), daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
