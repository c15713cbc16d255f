"""Named phases of a training run, for profiles that need no monkeypatching.

The loop and the methods mark their pieces with :func:`phase`::

    with phase("strong views"):
        x_s = augment(x)

Each phase is a ``torch.profiler.record_function`` range (``sslteach.<name>``), so a ``torch.profiler`` trace
shows the loop's anatomy. While a :class:`PhaseTimer` is active in the current thread (the :class:`~sslteach.train.
Trainer` activates its own for the length of :meth:`~sslteach.train.Trainer.fit`), every phase also adds its
*exclusive* wall time — its own time minus the time of the phases nested in it — to ``timer.seconds[name]``, so the
phases of a run add up to the run without double counting. Outside a timer a phase costs a ``record_function``
(microseconds) and nothing else.
"""
from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

from torch.profiler import record_function

_LOCAL = threading.local()


class PhaseTimer:
    """Exclusive wall seconds per phase name (``seconds``), and how often each phase ran (``calls``)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[float]] = []  # per open phase: [start, seconds of the phases nested in it]
        self._names: list[str] = []

    @contextlib.contextmanager
    def active(self):
        """Make this timer the current thread's for the block (nesting restores the previous one)."""
        previous = getattr(_LOCAL, "timer", None)
        _LOCAL.timer = self
        try:
            yield self
        finally:
            _LOCAL.timer = previous

    def names(self) -> list[str]:
        """The phases currently open, outermost first."""
        return list(self._names)

    def total(self, prefix: str = "") -> float:
        """Seconds of every phase whose name starts with ``prefix``."""
        return sum(v for k, v in self.seconds.items() if k.startswith(prefix))


def current_timer() -> PhaseTimer | None:
    return getattr(_LOCAL, "timer", None)


def open_phases() -> list[str]:
    """The phases open in this thread, outermost first (empty outside a timer)."""
    timer = current_timer()
    return timer.names() if timer is not None else []


@contextlib.contextmanager
def phase(name: str):
    """Mark a piece of a run as the phase ``name`` (see the module docstring)."""
    timer = current_timer()
    with record_function(f"sslteach.{name}"):
        if timer is None:
            yield
            return
        frame = [time.perf_counter(), 0.0]
        timer._stack.append(frame)
        timer._names.append(name)
        try:
            yield
        finally:
            elapsed = time.perf_counter() - frame[0]
            timer._stack.pop()
            timer._names.pop()
            timer.seconds[name] += elapsed - frame[1]
            timer.calls[name] += 1
            if timer._stack:
                timer._stack[-1][1] += elapsed
