"""Reports of a comparison: CSV, JSON, Markdown and PNG plots in one folder."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from .._optional import extra_installed

#: what every function here formats: a :class:`~recinc_plugins.evaluation.CompareResult`
#: (not imported: the comparison module imports this one, never the other way round)
CompareResult = Any

__all__ = ["LOCK_NAME", "OutputFolderBusy", "deletions_text", "folder_lock", "format_summary",
           "protocol_text", "write_atomic", "write_report"]

#: the lock file of an output folder: the id of the process writing it
LOCK_NAME = ".recinc.lock"


class OutputFolderBusy(ValueError):
    """An output folder is being written by another run, which is still going."""


#: folders this process holds: path -> how many nested holds
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder`` for this run: a second run (another process) is refused at once with
    :class:`OutputFolderBusy`, so two runs never mix their files.

    The lock is ``folder/.recinc.lock``, holding this process's id and start time, locked
    (``flock``) while this process or its workers live: a run that dies, even by SIGKILL,
    leaves a stale file that the next run takes over. This process may hold it again (the
    CLI holds it around ``compare`` and the report)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
        return
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, path, folder)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {_now()}\n".encode())
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = 1
    try:
        yield folder
    finally:
        del _HELD[key]
        os.close(fd)  # the lock goes with it; the file stays (see above)


def _lock(fd: int, path: Path, folder: Path) -> None:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): a live pid in the file holds the folder
        owner = _owner(path)
        if owner is not None and owner[0] != os.getpid() and _alive(owner[0]):
            raise _busy(folder, owner) from None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise _busy(folder, _owner(path)) from None


def _owner(path: Path) -> tuple[int, str] | None:
    try:
        pid, _, since = path.read_text().strip().partition(" ")
        return int(pid), since
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _busy(folder: Path, owner: tuple[int, str] | None) -> OutputFolderBusy:
    who = f"process {owner[0]} (started {owner[1]})" if owner else "another process"
    return OutputFolderBusy(
        f"{folder} is being written by another run, {who}: two runs would mix their files. "
        f"Wait for it to end, or write to another folder (its lock: {folder / LOCK_NAME})")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace ``path`` with ``text`` all at once: written to a temporary file beside it,
    flushed to disk, then renamed over it, so a reader (or a run killed at any moment) sees
    the old file or the new one, never a part of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if isinstance(text, bytes) else "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def protocol_text(result: CompareResult) -> str:
    """One paragraph saying exactly how the comparison was run."""
    stream, config = result.stream, result.config
    step = stream.step
    step_text = (f"{step} event(s) per step" if isinstance(step, (int, np.integer))
                 else f"one step per {step} window")
    parts = [
        f"{len(stream):,} events ({stream.n_users:,} users, {stream.n_items:,} items) replayed "
        f"in timestamp order (stable on ties), {step_text} ({stream.n_steps:,} steps)",
        f"warm-up: first {stream.n_warmup:,} events learned with fit, not scored",
        "each step scored before it is learned (test-then-learn)",
    ]
    if config.ranking:
        parts.append(
            "ranking target: the event's item among all items seen before the step"
            + (", items the user had before the step excluded" if config.exclude_seen else "")
            + f"; K = {', '.join(map(str, config.ks))}; never-seen items are misses; unknown "
            "users are answered by the model's cold-start fallback")
    if getattr(config, "context", "learned") == "fresh":
        parts.append(
            "fresh context: each event also scored with its user's earlier events in the same "
            "step, given as context (not learned) and excluded from the candidates")
    if config.eval_fraction < 1:
        verb = "ranked" if config.ranking else "rated"
        parts.append(
            f"{verb}: a seeded sample of the scored events (eval_fraction = "
            f"{config.eval_fraction:g}, eval_seed = {config.eval_seed}; "
            f"{result.n_ranked:,} of {stream.n_scored:,}), the same events for every model, "
            "every metric over them; every event is learned; candidate items are never "
            "sampled")
    if stream.has_ratings and config.rating != "never":
        clip = (f", clipped to [{config.clip[0]:g}, {config.clip[1]:g}]" if config.clip
                else "")
        parts.append("rating target: predicted rating before learning" + clip
                     + (" (every model)" if config.rating == "always"
                        else " (models whose scores are ratings)"))
    scale = getattr(result, "rating_scale", None)
    if scale is not None:
        done = getattr(result, "out_of_scale", {}) or {}
        outside = int(done.get("events", 0))
        what = {"clip": "clipped to it", "drop": "left out of the stream"}.get(
            done.get("policy"), "refused")
        parts.append(f"ratings checked against the scale [{scale[0]:g}, {scale[1]:g}]"
                     + (f", {outside:,} outside it {what}" if outside else ""))
    requests = getattr(stream, "deletions", None)
    if requests is not None:
        n_users = int(requests["user"].notna().sum())
        n_items = int(requests["item"].notna().sum())
        served = requests["served_at"].nunique()
        parts.append(
            f"{len(requests):,} deletion request(s) ({n_users:,} user(s), {n_items:,} "
            f"item(s)) served at {served:,} point(s) of the stream: every model forgets the "
            "ids there (the step a request falls in is cut at it; requests inside the warm-up "
            "are served when it ends), forgotten items are no candidates from then on, and "
            "a forgotten id that comes back is a new user or item")
    diverged = getattr(result, "diverged", {})
    if diverged:
        parts.append("stopped when their scores or predicted ratings turned non-finite "
                     "(diverged): " + ", ".join(f"{name} at step {step}"
                                                for name, step in diverged.items()))
    return "; ".join(parts) + "."


def format_summary(result: CompareResult, columns: list[str] | None = None,
                   tablefmt: str = "simple") -> str:
    """The summary table as text (the columns that matter most by default)."""
    summary = result.summary
    if columns is None:
        k = result.k
        sampled = result.config.eval_fraction < 1
        wanted = ["model", "status", "events", *(["scored_events"] if sampled else []),
                  f"recall@{k}", f"recall@{k}_lo", f"recall@{k}_hi", f"ndcg@{k}", f"mrr@{k}",
                  f"coverage@{k}", f"cold_user_recall@{k}", "rmse", "mae",
                  "update_us_per_event", "rec_p95_ms", "events_per_s", "peak_mem_mb"]
        columns = [c for c in wanted if c in summary.columns]
        if "rmse" in columns and summary["rmse"].isna().all():
            columns = [c for c in columns if c not in ("rmse", "mae")]
    table = summary[columns].astype(object)
    table = table.where(table.notna(), None)
    return tabulate(table, headers="keys", tablefmt=tablefmt, showindex=False,
                    floatfmt=".4g", missingval="-")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA:  # a missing count (nullable integer column)
        return None
    return value


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [_jsonable(row) for row in frame.to_dict(orient="records")]


def write_report(result: CompareResult, folder: Path, *, plots: bool = True,
                 window: int | None = None) -> dict[str, Path]:
    """Write the comparison to ``folder``; return the paths written by kind. Every file is
    replaced at once (:func:`write_atomic`), under the folder's lock (:func:`folder_lock`)."""
    with folder_lock(folder):
        return _write_report(result, Path(folder), plots, window)


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False)


def _write_report(result: CompareResult, folder: Path, plots: bool,
                  window: int | None) -> dict[str, Path]:
    written: dict[str, Path] = {}
    summary = result.summary
    # replaced at once: the summary.csv that compare(out=...) kept up to date during the run
    # is never left half-written
    write_atomic(folder / "summary.csv", summary.to_csv(index=False))
    written["summary.csv"] = folder / "summary.csv"
    curves = result.curves(window=window)
    write_atomic(folder / "curves.csv", _csv(curves))
    written["curves.csv"] = folder / "curves.csv"
    paired = result.paired()
    write_atomic(folder / "paired.csv", _csv(paired))
    written["paired.csv"] = folder / "paired.csv"
    drift = result.drift
    if drift is not None:
        write_atomic(folder / "drift.csv", _csv(drift))
        written["drift.csv"] = folder / "drift.csv"
    deletions = None
    if getattr(result.stream, "deletions", None) is not None:
        deletions = result.deletions(window=window)
        write_atomic(folder / "deletions.csv", _csv(deletions))
        written["deletions.csv"] = folder / "deletions.csv"
    payload = {
        "protocol": protocol_text(result),
        "config": _jsonable({k: v for k, v in result.config.__dict__.items()
                             if k not in ("progress", "progress_position")}),
        "stream": {"events": len(result.stream), "users": result.stream.n_users,
                   "items": result.stream.n_items, "warmup": result.stream.n_warmup,
                   "steps": result.stream.n_steps, "step": str(result.stream.step),
                   "fingerprint": result.stream.fingerprint},
        "models": _records(summary),
        "paired": _records(paired),
        "drift": None if drift is None else _records(drift),
        "failures": result.failures,
        "diverged": dict(getattr(result, "diverged", {})),
        "rating_scale": _jsonable(getattr(result, "rating_scale", None)),
        "out_of_scale": _jsonable(getattr(result, "out_of_scale", {})),
        "not_finished": list(result.unfinished),
    }
    if deletions is not None:
        served = deletions.copy()
        served["timestamp"] = [None if pd.isna(t) else str(t) for t in served["timestamp"]]
        payload["deletions"] = _records(served)
    write_atomic(folder / "summary.json", json.dumps(payload, indent=2))
    written["summary.json"] = folder / "summary.json"
    images: list[str] = []
    if plots and extra_installed("plot") and result.records:
        images = _plots(result, curves, folder)
        written.update({name: folder / name for name in images})
    write_atomic(folder / "report.md", _markdown(result, paired, drift, images, plots,
                                                 deletions))
    written["report.md"] = folder / "report.md"
    return written


def deletions_text(result: CompareResult, deletions: pd.DataFrame,
                   tablefmt: str = "simple") -> str:
    """Per model, the deletion requests served and what they cost: how many, the ids and
    events forgotten, the time of ``forget`` (total, per request, per id), and recall@K over
    the windows before and after the requests (their means)."""
    k = result.k
    rows = []
    for model, part in deletions.groupby("model", sort=False):
        ids = int(part["forgot_users"].sum() + part["forgot_items"].sum())
        seconds = float(part["forget_ms"].sum()) / 1e3
        row = {"model": model, "requests at": len(part),
               "ids forgotten": ids, "events forgotten": int(part["events"].sum()),
               "exact": "yes" if part["exact"].all() else "no",
               "forget_s": seconds, "ms per request": float(part["forget_ms"].mean()),
               "ms per id": seconds * 1e3 / ids if ids else float("nan"),
               "max ms": float(part["forget_ms"].max())}
        if f"recall@{k}_before" in part.columns:
            row[f"recall@{k} before"] = float(part[f"recall@{k}_before"].mean())
            row[f"recall@{k} after"] = float(part[f"recall@{k}_after"].mean())
        rows.append(row)
    return tabulate(pd.DataFrame(rows), headers="keys", tablefmt=tablefmt, showindex=False,
                    floatfmt=".4g", missingval="-")


def _markdown(result: CompareResult, paired: pd.DataFrame, drift: pd.DataFrame | None,
              images: list[str], plots: bool, deletions: pd.DataFrame | None = None) -> str:
    k = result.k
    lines = ["# Model comparison", "", protocol_text(result), ""]
    if result.unfinished:
        lines += [f"**Interrupted**: {', '.join(result.unfinished)} did not finish; the "
                  "tables below cover the models that ended.", ""]
    lines += ["## Summary", "", format_summary(result, tablefmt="github"), ""]
    if result.config.eval_fraction < 1 and result.config.ranking:
        lines += [f"Ranked events: {result.n_ranked:,} of {result.stream.n_scored:,} "
                  f"(eval_fraction = {result.config.eval_fraction:g}, eval_seed = "
                  f"{result.config.eval_seed}). `recall@{k}_lo`/`_hi`: 95% Wilson score "
                  f"interval of recall@{k} over those events.", ""]
    summary = result.summary
    cold_cols = [c for c in ("model", "warm_events", f"warm_recall@{k}", "cold_user_events",
                             f"cold_user_recall@{k}", "cold_item_events", "repeat_events")
                 if c in summary.columns]
    if len(cold_cols) > 1:
        lines += ["## Warm and cold events", "",
                  "Cold-item events (item never seen before the step) are always misses; "
                  "cold-user events are ranked by the model's cold-start fallback.", "",
                  format_summary(result, cold_cols, "github"), ""]
    cost_cols = [c for c in ("model", "fit_s", "update_s", "update_us_per_event", "score_s",
                             "rec_p50_ms", "rec_p95_ms", "rec_p99_ms", "events_per_s",
                             "wall_s", "cpu_s", "peak_mem_mb", "model_mb") if c in summary.columns]
    lines += ["## Cost", "",
              "`rec_p*_ms`: the model's scoring time per scored user, per step. "
              "`peak_mem_mb`: growth of the process's resident memory during the replay. "
              "`model_mb`: the pickled model.", "",
              format_summary(result, cost_cols, "github"), ""]
    if deletions is not None and len(deletions):
        before = deletions["events_before"].max()
        lines += ["## Deletion requests", "",
                  "At each request every model forgets the ids (`forget`); `ms per id`: its "
                  "time per id it knew; the recalls are means over the requests of recall@"
                  f"{k} over the {before:,} ranked events before and after each. "
                  "Per request: `deletions.csv` (counts, not the ids).", "",
                  deletions_text(result, deletions, "github"), ""]
    if len(paired):
        lines += [f"## Paired tests (hit@{k}, same events)", "",
                  "McNemar's exact test on the events where exactly one model hits; "
                  "95% bootstrap interval on the difference in recall.", "",
                  tabulate(paired, headers="keys", tablefmt="github", showindex=False,
                           floatfmt=".4g"), ""]
    lines += ["## Drift", ""]
    if drift is None and not result.config.ranking:
        lines += [f"No ranking target (target='rating'): no hit@{k} stream, so no drift "
                  "detection.", ""]
    elif drift is None:
        lines += ["River is not installed (`pip install 'recinc-plugins[river]'`): no drift "
                  "detection.", ""]
    elif len(drift) == 0:
        lines += [f"ADWIN flagged no change in any model's hit@{k} rate.", ""]
    else:
        counts = drift.groupby("model", sort=False)["event"].apply(
            lambda e: ", ".join(str(int(x)) for x in e))
        lines += [f"Scored-event positions where ADWIN flagged a change in hit@{k}:", ""]
        lines += [f"- {model}: {events}" for model, events in counts.items()] + [""]
    if images:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in images] + [""]
    elif plots and not extra_installed("plot"):
        lines += ["(matplotlib is not installed: no plots.)", ""]
    if result.failures:
        lines += ["## Failures", ""]
        for name, tb in result.failures.items():
            lines += [f"### {name}", "", "```", tb.rstrip(), "```", ""]
    return "\n".join(lines)


def _plots(result: CompareResult, curves: pd.DataFrame, folder: Path) -> list[str]:
    from matplotlib.figure import Figure

    names = []
    k = result.k
    metrics = [m for m in (f"recall@{k}", f"ndcg@{k}", "abs_error") if m in
               set(curves["metric"])]
    if metrics:
        fig = Figure(figsize=(7, 2.6 * len(metrics)), layout="constrained")
        axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
        colours: dict[str, str] = {}
        for ax, metric in zip(axes, metrics, strict=True):
            part = curves[curves["metric"] == metric]
            for model, rows in part.groupby("model", sort=False):
                line, = ax.plot(rows["event"], rows["window"], label=f"{model}",
                                color=colours.get(model))
                colours[model] = line.get_color()
                ax.plot(rows["event"], rows["cumulative"], color=line.get_color(),
                        linestyle=":", linewidth=1)
            label = "MAE" if metric == "abs_error" else metric
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        drift = result.drift
        if drift is not None and len(drift):
            for model, pos in zip(drift["model"], drift["event"], strict=True):
                axes[0].axvline(pos + 1, color=colours.get(model, "grey"), alpha=0.35,
                                linewidth=0.8, linestyle="--")
        axes[-1].set_xlabel("scored events")
        axes[0].legend(fontsize="small", loc="best")
        axes[0].set_title("sliding window (solid), cumulative (dotted), drift points (dashed)",
                          fontsize="medium")
        _save_figure(fig, folder / "metrics_over_time.png")
        names.append("metrics_over_time.png")
    summary = result.summary[result.summary["status"] == "ok"]
    cost = [("update_us_per_event", "update time per event (us)"),
            ("events_per_s", "events/s (whole replay)"),
            ("rec_p95_ms", "scoring p95 per user (ms)")]
    fig = Figure(figsize=(3.2 * len(cost), 0.45 * len(summary) + 1.6), layout="constrained")
    axes = fig.subplots(1, len(cost), squeeze=False)[0]
    for ax, (column, title) in zip(axes, cost, strict=True):
        values = summary[column].to_numpy(dtype=np.float64)
        ax.barh(summary["model"], values)
        ax.set_title(title, fontsize="medium")
        positive = values[np.isfinite(values) & (values > 0)]
        if positive.size and positive.max() / positive.min() > 100:
            ax.set_xscale("log")  # models differ by orders of magnitude: keep all readable
        for y, value in enumerate(values):
            if np.isfinite(value):
                ax.text(value, y, f" {value:.3g}", va="center", fontsize="small")
        ax.margins(x=0.25)
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    _save_figure(fig, folder / "cost.png")
    names.append("cost.png")
    return names


def _save_figure(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())
