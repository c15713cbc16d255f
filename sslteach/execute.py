"""Running notebooks with this project's own Python: the kernel the book build, the test suite and ``prepare`` use.

A ``python3`` kernelspec in the user's folders (``~/.local/share/jupyter/kernels/python3``, say, left by another
installation) would otherwise win over the environment's own, and the notebooks would run against a different
``sslteach`` or none. :func:`private_kernelspec` writes a ``python3`` kernelspec for ``sys.executable`` into a private
folder and puts that folder first (``JUPYTER_PATH``), with a private data folder (``JUPYTER_DATA_DIR``) so the
user's kernels are not searched at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path


def write_kernelspec(data_dir: Path) -> Path:
    spec_dir = Path(data_dir) / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (sslteach)", "language": "python", "metadata": {"debugger": False}}
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


def env_for(data_dir: Path) -> dict:
    """Environment variables that make ``python3`` mean this interpreter."""
    write_kernelspec(data_dir)
    return {"JUPYTER_PATH": str(data_dir), "JUPYTER_DATA_DIR": str(data_dir)}


@contextlib.contextmanager
def private_kernelspec(data_dir: Path):
    """Within the block, ``kernel_name="python3"`` starts ``sys.executable``."""
    new = env_for(data_dir)
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield new
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
