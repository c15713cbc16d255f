"""A cache of finished training runs, so that re-running a notebook in class is instant the second time.

``train(...)`` looks a run up by a key made of everything that decides its result — the method and its
configuration, the loop configuration, the dataset and the split (its settings *and* a digest of its tensors), the
seed, the device kind, a digest of the package's own source code, and the torch version — and, on a hit, returns the
stored :class:`~sslteach.train.TrainResult` (accuracy, history, timings, and the trained weights) in well under a
second, with ``result.from_cache`` set. A miss trains and stores the run. Runs stopped early are never stored.

Files: ``<key>.json`` (the result, plain JSON) and ``<key>.pt`` (weights only: a flat dict of tensors, read with
``torch.load(weights_only=True)``, so a cache file can never run code). Both are written to a temporary file and
renamed into place, so a reader never sees half a file and two writers (two pytest workers, two notebooks) cannot
corrupt an entry; :meth:`RunCache.lock` lets them agree that only one of them trains. A corrupt, truncated or foreign
file is reported with a warning and ignored (the run is retrained), never trusted.

Location: ``$SSLTEACH_CACHE`` if set (``0``/``off`` turns the cache off), else ``~/.cache/sslteach/runs``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import torch

from . import augment
from .data import split_settings
from .evaluation import EMA
from .loop import Context, History, TrainResult, jsonable, build_model
from .utils import get_device

FORMAT = 1
_OFF = ("0", "off", "false", "no", "none")
_CODE_DIGEST: str | None = None


def default_dir() -> Path | None:
    """The cache folder, or ``None`` when ``SSLTEACH_CACHE`` turns the cache off."""
    env = os.environ.get("SSLTEACH_CACHE")
    if env is not None and env.strip().lower() in _OFF:
        return None
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sslteach" / "runs"


#: Files and folders (ending in ``/``) of the package that draw, explain or drive runs but do not change what a run
#: computes: editing them (a figure, a widget, the comparison notebook's tables) keeps the cache valid. It is a
#: deny-list: everything else in the package — a new file too — is hashed, so a file missing here can only cause a
#: needless retrain, never a wrong cache hit.
NOT_TRAINING_CODE = ("widgets/", "compare/", "viz.py", "diagrams.py", "notebook.py", "exercises.py", "cli.py",
                     "__main__.py", "presets.py", "execute.py", "lecture.py", "viz_adaptive.py", "claims/")


def _is_training_code(relative: str) -> bool:
    return not any(relative == d or (d.endswith("/") and relative.startswith(d)) for d in NOT_TRAINING_CODE)


def training_code_files(root: Path | None = None) -> list[Path]:
    """The package files whose source is part of every cache key (sorted)."""
    root = root or Path(__file__).resolve().parent
    return [p for p in sorted(root.rglob("*.py")) if _is_training_code(p.relative_to(root).as_posix())]


def code_digest() -> str:
    """A digest of the code that trains (:func:`training_code_files`): editing it invalidates the cache. Presets
    need no digest: the settings they resolve to are part of the key."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for p in training_code_files(root):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        _CODE_DIGEST = h.hexdigest()[:16]
    return _CODE_DIGEST


def tensor_digest(*tensors: torch.Tensor) -> str:
    """A digest of the tensors' shapes, dtypes and contents (the split's data)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def split_digest(split) -> str:
    tensors = [split.x_lb, split.y_lb, split.x_ulb, split.y_ulb, split.x_test, split.y_test]
    for k in ("x_test_open", "y_test_open"):
        if isinstance(split.info.get(k), torch.Tensor):
            tensors.append(split.info[k])
    return tensor_digest(*tensors)


def _canonical(o):
    if isinstance(o, dict):
        return {str(k): _canonical(v) for k, v in sorted(o.items(), key=lambda kv: str(kv[0]))}
    if isinstance(o, (list, tuple)):
        return [_canonical(v) for v in o]
    if isinstance(o, float):
        return repr(o)  # 0.1 and 0.10000000000000002 differ; NaN is a string, not invalid JSON
    if isinstance(o, (str, int, bool)) or o is None:
        return o
    return f"{type(o).__name__}:{o}"


def make_key(spec: dict) -> str:
    """The cache key of a run: a digest of its canonical JSON ``spec``."""
    text = json.dumps(_canonical(spec), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _finite_json(o):
    """NaN / inf are not JSON: stored as strings and turned back on load."""
    if isinstance(o, float) and not math.isfinite(o):
        return {"__float__": repr(o)}
    if isinstance(o, dict):
        return {k: _finite_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite_json(v) for v in o]
    return o


def _restore_floats(o):
    if isinstance(o, dict):
        if set(o) == {"__float__"}:
            return float(o["__float__"])
        return {k: _restore_floats(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_restore_floats(v) for v in o]
    return o


class CacheError(RuntimeError):
    """A cache entry that cannot be trusted (corrupt, truncated, written by something else)."""


class RunCache:
    """Finished runs on disk, by key. ``RunCache()`` uses :func:`default_dir`."""

    def __init__(self, root: str | Path | None = None):
        root = default_dir() if root is None else Path(root).expanduser()
        if root is None:
            raise ValueError("the run cache is turned off (SSLTEACH_CACHE=off); pass cache=False or a folder")
        self.root = Path(root)

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.json", self.root / f"{key}.pt"

    def __contains__(self, key: str) -> bool:
        return self.paths(key)[0].exists()

    @contextlib.contextmanager
    def lock(self, key: str):
        """An exclusive lock on one key (a file lock, so it holds across processes, on every operating system):
        whoever holds it trains, the others wait and then find the stored run."""
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            yield

    # ------------------------------------------------------------------------------------------ writing
    def store(self, key: str, record: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Write one entry atomically: the JSON ``record`` and a flat dict of tensors."""
        self.root.mkdir(parents=True, exist_ok=True)
        jpath, tpath = self.paths(key)
        doc = {"format": FORMAT, "key": key, "record": _finite_json(record),
               "tensors": sorted(tensors)}
        self._atomic(tpath, lambda f: torch.save({k: v.detach().cpu() for k, v in tensors.items()}, f))
        self._atomic(jpath, lambda f: f.write(json.dumps(doc).encode()))  # last: the JSON marks the entry complete

    def _atomic(self, path: Path, write) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------------------------------ reading
    def load(self, key: str) -> tuple[dict, dict[str, torch.Tensor]] | None:
        """``(record, tensors)`` of a stored run, or ``None`` when there is none. A damaged or foreign entry gives
        a warning and ``None`` (it will be retrained and overwritten), never an exception and never unpickling."""
        jpath, tpath = self.paths(key)
        if not jpath.exists():
            return None
        try:
            doc = json.loads(jpath.read_text())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("key") != key:
                raise CacheError("not an sslteach run of this key and format")
            tensors = torch.load(tpath, map_location="cpu", weights_only=True)
            if not isinstance(tensors, dict) or sorted(tensors) != doc.get("tensors") or \
                    not all(isinstance(v, torch.Tensor) for v in tensors.values()):
                raise CacheError("its weights file does not match its record")
            return _restore_floats(doc["record"]), tensors
        except Exception as e:  # noqa: BLE001 - anything wrong with the files means: do not trust them
            warnings.warn(f"sslteach run cache: ignoring the damaged entry {jpath.name} in {self.root} "
                          f"({type(e).__name__}: {str(e)[:150]}); the run will be trained again", stacklevel=3)
            return None

    def clear(self) -> int:
        """Delete every stored run; returns how many entries were removed."""
        n = 0
        if self.root.exists():
            for p in self.root.iterdir():
                if p.suffix in (".json", ".pt", ".lock", ".tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()
                        n += p.suffix == ".json"
        return n


# ================================================================================================ runs <-> entries
def store_for(cache) -> RunCache | None:
    """The run cache a ``cache=`` argument asks for: ``None``/``True`` the default folder (``None`` when
    ``SSLTEACH_CACHE`` turns it off; ``True`` then raises), ``False`` none, a path that folder."""
    if cache is False:
        return None
    if cache is None or cache is True:
        root = default_dir()
        if root is None:
            if cache is True:
                raise ValueError("cache=True but SSLTEACH_CACHE turns the run cache off; unset it or pass a folder")
            return None
        return RunCache(root)
    if isinstance(cache, RunCache):
        return cache
    return RunCache(cache)


def run_spec(method, config, split) -> dict:
    """Everything that decides a run's result: the JSON behind its key (see the module docstring)."""
    tc = asdict(config)
    for k in ("progress", "device", "checkpoint", "checkpoint_every", "resume"):  # where, not what, a run computes
        tc.pop(k)
    return {"format": FORMAT, "method": f"{type(method).__module__}.{type(method).__qualname__}",
            "method_name": method.name, "method_config": method.config_dict(), "train_config": tc,
            "device": get_device(config.device).type, "dataset": split.dataset.name,
            "split": dict(split_settings(split)), "split_data": split_digest(split),
            "code": code_digest(), "torch": torch.__version__, **_processes()}


def _processes() -> dict:
    """A multi-process run (torchrun) is another run than the one-process one: its number of processes."""
    from .distributed import ranks

    world = ranks().world_size
    return {"processes": world} if world > 1 else {}


def store_result(store: RunCache, key: str, result, split) -> None:
    """Store a finished :class:`~sslteach.loop.TrainResult`: its JSON, the model, the EMA model and the method's
    :attr:`~sslteach.methods.base.Method.state` (not the split's own tensors). A full disk or a read-only home
    gives a warning: the run that was just trained is still returned."""
    data = [split.x_lb, split.y_lb, split.x_ulb, split.y_ulb, split.x_test, split.y_test,
            *(v for v in split.info.values() if isinstance(v, torch.Tensor))]
    tensors = {f"model.{k}": v for k, v in result.model.state_dict().items()}
    if result.ema_model is not None:
        tensors.update({f"ema.{k}": v for k, v in result.ema_model.state_dict().items()})
    if result.method_obj is not None:
        tensors.update({f"method.{k}": v for k, v in result.method_obj.state_tensors(skip=data).items()})
    try:
        store.store(key, json.loads(json.dumps(result.to_dict(), default=jsonable)), tensors)
    except OSError as e:
        warnings.warn(f"sslteach run cache: could not store the run in {store.root} ({e})", stacklevel=3)


def load_result(store: RunCache, key: str, method, config, split, callbacks: dict | None = None):
    """The stored run of ``key`` rebuilt as a :class:`~sslteach.loop.TrainResult` (``from_cache`` set, the model,
    EMA model and method state restored), or ``None``: no entry, or one that does not fit this code (reported and
    retrained, never trusted). ``callbacks["on_eval"]`` gets the stored records, so a panel draws the curve."""
    t0 = time.perf_counter()
    loaded = store.load(key)
    if loaded is None:
        return None
    rec, tensors = loaded
    try:
        result = _rebuild(rec, tensors, method, config, split)
    except Exception as e:  # noqa: BLE001 - an entry that does not fit this code is retrained, not trusted
        warnings.warn(f"sslteach run cache: entry {key} could not be restored ({type(e).__name__}: "
                      f"{str(e)[:150]}); training instead", stacklevel=3)
        return None
    result.extra["cache_load_seconds"] = time.perf_counter() - t0
    on_eval = (callbacks or {}).get("on_eval")
    if on_eval is not None:  # a panel draws a cached run's curve as if it had just trained it
        for r in result.history.records:
            on_eval(None, r)
    on_end = (callbacks or {}).get("on_train_end")
    if on_end is not None and result.history.records:
        on_end(None, result.history.records[-1])
    return result


def _rebuild(rec: dict, tensors: dict, method, config, split):
    device = get_device(config.device)
    ds = split.dataset
    model = build_model(method, config, ds.input_shape, split.num_classes)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    model.to(device).train()
    ema_model = None
    ema_state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    if ema_state:
        ema = EMA(model, config.ema_decay or 0.99)
        ema.module.load_state_dict(ema_state)
        ema_model = ema.module
    ctx = Context(augment.for_dataset(ds, cutout=config.cutout), config.steps, config.steps, device,
                  split.num_classes, len(split.y_ulb))
    method.setup(model, split.to(device), ctx)
    method.load_state_tensors({k[7:]: v for k, v in tensors.items() if k.startswith("method.")})
    history = History()
    for r in rec["history"]:
        history.append(r)
    names = {f.name for f in fields(TrainResult)} - {"history", "model", "ema_model", "method_obj", "from_cache"}
    result = TrainResult(**{k: rec[k] for k in names if k in rec}, history=history, model=model,
                         ema_model=ema_model, method_obj=method, from_cache=True)
    result.device = device.type
    return result
