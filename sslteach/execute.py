"""Running notebooks with this project's own Python: the kernel the book build, the test suite and ``prepare`` use,
and the executor they all run notebooks with (:func:`execute_notebook`: it notices a lost reply, see below).

A ``python3`` kernelspec in the user's folders (``~/.local/share/jupyter/kernels/python3``, say, left by another
installation) would otherwise win over the environment's own, and the notebooks would run against a different
``sslteach`` or none. :func:`private_kernelspec` writes a ``python3`` kernelspec for ``sys.executable`` into a private
folder and puts that folder first (``JUPYTER_PATH``), with a private data folder (``JUPYTER_DATA_DIR``) so the
user's kernels are not searched at all.
"""
from __future__ import annotations

import asyncio
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


# ------------------------------------------------------------------------------------------- the watchdog executor
# Every notebook this project executes outside a browser (``make book``, ``make slides``, ``python -m sslteach
# prepare``, the test suite's papermill fallback) goes through :func:`execute_notebook`. It is nbclient's executor
# with one change: while it waits for a cell's ``execute_reply`` it watches the kernel. A kernel that has told us it
# is idle (its ``status: idle`` for the cell's request on IOPub), or that has answered a ``kernel_info_request`` sent
# *after* the cell's request (the kernel handles shell requests one at a time, so it is done with ours), while the
# reply is still outstanding has lost the reply: waiting longer cannot help. nbclient would wait for the cell's time
# limit (or forever: jupyter/nbclient#312); this executor says so in one line within ``idle_timeout`` seconds,
# restarts the kernel and runs the notebook again (the runs that finished come back from the run cache).
import time as _time
from queue import Empty as _Empty

try:  # the executor needs nbclient (a dependency of papermill and nbconvert); the kernelspec helpers above do not
    from nbclient import NotebookClient as _NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from nbclient.util import ensure_async as _ensure_async
    from traitlets import Any as _AnyTrait, Bool as _Bool, Float as _Float, Unicode as _Unicode
except ImportError:  # pragma: no cover
    _NotebookClient = object  # type: ignore[assignment,misc]

#: Seconds a kernel may look idle with a reply outstanding before the executor gives up on that reply.
IDLE_TIMEOUT = 60.0
#: Seconds between "still running" lines while one cell runs (with ``progress``).
HEARTBEAT = 60.0


class LostReply(RuntimeError):
    """The kernel is idle but the reply of the cell it was sent never came."""

    def __init__(self, cell_index: int, waited: float, how: str, source: str = ""):
        self.cell_index, self.waited, self.how = cell_index, waited, how
        super().__init__(f"the kernel is idle ({how}) but the execute reply of cell {cell_index} "
                         f"({_first_line(source, 40)!r}) has not arrived after {waited:.0f} s: the reply is lost")


def _first_line(source: str, width: int = 60) -> str:
    line = next((s.strip() for s in source.splitlines() if s.strip() and not s.strip().startswith("#")), "")
    return line if len(line) <= width else line[: width - 3] + "..."


class WatchdogClient(_NotebookClient):
    """nbclient's ``NotebookClient`` that notices a lost execute reply (see the comment above) and, with
    ``progress``, prints one line per code cell and a "still running" line every :data:`HEARTBEAT` seconds."""

    _current_index = -1

    idle_timeout = _Float(IDLE_TIMEOUT, help="seconds an idle kernel may keep a reply outstanding").tag(config=True)
    progress = _Bool(False, help="print one line per code cell").tag(config=True)
    label = _Unicode("", help="the notebook's name in progress lines").tag(config=True)
    log_line = _AnyTrait(None, allow_none=True, help="callable that prints one line (default: print)")

    async def _async_cleanup_kernel(self) -> None:
        if self.km is None:  # nbclient asserts a kernel manager here, which hides a DeadKernelError: keep the latter
            return
        await super()._async_cleanup_kernel()

    def _say(self, text: str) -> None:
        (self.log_line or (lambda s: print(s, flush=True)))(text)

    def _cell_count(self) -> tuple[int, int]:
        code = [i for i, c in enumerate(self.nb.cells) if c.cell_type == "code" and c.source.strip()]
        return len(code), code.index(self._current_index) + 1 if self._current_index in code else 0

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._current_index = cell_index
        t0 = _time.monotonic()
        out = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if self.progress and cell.cell_type == "code" and cell.source.strip():
            n, k = self._cell_count()
            self._say(f"  {self.label} [{k}/{n}] {_time.monotonic() - t0:5.1f} s  {_first_line(cell.source)}")
        return out

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        assert self.kc is not None
        start = _time.monotonic()
        deadline = start + timeout if timeout is not None else None
        probe_every = max(0.2, self.idle_timeout / 4)   # how often we ask the kernel whether it is done with us
        grace = self.idle_timeout / 2                   # how long it may look idle before the reply counts as lost
        next_probe, probe_id, idle_since, how = start + probe_every, None, None, ""
        next_heartbeat = start + HEARTBEAT
        while True:
            now = _time.monotonic()
            if deadline is not None and now >= deadline:
                task_poll_kernel_alive.cancel()
                await self._async_check_alive()
                reply = await self._async_handle_timeout(timeout, cell)  # raises CellTimeoutError by default
                if reply is not None:
                    reply["parent_header"] = {"msg_id": msg_id}
                    return reply
                deadline = None
            try:
                msg = await _ensure_async(self.kc.shell_channel.get_msg(timeout=min(1.0, probe_every)))
            except _Empty:
                msg = None
            if msg is not None:
                parent = msg["parent_header"].get("msg_id")
                if parent == msg_id:
                    if self.record_timing:
                        from nbclient.client import timestamp

                        cell["metadata"]["execution"]["shell.execute_reply"] = timestamp(msg)
                    try:
                        await asyncio.wait_for(task_poll_output_msg, self.iopub_timeout)
                    except (asyncio.TimeoutError, _Empty):
                        if self.raise_on_iopub_timeout:
                            task_poll_kernel_alive.cancel()
                            raise CellTimeoutError.error_from_timeout_and_cell(
                                "Timeout waiting for IOPub output", self.iopub_timeout, cell) from None
                        self.log.warning("Timeout waiting for IOPub output")
                    task_poll_kernel_alive.cancel()
                    return msg
                if parent is not None and parent == probe_id:  # answered a request sent after ours
                    probe_id = None
                    if idle_since is None:
                        idle_since, how = _time.monotonic(), "it answered a later kernel_info_request"
                continue
            now = _time.monotonic()
            if idle_since is None and task_poll_output_msg.done():  # IOPub: status idle for our request
                idle_since, how = now, "it reported status idle for the cell"
            if idle_since is not None and now - idle_since >= grace:
                task_poll_kernel_alive.cancel()
                task_poll_output_msg.cancel()
                raise LostReply(self._current_index, now - start, how, cell.source)
            if probe_id is None and now >= next_probe:  # one probe at a time: an unanswered one means "busy"
                probe_id = self.kc.kernel_info()
                next_probe = now + probe_every
            if self.progress and now >= next_heartbeat:
                n, k = self._cell_count()
                self._say(f"  {self.label} [{k}/{n}] still running ({now - start:.0f} s): {_first_line(cell.source)}")
                next_heartbeat = now + HEARTBEAT


def read_notebook(path, parameters: dict | None = None, kernel_name: str = "python3"):
    """The notebook at ``path`` with its outputs cleared and, where ``parameters`` is given, papermill's
    ``injected-parameters`` cell after the cell tagged ``parameters`` (exactly as ``papermill -p`` would)."""
    import nbformat

    if parameters is None:
        nb = nbformat.read(str(path), as_version=4)
    else:
        from papermill.iorw import load_notebook_node  # papermill's reading: tags and metadata as it expects them
        from papermill.parameterize import parameterize_notebook

        nb = load_notebook_node(str(path))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    if parameters is not None:

        nb = parameterize_notebook(nb, parameters, kernel_name=kernel_name, language="python")
    return nb


def execute_notebook(src, dst=None, parameters: dict | None = None, *, cwd=None, kernel_name: str = "python3",
                     timeout: float | None = None, idle_timeout: float = IDLE_TIMEOUT, attempts: int = 3,
                     progress: bool = False, label: str | None = None, log=None,
                     client_class=WatchdogClient) -> dict:
    """Execute the notebook ``src`` (a path or a ``NotebookNode``) with ``parameters`` injected, and write it to
    ``dst``. A lost reply (:class:`LostReply`) or a kernel that died restarts the kernel and runs the notebook again,
    up to ``attempts`` runs in all (a cell over ``timeout`` seconds: once); an error output in a cell raises nbclient's
    ``CellExecutionError`` (the notebook is written first, with the error). Returns ``{"seconds", "attempts",
    "cell_seconds": {cell index: seconds}, "retries": [one line per retry], "notebook": the executed notebook}``."""
    import copy

    import nbformat
    from nbclient.exceptions import CellExecutionError

    say = log or (lambda s: print(s, flush=True))
    base = src if isinstance(src, nbformat.NotebookNode) else read_notebook(src, parameters, kernel_name)
    if isinstance(src, nbformat.NotebookNode) and parameters is not None:
        raise ValueError("parameters: pass a path (a NotebookNode is executed as it is)")
    name = label or (Path(src).stem if not isinstance(src, nbformat.NotebookNode) else "notebook")
    t0 = _time.perf_counter()
    retries: list[str] = []
    for attempt in range(1, attempts + 1):
        nb = copy.deepcopy(base)
        client = client_class(nb, timeout=timeout, kernel_name=kernel_name, idle_timeout=idle_timeout,
                              progress=progress, label=name, log_line=say,
                              resources={"metadata": {"path": str(cwd or Path.cwd())}})
        cell_seconds: dict[int, float] = {}
        starts: dict[int, float] = {}
        client.on_cell_execute = lambda cell, cell_index: starts.__setitem__(cell_index, _time.perf_counter())
        client.on_cell_executed = lambda cell, cell_index, execute_reply: cell_seconds.__setitem__(
            cell_index, _time.perf_counter() - starts.get(cell_index, _time.perf_counter()))
        try:
            client.execute()
        except (LostReply, CellTimeoutError, DeadKernelError) as e:
            lost = not isinstance(e, CellTimeoutError)  # a lost reply or a dead kernel: cheap to retry
            what = ("lost reply" if isinstance(e, LostReply) else "the kernel died" if isinstance(e, DeadKernelError)
                    else "cell over its time limit")
            again = attempt < attempts and (lost or not any("time limit" in r for r in retries))  # one slow retry
            line = (f"{name}: {what}: {str(e).splitlines()[0][:200]}; "
                    + (f"restarting the kernel and running the notebook again (attempt {attempt + 1} of {attempts}; "
                       "finished runs come back from the run cache)" if again else "giving up"))
            say(line)
            retries.append(line)
            if not again:
                if dst is not None:
                    nbformat.write(nb, str(dst))
                raise
            continue
        except CellExecutionError:
            if dst is not None:
                nbformat.write(nb, str(dst))
            raise
        if dst is not None:
            nbformat.write(nb, str(dst))
        return {"seconds": _time.perf_counter() - t0, "attempts": attempt, "cell_seconds": cell_seconds,
                "retries": retries, "notebook": nb}
    raise AssertionError("unreachable")  # pragma: no cover
