"""Running cells: one ``compare`` of one model per cell, in this process, in local worker
processes, or as Ray tasks (embedded or on a cluster)."""

from __future__ import annotations

import datetime
import multiprocessing
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation import Stream, compare
from .spec import Cell, Protocol

__all__ = ["CellResult", "LocalExecutor", "RayExecutor", "connect_ray", "ray_installed",
           "run_cell"]

#: how many times Ray reruns a cell whose worker process died (killed, out of memory)
RAY_RETRIES = 2


@dataclass
class CellResult:
    """What a cell sends back: its summary row (ok or failed), and for an ok cell its curves
    and per-event hits at the headline K (what the paired tests need)."""

    row: dict[str, Any]
    curves: pd.DataFrame | None = None
    hits: np.ndarray | None = None
    traceback: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.row.get("status") == "ok"


Factory = tuple[Callable[..., Any], dict[str, Any]]


def _cell_columns(cell: Cell) -> dict[str, Any]:
    return {"cell": cell.key, "dataset": cell.dataset, "step": str(cell.step),
            "model": cell.model, "params": cell.params_text,
            "seed": "" if cell.seed is None else cell.seed}


def failed_result(cell: Cell, error: str, tb: str | None = None) -> CellResult:
    """The row of a cell that produced no result (its worker died, or it was never run)."""
    row = {**_cell_columns(cell), "status": "failed", "error": _one_line(error)}
    return CellResult(row, traceback=tb or error)


def _one_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def run_cell(cell: Cell, stream: Stream, protocol: Protocol, factory: Factory) -> CellResult:
    """Build the cell's model and replay ``stream`` through it with ``compare`` (``n_jobs=1``);
    any error is the cell's failure row, never an exception."""
    t0 = time.perf_counter()
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    columns = _cell_columns(cell)
    where = {"host": socket.gethostname(), "pid": os.getpid(), "started": started}
    try:
        build, defaults = factory
        model = build(**{**defaults, **cell.model_params()})
        res = compare({cell.model: model}, stream, ks=protocol.ks, target=protocol.target,
                      exclude_seen=protocol.exclude_seen, clip=protocol.clip, n_jobs=1,
                      time_budget_s=protocol.budget, eval_fraction=protocol.eval_fraction,
                      eval_seed=protocol.eval_seed, threads=protocol.threads)
    except Exception:
        tb = traceback.format_exc()
        row = {**columns, "status": "failed", "error": _one_line(tb), **where,
               "cell_s": time.perf_counter() - t0}
        return CellResult(row, traceback=tb)
    summary = res.summary.iloc[0].to_dict()
    summary.pop("model", None)
    row = {**columns, **summary, **where}
    if cell.model in res.failures:
        row["error"] = _one_line(res.failures[cell.model])
        row["cell_s"] = time.perf_counter() - t0
        return CellResult(row, traceback=res.failures[cell.model])
    curves = res.curves(window=protocol.window, n_points=100)
    hits = res.hits()[cell.model] if res.config.ranking else None
    row["cell_s"] = time.perf_counter() - t0
    return CellResult(row, curves=curves, hits=hits)


def ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


Done = Callable[[Cell, CellResult], None]


# -- local ---------------------------------------------------------------------------------


# libraries whose thread pools (OpenMP, torch's) do not survive a plain fork
_FORK_UNSAFE = ("torch", "implicit", "lightfm", "sklearn")


def _start_method() -> str:
    if not sys.platform.startswith("linux"):
        return "spawn"
    return "forkserver" if any(m in sys.modules for m in _FORK_UNSAFE) else "fork"


def _serve(conn: Any) -> None:
    """A local worker: keep the streams it is sent, run the cells it is given, one at a time,
    until told to stop or its parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    streams: dict[Any, Stream] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stream":
            streams[message[1]] = message[2]
        elif message[0] == "cell":
            _, cell, key, protocol, factory = message
            try:
                result = run_cell(cell, streams[key], protocol, factory)
            except BaseException as exc:  # run_cell catches what a cell raises; this is the rest
                result = failed_result(cell, f"{type(exc).__name__}: {exc}",
                                       traceback.format_exc())
            try:
                conn.send(result)
            except (BrokenPipeError, OSError):
                return
        else:
            return


class _Worker:
    """One local worker process, the streams it holds, and the cell it is running."""

    def __init__(self, ctx: Any) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), name="recinc-grid-worker",
                                daemon=True)
        self.proc.start()
        child.close()
        self.streams: set[Any] = set()
        self.cell: Cell | None = None
        self.started = 0.0

    def give(self, cell: Cell, key: Any, stream: Stream, protocol: Protocol,
             factory: Factory) -> None:
        if key not in self.streams:  # each stream goes to a worker once
            self.conn.send(("stream", key, stream))
            self.streams.add(key)
        self.conn.send(("cell", cell, key, protocol, factory))
        self.cell, self.started = cell, time.monotonic()

    def close(self, kill: bool = False) -> None:
        if not kill and self.proc.is_alive():
            try:
                self.conn.send(("stop",))
            except OSError:
                kill = True
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


class LocalExecutor:
    """Cells on this machine: in this process (``jobs=1``), or in ``jobs`` local worker
    processes that each run one cell at a time and keep the streams they were sent. A worker
    that dies is its cell's failure row (and is replaced); a cell over its budget is stopped
    between steps, and its worker killed at 1.2 x the budget + 2 s."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = max(1, jobs or os.cpu_count() or 1)

    def start(self) -> None:
        """Nothing to start: workers start with the cells."""

    def close(self) -> None:
        """Nothing to stop: no worker outlives ``run``."""

    def describe(self) -> str:
        if self.jobs == 1:
            return "in this process"
        return f"in local worker processes, {self.jobs} at a time"

    def run(self, tasks: Sequence[tuple[Cell, Any, Factory]], streams: dict[Any, Stream],
            protocol: Protocol, done: Done) -> None:
        if self.jobs == 1:
            for cell, key, factory in tasks:
                done(cell, run_cell(cell, streams[key], protocol, factory))
            return
        ctx = multiprocessing.get_context(_start_method())
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(["numpy", "pandas", "recinc_plugins.grid.runner"])
        queue = list(tasks)
        hard = None if protocol.budget is None else 1.2 * protocol.budget + 2.0
        workers: list[_Worker] = []
        try:
            while queue or any(w.cell is not None for w in workers):
                while len(workers) < min(self.jobs, len(tasks)):
                    workers.append(_Worker(ctx))
                for worker in [w for w in workers if w.cell is None]:
                    if not queue:
                        break
                    cell, key, factory = queue.pop(0)
                    try:
                        worker.give(cell, key, streams[key], protocol, factory)
                    except OSError:  # the worker died while idle: the cell waits for another
                        queue.insert(0, (cell, key, factory))
                        worker.cell = None
                        worker.close(kill=True)
                        workers.remove(worker)
                self._collect(workers, hard, done)
        finally:
            for worker in workers:
                worker.close(kill=worker.cell is not None)

    @staticmethod
    def _collect(workers: list[_Worker], hard: float | None, done: Done) -> None:
        busy = {w.conn: w for w in workers if w.cell is not None}
        if not busy:
            return
        timeout = None
        if hard is not None:
            timeout = max(0.0, min(w.started + hard for w in busy.values()) - time.monotonic())
        for conn in wait(list(busy), timeout=timeout) or []:
            worker = busy[conn]
            cell, worker.cell = worker.cell, None
            try:
                result = conn.recv()
            except (EOFError, OSError):
                worker.close(kill=True)
                workers.remove(worker)
                result = failed_result(cell, f"the worker process of cell {cell.key} died "
                                             f"without a result (exit code "
                                             f"{worker.proc.exitcode})")
            done(cell, result)
        if hard is not None:
            for worker in [w for w in workers if w.cell is not None]:
                if time.monotonic() - worker.started >= hard:
                    cell, worker.cell = worker.cell, None
                    worker.close(kill=True)
                    workers.remove(worker)
                    done(cell, failed_result(cell, f"TimeoutError: cell {cell.key} went over "
                                                   f"its budget of {hard:g} s (worker killed)"))


# -- Ray -----------------------------------------------------------------------------------


def _ray_cell(cell: Cell, stream: Stream, protocol: Protocol, factory: Factory) -> CellResult:
    import ray

    result = run_cell(cell, stream, protocol, factory)
    result.row["node"] = ray.get_runtime_context().get_node_id()[:12]
    return result


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> tuple[bool, str]:
    """Join the Ray cluster at ``address``, or start an embedded local Ray with ``num_cpus``
    cores (all by default), unless this process is already connected. Returns whether this
    call started it (and so must stop it) and where the work will run, in words."""
    import ray

    if ray.is_initialized():
        where = "on the Ray instance this process had already started or joined"
        started = False
    else:
        kwargs: dict[str, Any] = {"logging_level": "warning", "log_to_driver": False}
        if address:
            hint = ("is `ray start --head` running there, and, for a cluster with token "
                    "authentication, is RAY_AUTH_MODE=token set here (see docs/grid.md)?")
            host, _, port = address.rpartition(":")
            if host and port.isdigit():  # fail in seconds, not after Ray's long retries
                try:
                    socket.create_connection((host, int(port)), timeout=10).close()
                except OSError as exc:
                    raise ConnectionError(f"could not reach the Ray cluster at {address} "
                                          f"({exc}): {hint}") from None
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise ConnectionError(f"could not join the Ray cluster at {address} ({exc}): "
                                      f"{hint}") from exc
            where = f"on the Ray cluster at {address}"
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
            where = "on an embedded local Ray"
        started = True
    cpus = int(ray.cluster_resources().get("CPU", 0))
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    return started, f"{where} ({nodes} node{'s' if nodes != 1 else ''}, {cpus} CPUs)"


class RayExecutor:
    """Cells as Ray tasks: an embedded local Ray by default (``num_cpus`` cores), a running
    cluster with ``address`` (or ``RAY_ADDRESS``). Each stream goes into the object store
    once; a cell whose worker dies is rerun (``RAY_RETRIES`` times), then is a failure row."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self._where = ""
        self._started: bool | None = None  # None: not connected yet

    def describe(self) -> str:
        return self._where

    def start(self) -> None:
        """Join or start Ray now (``run`` does it otherwise): a wrong address fails before
        any dataset is loaded."""
        if self._started is None:
            self._started, self._where = connect_ray(self.address, self.num_cpus)

    def close(self) -> None:
        """Stop the Ray this executor started (one it joined runs on)."""
        if self._started:
            import ray

            ray.shutdown()
        self._started = None

    def run(self, tasks: Sequence[tuple[Cell, Any, Factory]], streams: dict[Any, Stream],
            protocol: Protocol, done: Done) -> None:
        import ray
        from ray.exceptions import RayError

        self.start()
        remote = ray.remote(_ray_cell)
        refs: dict[Any, Cell] = {}
        try:
            shared = {key: ray.put(streams[key]) for key in {key for _, key, _ in tasks}}
            for cell, key, factory in tasks:
                ref = remote.options(
                    name=f"recinc-grid-cell-{cell.key}", num_cpus=protocol.threads,
                    max_retries=RAY_RETRIES, retry_exceptions=False,
                ).remote(cell, shared[key], protocol, factory)
                refs[ref] = cell
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    cell = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayError as exc:  # the worker died, retries and all
                        result = failed_result(cell, f"{type(exc).__name__}: {exc}")
                    done(cell, result)
        finally:
            for ref in refs:  # interrupted: leave nothing running on the cluster
                ray.cancel(ref, force=True)
            self.close()
