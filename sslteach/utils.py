"""Seeding, device choice, argument checks and ``show_code`` — the small helpers every notebook uses."""
from __future__ import annotations

import inspect
import os
import random
from typing import Iterable

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda", "mps")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so a run repeats exactly on the CPU.

    Returns a ``torch.Generator`` seeded with the same value, for code that wants its own stream.
    """
    check_int("seed", seed, low=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True  # spelled right, and tested
    torch.backends.cudnn.benchmark = False
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``"auto"`` to CUDA, then Apple MPS, then CPU; check that an explicit choice exists.

    >>> get_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        device = device.type
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible to PyTorch; use device='auto' or 'cpu'")
    if device == "mps" and not _mps_available():
        raise ValueError("device='mps' but Apple MPS is not available; use device='auto' or 'cpu'")
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    """A one-line human description, e.g. ``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


# ----------------------------------------------------------------------------- argument checks
def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """Raise a one-line ``ValueError`` naming ``name`` and its valid range unless ``value`` is an int in range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in {_range(low, high)}; got {value}")
    return int(value)


def check_float(name: str, value, low: float | None = None, high: float | None = None) -> float:
    """Raise a one-line ``ValueError`` naming ``name`` and its valid range unless ``value`` is a number in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not np.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in {_range(low, high, closed=True)}; got {value}")
    return value


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(map(str, choices))}")
    return value


def _range(low, high, closed: bool = True) -> str:
    lo = "-inf" if low is None else f"{low}"
    hi = "inf" if high is None else f"{high}"
    return f"[{lo}, {hi}]"


# ----------------------------------------------------------------------------- notebooks
def show_code(obj) -> None:
    """Display the source of a function or class, syntax-highlighted in Jupyter, plain text elsewhere."""
    src = inspect.getsource(obj)
    try:
        from IPython import get_ipython
        from IPython.display import Code, display

        if get_ipython() is not None:
            display(Code(src, language="python"))
            return
    except ImportError:  # pragma: no cover - IPython is a dependency
        pass
    print(src)


def cpu_threads_hint() -> int:
    """Number of CPU threads PyTorch uses (respecting ``OMP_NUM_THREADS``)."""
    return int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
