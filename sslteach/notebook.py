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


def write_results(path: str | Path | None, **values) -> dict:
    """Write ``values`` (numbers, lists, dicts) as JSON to ``path`` (skipped when ``path`` is empty); the kernel's
    peak memory is added as ``peak_memory_mb``."""
    values.setdefault("peak_memory_mb", peak_memory_mb())
    data = _clean(values)
    if path:
        Path(path).write_text(json.dumps(data, indent=1))
        print(f"results written to {path}")
    return data
