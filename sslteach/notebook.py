"""What every notebook's setup cell and last cell use: one call for seed, device and plot style; one call to write
the notebook's key results to JSON (the tests read that file)."""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import torch

from .utils import describe_device, get_device, seed_everything
from .viz import use_projector_style


def setup(seed: int = 0, device: str = "auto", quick: bool = False) -> torch.device:
    """Seed everything, pick the device (CUDA, then MPS, then CPU for ``"auto"``), set readable plot defaults,
    and print one line saying what was chosen."""
    seed_everything(seed)
    dev = get_device(device)
    use_projector_style()
    mode = "quick mode (tiny runs for tests)" if quick else "full settings"
    print(f"sslteach | device: {describe_device(dev)} | seed {seed} | {mode} | torch {torch.__version__}, "
          f"python {platform.python_version()}")
    return dev


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, torch.Tensor):
        return _clean(o.tolist())
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "item") and callable(o.item):
        try:
            return o.item()
        except (ValueError, RuntimeError):
            return str(o)
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    return str(o)


def peak_memory_mb() -> float:
    """Peak resident memory of this process (the kernel) so far, in MiB (Linux and macOS)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    except ImportError:  # Windows
        return float("nan")


def _non_finite(o, prefix=""):
    """Paths of the NaN / inf numbers inside ``o``."""
    if isinstance(o, dict):
        for k, v in o.items():
            yield from _non_finite(v, f"{prefix}{k}.")
    elif isinstance(o, (list, tuple)):
        for i, v in enumerate(o):
            yield from _non_finite(v, f"{prefix}{i}.")
    elif isinstance(o, torch.Tensor):
        yield from _non_finite(o.tolist(), prefix)
    elif isinstance(o, float) and not math.isfinite(o):
        yield prefix.rstrip(".")
    elif hasattr(o, "item") and callable(o.item) and not isinstance(o, (str, bytes)):
        try:
            v = o.item()
        except (ValueError, RuntimeError):
            return
        if isinstance(v, float) and not math.isfinite(v):
            yield prefix.rstrip(".")


def write_results(path: str | Path | None, allow_nan=(), **values) -> dict:
    """Write ``values`` (numbers, lists, dicts) as JSON to ``path`` (skipped when ``path`` is empty); the kernel's
    peak memory is added as ``peak_memory_mb``.

    A NaN or infinite number is an error (a diverged loss must not pass as "no value"), except under the top-level
    keys listed in ``allow_nan`` (e.g. a pseudo-label accuracy that is undefined when no image passed the
    threshold), where it is written as ``null``."""
    bad = [p for p in _non_finite(values) if p.split(".")[0] not in set(allow_nan)]
    if bad:
        raise ValueError(f"write_results: non-finite values at {', '.join(bad[:8])}; fix the run, or list the key "
                         f"in allow_nan=(...) if an undefined value is expected there")
    values.setdefault("peak_memory_mb", peak_memory_mb())
    data = _clean(values)
    if path:
        Path(path).write_text(json.dumps(data, indent=1))
        print(f"results written to {path}")
    return data
