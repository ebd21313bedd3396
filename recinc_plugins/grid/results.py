"""A grid's output folder: ``cells.csv`` kept up to date as cells end, per-cell curves and
hits, and the report over seeds (``table.csv``, ``best.csv``, ``paired.csv``, ``report.md``,
a plot of recall against cost)."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from .._optional import extra_installed
from ..evaluation.metrics import paired_tests
from ..evaluation.report import write_atomic
from .runner import CellResult
from .spec import Cell, GridSpec

__all__ = ["CellsFile", "aggregate", "best_settings", "read_cells", "write_report"]

KEYS = ["dataset", "step", "model", "params"]
#: columns that describe a cell or count its events, not a metric or a cost
_NOT_MEASURES = {"cell", "dataset", "step", "model", "params", "seed", "status", "error",
                 "host", "pid", "started", "node", "events", "scored_events", "rated_events"}


class CellsFile:
    """``OUT/cells.csv``: one row per cell, added as soon as the cell ends.

    A row is appended as one whole line (one ``write`` of a line, then ``fsync``), so a run
    killed at any moment leaves a file whose lines are all complete; when a row brings a
    column the file does not have yet (the first ok row after a failed one, the first rating
    dataset), the whole file is rewritten through a temporary file renamed over it. With
    ``keep=True`` the rows already there stay, as they were written.
    """

    def __init__(self, path: Path, keep: bool = False) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if keep and self.path.exists():
            text = self.path.read_text()
            whole = text[:text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(whole))
            self.rows = list(reader)
            self.columns = list(reader.fieldnames or [])
            if whole == text:
                return
        self._rewrite()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if any(c not in self.columns for c in row):
            self.columns += [c for c in row if c not in self.columns]
            self._rewrite()
            return
        line = self._format([row], header=False)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ordered(self) -> list[str]:
        # the error last, as in compare's summary, wherever a new column arrives
        return [c for c in self.columns if c != "error"] + (["error"] if "error" in
                                                            self.columns else [])

    def _format(self, rows: list[dict[str, Any]], header: bool) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="raise",
                                lineterminator="\n")
        if header:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return buf.getvalue()

    def _rewrite(self) -> None:
        self.columns = self._ordered()
        write_atomic(self.path, self._format(self.rows, header=True) if self.columns else "")


def _csv_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, float) and np.isnan(value):
        return ""
    if isinstance(value, str):
        return value.replace("\n", " ")
    return value


def read_cells(folder: str | Path) -> pd.DataFrame:
    """The rows of ``folder/cells.csv`` (the last row of a cell that ran twice), or an empty
    frame. A trailing line without its newline (a run killed mid-write on a filesystem that
    does not write appends whole) is dropped."""
    path = Path(folder) / "cells.csv"
    if not path.exists():
        return pd.DataFrame(columns=["cell", "status"])
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    if not text.strip():
        return pd.DataFrame(columns=["cell", "status"])
    frame = pd.read_csv(io.StringIO(text), dtype={"cell": str, "step": str, "params": str,
                                                        "seed": str})
    return frame.drop_duplicates("cell", keep="last").reset_index(drop=True)


def save_cell_files(folder: Path, cell: Cell, result: CellResult) -> None:
    """The curves (``curves/KEY.csv``), hits (``hits/KEY.npy``) or traceback
    (``errors/KEY.txt``) of a cell, each written whole before its row is added."""
    if result.curves is not None:
        (folder / "curves").mkdir(exist_ok=True)
        curves = result.curves.assign(cell=cell.key)
        write_atomic(folder / "curves" / f"{cell.key}.csv", curves.to_csv(index=False))
    if result.hits is not None:
        (folder / "hits").mkdir(exist_ok=True)
        tmp = folder / "hits" / f".{cell.key}.{os.getpid()}.npy"
        np.save(tmp, np.asarray(result.hits, dtype=bool))
        os.replace(tmp, folder / "hits" / f"{cell.key}.npy")
    if result.traceback:
        (folder / "errors").mkdir(exist_ok=True)
        write_atomic(folder / "errors" / f"{cell.key}.txt",
                     f"{cell.label}\n\n{result.traceback}")


# -- over seeds ----------------------------------------------------------------------------


def measures(cells: pd.DataFrame) -> list[str]:
    """The metric and cost columns of the cells (numeric, not counts or descriptions)."""
    return [c for c in cells.columns if c not in _NOT_MEASURES and not c.endswith("_events")
            and pd.api.types.is_numeric_dtype(cells[c])]


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of ``values`` (NaN bounds for fewer than 2)."""
    from scipy.stats import t

    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"),) * 3
    mean = float(values.mean())
    if values.size < 2:
        return mean, float("nan"), float("nan")
    half = float(t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return mean, mean - half, mean + half


def aggregate(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, step, model, params): ``seeds`` (ok cells), ``failed``, ``events``, and
    for every metric and cost column its mean over seeds with a 95% t-interval (``_lo``,
    ``_hi``; empty with one seed)."""
    if cells.empty:
        return pd.DataFrame(columns=[*KEYS, "seeds", "failed"])
    cols = measures(cells)
    rows = []
    for key, group in cells.groupby(KEYS, sort=False):
        ok = group[group["status"] == "ok"]
        row = dict(zip(KEYS, key, strict=True))
        row["seeds"] = len(ok)
        row["failed"] = int((group["status"] != "ok").sum())
        if "events" in ok.columns and len(ok):
            row["events"] = int(ok["events"].iloc[0])
        for col in cols:
            mean, lo, hi = _interval(ok[col].to_numpy(dtype=np.float64))
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)


def best_settings(table: pd.DataFrame, metric: str, higher: bool) -> pd.DataFrame:
    """The best setting of each model on each (dataset, step), by the mean of ``metric``."""
    if metric not in table.columns:
        return table.iloc[0:0]
    ranked = table[table["seeds"] > 0].dropna(subset=[metric])
    ranked = ranked.sort_values(metric, ascending=not higher, kind="stable")
    best = ranked.drop_duplicates(["dataset", "step", "model"], keep="first")
    return best.sort_values(["dataset", "step", metric], ascending=[True, True, not higher],
                            kind="stable").reset_index(drop=True)


def paired_best(folder: Path, cells: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Paired tests (McNemar, bootstrap interval) between the best settings of the models on
    each (dataset, step), seed by seed, on the same events; a model without a seed pairs its
    one cell with every seed of the others."""
    frames = []
    ok = cells[cells["status"] == "ok"]
    for (dataset, step), tops in best.groupby(["dataset", "step"], sort=False):
        if len(tops) < 2:
            continue
        chosen = ok.merge(tops[KEYS], on=KEYS)
        seeds = sorted({s for s in chosen["seed"].dropna().astype(str) if s != ""}) or [""]
        for seed in seeds:
            hits = {}
            for model, rows in chosen.groupby("model", sort=False):
                match = rows[rows["seed"].astype(str) == seed]
                row = (match if len(match) else rows).iloc[0]
                path = folder / "hits" / f"{row['cell']}.npy"
                if path.exists():
                    hits[model] = np.load(path)
            if len(hits) < 2:
                continue
            frame = paired_tests(hits)
            frame.insert(0, "seed", seed)
            frame.insert(0, "step", step)
            frame.insert(0, "dataset", dataset)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# -- the report ----------------------------------------------------------------------------


def _fmt(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(mean):
        return "-"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.4g}"
    return f"{mean:.4g} [{lo:.4g}, {hi:.4g}]"


def _table_text(table: pd.DataFrame, columns: list[str]) -> str:
    shown = []
    for _, row in table.iterrows():
        out = {k: row[k] for k in KEYS}
        out["seeds"] = row["seeds"]
        if row.get("failed", 0):
            out["failed"] = row["failed"]
        for col in columns:
            out[col] = _fmt(row.get(col, np.nan), row.get(f"{col}_lo", np.nan),
                            row.get(f"{col}_hi", np.nan))
        shown.append(out)
    return tabulate(pd.DataFrame(shown), headers="keys", tablefmt="github", showindex=False,
                    missingval="")


def write_report(folder: Path, spec: GridSpec, cells: pd.DataFrame, *, where: str = "",
                 plots: bool = True) -> dict[str, Any]:
    """Write ``table.csv``, ``best.csv``, ``paired.csv``, ``report.md`` and
    ``recall_vs_cost.png``; return the frames."""
    protocol = spec.protocol
    metric = protocol.metric
    table = aggregate(cells)
    write_atomic(folder / "table.csv", table.to_csv(index=False))
    best = best_settings(table, metric, protocol.higher_is_better)
    write_atomic(folder / "best.csv", best.to_csv(index=False))
    paired = paired_best(folder, cells, best) if protocol.target != "rating" else pd.DataFrame()
    write_atomic(folder / "paired.csv", paired.to_csv(index=False))
    k = protocol.ks[0]
    shown = [c for c in (f"recall@{k}", f"ndcg@{k}", f"coverage@{k}", "rmse", "mae",
                         "update_us_per_event", "events_per_s")
             if c in table.columns and table[c].notna().any()]
    images = []
    if plots and extra_installed("plot") and metric in table.columns and len(table):
        images = _plot(folder, table, metric)
    n_ok = int((cells["status"] == "ok").sum()) if len(cells) else 0
    lines = ["# Grid", "",
             f"{len(spec.cells())} cells from `{spec.source}`: {len(spec.datasets)} dataset(s) "
             f"x {len(spec.steps)} step size(s) x {sum(len(m.settings()) for m in spec.models)} "
             f"model setting(s) x seeds {list(spec.seeds)} (models without a seed run once); "
             f"{n_ok} ok, {len(cells) - n_ok} failed" + (f"; ran {where}" if where else "")
             + ".", "",
             "Each cell is one `compare` of one model: steps scored before they are learned, "
             f"K = {', '.join(map(str, protocol.ks))}, warm-up {protocol.warmup!r}, target "
             f"{protocol.target!r}" + (", items the user had excluded" if protocol.exclude_seen
                                       else "") + ". Values: the mean over seeds and its 95% "
             "interval (Student t) in brackets; one value where one seed ran.", ""]
    if len(table):
        lines += ["## Every setting", "", _table_text(table, shown), ""]
    if len(best):
        lines += [f"## Best setting per model ({metric}, "
                  f"{'highest' if protocol.higher_is_better else 'lowest'} mean)", "",
                  _table_text(best, shown), ""]
    if len(paired):
        lines += [f"## Paired tests of the best settings (hit@{k}, same events)", "",
                  "McNemar's exact test on the events where exactly one model hits, and a "
                  "95% bootstrap interval on the difference in recall, seed by seed.", "",
                  tabulate(paired, headers="keys", tablefmt="github", showindex=False,
                           floatfmt=".4g"), ""]
    if images:
        lines += ["## Recall against cost", ""] + [f"![{n}]({n})" for n in images] + [""]
    failed = cells[cells["status"] != "ok"] if len(cells) else cells
    if len(failed):
        lines += ["## Failed cells", "", "Tracebacks in `errors/CELL.txt`.", "",
                  tabulate(failed[["cell", *KEYS, "seed", "error"]].fillna(""), headers="keys",
                           tablefmt="github", showindex=False), ""]
    write_atomic(folder / "report.md", "\n".join(lines))
    return {"table": table, "best": best, "paired": paired, "images": images}


def _plot(folder: Path, table: pd.DataFrame, metric: str) -> list[str]:
    from matplotlib.figure import Figure

    cost = "update_us_per_event" if metric == "rmse" else "events_per_s"
    groups = list(table.groupby(["dataset", "step"], sort=False))
    fig = Figure(figsize=(5.5 * min(len(groups), 3), 4.2 * ((len(groups) + 2) // 3)),
                 layout="constrained")
    axes = fig.subplots((len(groups) + 2) // 3, min(len(groups), 3), squeeze=False).ravel()
    colours: dict[str, Any] = {}
    for ax, ((dataset, step), part) in zip(axes, groups, strict=False):
        x = part["events_per_s"].to_numpy(np.float64)
        x = 1e6 / x if cost == "events_per_s" else part[cost].to_numpy(np.float64)
        for model, idx in part.groupby("model", sort=False).groups.items():
            pos = part.index.get_indexer(idx)
            settings = [json.loads(p) for p in part.loc[idx, "params"]]
            varying = {k for s in settings for k in s
                       if len({repr(t.get(k)) for t in settings}) > 1}
            y = part.loc[idx, metric].to_numpy(np.float64)
            lo = part.loc[idx].get(f"{metric}_lo", pd.Series(np.nan, idx)).to_numpy(np.float64)
            hi = part.loc[idx].get(f"{metric}_hi", pd.Series(np.nan, idx)).to_numpy(np.float64)
            err = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])
            bars = ax.errorbar(x[pos], y, yerr=err, fmt="o", capsize=3, label=model,
                               color=colours.get(model))
            colours[model] = bars[0].get_color()
            for xi, yi, params in zip(x[pos], y, settings, strict=True):
                text = ", ".join(f"{k}={v}" for k, v in params.items() if k in varying)
                if text:
                    ax.annotate(text, (xi, yi), fontsize="x-small", xytext=(3, 3),
                                textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("wall time per event, score + learn (us)" if cost == "events_per_s"
                      else "update time per event (us)")
        ax.set_ylabel(metric)
        ax.set_title(f"{dataset}, step {step}", fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    fig.savefig(folder / "recall_vs_cost.png", dpi=110)
    return ["recall_vs_cost.png"]
