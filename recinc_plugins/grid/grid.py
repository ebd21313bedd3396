"""run_grid(): every cell of a spec, on Ray or in local processes, into one output folder."""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation import Stream
from ..evaluation.report import write_atomic
from ..registry import get_spec
from .results import CellsFile, read_cells, save_cell_files, write_report
from .runner import CellResult, LocalExecutor, RayExecutor, failed_result, ray_installed
from .spec import Cell, GridSpec, load_spec

__all__ = ["GridResult", "run_grid"]

RAY_MISSING = "Ray is not installed (pip install 'recinc-plugins[ray]' to run on Ray)"


@dataclass
class GridResult:
    """What :func:`run_grid` returns; the same tables are in the output folder.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per cell of the spec that has run (this call or an earlier one resumed).
    table : pandas.DataFrame
        Per (dataset, step, model, params): the mean and 95% interval over seeds of every
        metric and cost column.
    best : pandas.DataFrame
        The best setting of each model per (dataset, step).
    paired : pandas.DataFrame
        Paired tests between those best settings, seed by seed, on the same events.
    ran, skipped : list of str
        The keys of the cells this call ran, and of those it found already done.
    where : str
        Where the cells ran.
    """

    spec: GridSpec
    out: Path
    cells: pd.DataFrame
    table: pd.DataFrame
    best: pd.DataFrame
    paired: pd.DataFrame
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def failed(self) -> pd.DataFrame:
        return self.cells[self.cells["status"] != "ok"]

    def __repr__(self) -> str:
        return (f"GridResult({len(self.cells)} of {len(self.spec.cells())} cells, "
                f"{len(self.failed)} failed, ran {len(self.ran)} {self.where}; {self.out})")


def _executor(address: str | None, local: bool, jobs: int | None,
              say: Any) -> LocalExecutor | RayExecutor:
    import os

    address = address or os.environ.get("RAY_ADDRESS") or None
    if local:
        if address:
            raise ValueError("local=True (--local) and a Ray address cannot be used together")
        return LocalExecutor(jobs)
    if ray_installed():
        return RayExecutor(address, jobs)
    if address:
        raise ImportError(f"a Ray address was given ({address}) but {RAY_MISSING}")
    say(f"{RAY_MISSING}: running the cells in local worker processes")
    return LocalExecutor(jobs)


def run_grid(spec: GridSpec | str | Path, out: str | Path | None = None, *,
             address: str | None = None, local: bool = False, jobs: int | None = None,
             resume: bool = False, retry_failed: bool = False, overwrite: bool = False,
             progress: bool = True, plots: bool = True) -> GridResult:
    """Run every cell of a grid spec and report over seeds.

    Each cell is one ``compare`` of one model setting on one (dataset, step, seed). Cells run
    as Ray tasks: on an embedded local Ray (``jobs`` cores; all by default) or on the cluster
    at ``address`` (or ``RAY_ADDRESS``); with ``local=True``, or where Ray is not installed,
    in local worker processes (``jobs`` at a time; 1: in this process). Each stream is loaded
    once (and put in Ray's object store once).

    As each cell ends its row is appended to ``out/cells.csv`` (its curves to
    ``out/curves/KEY.csv``, its per-event hits to ``out/hits/KEY.npy``, a traceback to
    ``out/errors/KEY.txt``); a cell that raises, goes over ``protocol.budget`` or whose
    worker dies is a row with ``status="failed"`` and its ``error``, and the others go on.
    At the end, ``table.csv``, ``best.csv``, ``paired.csv``, ``report.md`` and
    ``recall_vs_cost.png`` are written.

    Parameters
    ----------
    spec
        A :class:`GridSpec` or the path of a TOML spec (see ``docs/grid.md``).
    out
        The output folder (default: the spec's ``out``).
    resume
        Run only the cells that have no row in ``out/cells.csv`` yet (``retry_failed``:
        also those whose row says failed).
    overwrite
        Start over when ``out/cells.csv`` exists (without ``resume`` or ``overwrite`` an
        existing one is an error: it may hold hours of work).
    """
    if not isinstance(spec, GridSpec):
        spec = load_spec(spec)
    folder = out if out is not None else spec.out
    if folder is None:
        raise ValueError("no output folder: pass out= (--out), or set out = '...' in the spec")
    folder = Path(folder)
    say = (lambda text: print(text, file=sys.stderr)) if progress else (lambda text: None)
    cells = spec.cells()
    path = folder / "cells.csv"
    if path.exists() and len(read_cells(folder)) and not resume and not overwrite:
        raise ValueError(f"{path} exists (an earlier run): pass resume=True (--resume) to run "
                         "only the cells it lacks, or overwrite=True (--overwrite) to start "
                         "over")
    folder.mkdir(parents=True, exist_ok=True)
    if overwrite and not resume:
        for sub in ("curves", "hits", "errors"):
            shutil.rmtree(folder / sub, ignore_errors=True)
    done_rows = read_cells(folder) if resume else pd.DataFrame(columns=["cell", "status"])
    finished = set(done_rows.loc[done_rows["status"] == "ok", "cell"] if retry_failed
                   else done_rows["cell"])
    todo = [c for c in cells if c.key not in finished]
    skipped = [c.key for c in cells if c.key in finished]
    write_atomic(folder / "grid.json", json.dumps(
        {"spec": spec.describe(), "source": spec.source,
         "cells": [{"cell": c.key, "label": c.label} for c in cells]}, indent=2, default=str))
    executor = _executor(address, local, jobs, say)
    table = CellsFile(path, keep=resume)
    bar = None
    ran: list[str] = []
    best: dict[str, Any] = {}
    metric, higher = spec.protocol.metric, spec.protocol.higher_is_better

    def finished_cell(cell: Cell, result: CellResult) -> None:
        save_cell_files(folder, cell, result)
        table.append(result.row)
        ran.append(cell.key)
        value = result.row.get(metric)
        if result.ok and value is not None and np.isfinite(value) and (
                not best or (value > best["value"] if higher else value < best["value"])):
            best.update(value=value, label=cell.label)
        if bar is not None:
            bar.update(1)
            if best:
                bar.set_postfix_str(f"best {metric}={best['value']:.4g} {best['label']}",
                                    refresh=False)

    try:
        if todo:
            executor.start()
        tasks, streams = _prepare(spec, todo, finished_cell)
        if tasks:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(cells), initial=len(cells) - len(tasks), desc="grid",
                       unit="cell", disable=not progress, dynamic_ncols=True)
            executor.run(tasks, streams, spec.protocol, finished_cell)
            if executor.describe():
                say(f"ran {len(tasks)} cell(s) {executor.describe()}")
    finally:
        executor.close()
        if bar is not None:
            bar.close()
        rows = read_cells(folder)
        rows = rows[rows["cell"].isin({c.key for c in cells})].reset_index(drop=True)
        report = write_report(folder, spec, rows, where=executor.describe(), plots=plots)
    return GridResult(spec, folder, rows, report["table"], report["best"], report["paired"],
                      ran=ran, skipped=skipped, where=executor.describe())


def cell_factory(name: str, threads: int) -> tuple[Any, dict[str, Any]]:
    """The registered model's factory and the parameters every cell of it starts from: the
    registry's defaults, and ``num_threads=threads`` for a model with its own thread pool (a
    cell has ``threads`` cores; the library's default, every core, would oversubscribe them
    and make hogwild-trained models such as implicit's BPR depend on the thread schedule)."""
    model = get_spec(name)
    build = model.load()
    try:
        parameters = inspect.signature(build).parameters
    except (TypeError, ValueError):
        parameters = {}
    defaults = dict(model.defaults)
    if "num_threads" in parameters:
        defaults.setdefault("num_threads", threads)
    return build, defaults


def _prepare(spec: GridSpec, todo: list[Cell], failed: Any
             ) -> tuple[list[tuple[Cell, Any, Any]], dict[Any, Stream]]:
    """Load each dataset once and cut it into a stream per step size; resolve each model's
    factory here (so models registered at run time run too). A dataset or stream that cannot
    be made fails its cells, not the grid."""
    frames: dict[str, Any] = {}
    streams: dict[Any, Stream] = {}
    errors: dict[Any, str] = {}
    factories: dict[str, Any] = {}
    tasks = []
    for cell in todo:
        key = (cell.dataset, str(cell.step))
        if key not in streams and key not in errors:
            try:
                if cell.dataset not in frames:
                    frames[cell.dataset] = spec.dataset(cell.dataset).load()
                streams[key] = Stream(frames[cell.dataset], step=cell.step,
                                      warmup=spec.protocol.warmup)
            except Exception:
                errors[key] = traceback.format_exc()
        if key in errors:
            failed(cell, failed_result(cell, errors[key]))
            continue
        if cell.name not in factories:
            factories[cell.name] = cell_factory(cell.name, spec.protocol.threads)
        tasks.append((cell, key, factories[cell.name]))
    return tasks, streams
