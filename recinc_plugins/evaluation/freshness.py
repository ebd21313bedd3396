"""How often must a model learn? Recall against the update interval, with and without context.

:func:`freshness` replays one stream through the same models once per update interval (events
per step, or a duration) and per context setting (``"learned"``: each event scored with what
the model learned before its step; ``"fresh"``: also with its user's earlier events in the
step, given as context), each cell one :func:`~recinc_plugins.evaluation.compare`. The result
is one table (a row per model, context and interval) and one plot (recall@K against the mean
events per step, a line per model and context). ``recinc freshness`` is its command line.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from .._optional import extra_installed
from ..base import IncrementalRecommender
from .comparison import compare
from .report import write_atomic
from .stream import Stream

__all__ = ["CONTEXTS", "INTERVALS", "FreshnessResult", "freshness"]

#: the default update intervals: events per step, then durations
INTERVALS: tuple[int | str, ...] = (1, 10, 100, 1000, 10000, "1h", "1D")
CONTEXTS = ("learned", "fresh")


@dataclass
class FreshnessResult:
    """What :func:`freshness` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per model, context and interval that ran: ``model``, ``context``,
        ``interval`` (as given: ``1000``, ``"1D"``), ``steps``, ``events_per_step`` (scored
        events over steps), the ranking metrics at K, ``cold_user_events``, ``score_s``
        (the model's scoring time), ``update_s``, ``wall_s``, ``cpu_s`` (the replay's CPU
        time, which other jobs on the machine do not inflate) and ``status``.
    notes : list of str
        The intervals left out, and why; the intervals replayed once for both contexts.
    k : int
        The cut-off of the metrics.
    """

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    k: int = 10

    def pivot(self, metric: str | None = None) -> pd.DataFrame:
        """``metric`` (default recall@K) with a row per interval and a column per model and
        context, intervals in the order of their mean step size."""
        metric = metric or f"recall@{self.k}"
        ok = self.table[self.table["status"] == "ok"]
        if ok.empty:
            return pd.DataFrame()
        order = ok.groupby("interval", sort=False)["events_per_step"].mean().sort_values()
        wide = ok.pivot_table(index="interval", columns=["model", "context"], values=metric,
                              sort=False)
        columns = [(model, context) for model in ok["model"].unique()
                   for context in ok["context"].unique() if (model, context) in wide.columns]
        return wide.reindex(index=order.index, columns=columns)

    def format(self, metric: str | None = None) -> str:
        """The pivot as a plain-text table, the notes below it."""
        wide = self.pivot(metric)
        if wide.empty:
            text = "(no cell ran)"
        else:
            headers = ["interval"] + [f"{model} {context}" for model, context in wide.columns]
            rows = [[_label(interval), *values] for interval, values in
                    zip(wide.index, wide.to_numpy(), strict=True)]
            text = tabulate(rows, headers=headers, tablefmt="simple", floatfmt=".4f")
        return "\n".join([text, *(f"note: {note}" for note in self.notes)])

    def plot(self, path: str | Path, metric: str | None = None) -> Path:
        """Draw ``metric`` (default recall@K) against the mean events per step (log scale),
        one line per model and context (solid: fresh, dashed: learned), to a PNG file."""
        from matplotlib.figure import Figure

        metric = metric or f"recall@{self.k}"
        ok = self.table[self.table["status"] == "ok"]
        fig = Figure(figsize=(9, 4.2), layout="constrained")
        ax = fig.subplots()
        colours: dict[str, str] = {}
        for (model, context), rows in ok.groupby(["model", "context"], sort=False):
            rows = rows.sort_values("events_per_step")
            line, = ax.plot(rows["events_per_step"], rows[metric], marker="o",
                            color=colours.get(model),
                            linestyle="-" if context == "fresh" else "--",
                            label=f"{model}, {context} context")
            colours[model] = line.get_color()
        labels = ok.drop_duplicates("interval")
        for interval, x in zip(labels["interval"], labels["events_per_step"], strict=True):
            if isinstance(interval, str):  # a duration: say where it landed
                ax.annotate(interval, (x, 0), xycoords=("data", "axes fraction"),
                            xytext=(0, 3), textcoords="offset points", ha="center",
                            fontsize="small", color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("update interval: mean events per step (durations marked)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # off the lines
        ax.set_title("how fresh must the model be?", fontsize="medium")
        path = Path(path)
        fig.savefig(path, dpi=110)
        return path

    def write(self, folder: str | Path, *, plots: bool = True) -> dict[str, Path]:
        """Write ``freshness.csv`` (the table), ``freshness.md`` (the pivot and notes) and,
        where matplotlib is installed, ``freshness.png`` to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {"freshness.csv": folder / "freshness.csv",
                   "freshness.md": folder / "freshness.md"}
        write_atomic(written["freshness.csv"], self.table.to_csv(index=False))
        write_atomic(written["freshness.md"], self.format() + "\n")
        if plots and extra_installed("plot") and (self.table["status"] == "ok").any():
            written["freshness.png"] = self.plot(folder / "freshness.png")
        return written


def _label(interval: Any) -> str:
    return f"{interval:,}" if isinstance(interval, (int, np.integer)) else str(interval)


def _check_interval(interval: Any) -> int | str:
    """An int number of events, or a duration string such as "1h"; anything else refused."""
    if isinstance(interval, (bool, np.bool_)):
        raise ValueError(f"an interval is a number of events or a duration, got {interval!r}")
    if isinstance(interval, (int, np.integer)):
        if interval < 1:
            raise ValueError(f"an interval in events must be >= 1, got {interval}")
        return int(interval)
    if isinstance(interval, (float, np.floating)) and float(interval).is_integer() \
            and interval >= 1:
        return int(interval)
    if isinstance(interval, pd.Timedelta):
        interval = str(interval)
    if isinstance(interval, str):
        try:
            delta = pd.Timedelta(interval)
        except (ValueError, TypeError):
            delta = None
        if delta is not None and delta > pd.Timedelta(0):
            return interval
    raise ValueError(f"an interval is a whole number of events (>= 1) or a positive duration "
                     f"such as '1h' or '1D', got {interval!r}")


def freshness(
    models: Mapping[str, IncrementalRecommender] | Sequence[str],
    frame: Any,
    intervals: Sequence[int | str] = INTERVALS,
    contexts: Sequence[str] = CONTEXTS,
    *,
    k: int = 10,
    warmup: int | float | str = 0,
    n_jobs: int = 1,
    progress: bool = False,
    verbose: bool = False,
    **compare_options: Any,
) -> FreshnessResult:
    """Recall@K of ``models`` against the update interval, with learned and fresh context.

    Each (interval, context) cell is one :func:`~recinc_plugins.evaluation.compare` of every
    model over ``frame`` with ``step=interval`` (the same :class:`Stream` for both contexts),
    so every number is the harness's, under its protocol (``docs/protocol.md``).

    Parameters
    ----------
    models
        ``{name: model}``, or registered model names (built with their defaults).
    frame
        The interactions (anything :class:`Stream` accepts).
    intervals
        Update intervals: events per step (int) or durations (``"1h"``, ``"1D"``). An interval
        that makes no sense for the data is left out with a note: a duration when the data have
        no timestamps, and any interval that puts every scored event in one step (nothing
        would ever be learned before it is scored). Where every step holds one event, fresh
        context is learned context: the cell is replayed once and reported for both.
    contexts
        ``"learned"`` and/or ``"fresh"`` (see ``compare``'s ``context``).
    k
        The cut-off of the metrics.
    warmup
        Events learned before scoring (as ``Stream``'s ``warmup``), the same for every cell.
    n_jobs
        Models replayed at once in each cell (``compare``'s ``n_jobs``).
    progress
        Progress bars inside each cell.
    verbose
        Print a line as each cell ends (to stderr).
    compare_options
        Passed on to every ``compare`` (``eval_fraction``, ``cold_start``, ``seed``, ...).

    Examples
    --------
    >>> from recinc_plugins.data import synthetic_stream
    >>> from recinc_plugins.evaluation.freshness import freshness
    >>> events = synthetic_stream(n_events=600, n_users=40, n_items=80, seed=0)
    >>> result = freshness(["popularity"], events.drop(columns="timestamp"),
    ...                    intervals=(10, 100, "1D"))
    >>> result.notes
    ['interval 1D left out: a duration needs timestamps, and the data have none']
    >>> result.table[["context", "interval", "steps"]].values.tolist()
    [['learned', 10, 60], ['fresh', 10, 60], ['learned', 100, 6], ['fresh', 100, 6]]
    >>> print(result.format())  # doctest: +SKIP
    interval      popularity learned    popularity fresh
    ----------  --------------------  ------------------
    10                        0.0467              0.0483
    100                       0.0433              0.0500
    note: interval '1D' left out: a duration needs timestamps, and the data have none
    """
    contexts = tuple(contexts)
    for context in contexts:
        if context not in CONTEXTS:
            raise ValueError(f"contexts must be among {list(CONTEXTS)}, got {context!r}")
    if not contexts:
        raise ValueError("contexts is empty: give 'learned', 'fresh' or both")
    checked = [_check_interval(interval) for interval in intervals]
    if not checked:
        raise ValueError("intervals is empty: give events per step or durations")
    if not isinstance(models, Mapping):
        from ..registry import make

        names = list(models)
        if not names:
            raise ValueError("models is empty: give model names or {name: model}")
        models = {name: make(name) for name in names}
    base = Stream(frame, step=1, warmup=warmup)  # validates once; each interval re-steps it
    # deletion requests the data carry (rows whose 'event' is 'delete') go with every interval
    requests = (None if base.deletions is None
                else base.deletions[["position", "user", "item"]].copy())
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    for interval in dict.fromkeys(checked):  # once each, in the order given
        if isinstance(interval, str) and base.timestamps is None:
            notes.append(f"interval {interval} left out: a duration needs timestamps, and "
                         "the data have none")
            continue
        stream = Stream(base.frame, step=interval, warmup=warmup, deletions=requests)
        if stream.n_steps < 2 and stream.n_warmup == 0:
            notes.append(f"interval {_label(interval)} left out: one step holds all "
                         f"{stream.n_scored:,} scored events, so nothing is learned before "
                         "it is scored")
            continue
        # steps of one event: nothing earlier in a step, so fresh context is learned context
        single = int(np.diff(stream.bounds).max()) == 1
        if single and len(contexts) > 1:
            notes.append(f"interval {_label(interval)}: every step holds one event, so fresh "
                         "context is learned context (replayed once, reported for both)")
        for context in contexts[:1] if single else contexts:
            result = compare(models, stream, k=k, context=context, n_jobs=n_jobs,
                             progress=progress, **compare_options)
            for _, row in result.summary.iterrows():
                name = row["model"]
                record = result.records.get(name)
                cell = {
                    "model": name, "context": context, "interval": interval,
                    "steps": stream.n_steps,
                    "events_per_step": stream.n_scored / stream.n_steps,
                    **{col: row.get(col, np.nan) for col in
                       (f"recall@{k}", f"ndcg@{k}", f"mrr@{k}", f"warm_recall@{k}",
                        f"cold_user_recall@{k}", "cold_user_events", "scored_events")},
                    "score_s": float(record.score_s.sum()) if record else np.nan,
                    "update_s": float(record.update_s.sum()) if record else np.nan,
                    "wall_s": row.get("wall_s", np.nan),
                    "cpu_s": record.extra.get("cpu_s", np.nan) if record else np.nan,
                    "status": row["status"],
                }
                rows += [{**cell, "context": c} for c in (contexts if single else [context])]
                if verbose:
                    print(f"{name}, {context} context, every {_label(interval)}: "
                          f"recall@{k} {row.get(f'recall@{k}', np.nan):.4f} "
                          f"({row['status']})", file=sys.stderr, flush=True)
    return FreshnessResult(pd.DataFrame(rows), notes, k)


# -- the command line: recinc freshness ----------------------------------------------------------


def add_freshness_arguments(parser: Any) -> None:
    """The arguments of ``recinc freshness``."""
    from .cli import add_data_arguments, add_param_argument

    add_data_arguments(parser)
    parser.add_argument("--models", required=True,
                        help="comma-separated model names (see `recinc models`)")
    add_param_argument(parser, "item-knn.window=10")
    parser.add_argument("--k", type=int, default=10, help="the cut-off K (default: 10)")
    parser.add_argument("--intervals", default=",".join(str(i) for i in INTERVALS),
                        help="comma-separated update intervals: events per step or durations "
                             f"(default: {','.join(str(i) for i in INTERVALS)})")
    parser.add_argument("--contexts", default=",".join(CONTEXTS),
                        help="learned, fresh or both (default: learned,fresh)")
    parser.add_argument("--warmup", default="0",
                        help="events (int), fraction (float < 1) or time learned before "
                             "scoring, in every cell (default: 0)")
    parser.add_argument("--eval-fraction", type=float, default=1.0, metavar="F",
                        help="rank a seeded fraction F of the scored events in every cell "
                             "(every event is still learned; default: 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="models replayed at once in each cell (default: 1)")
    parser.add_argument("--out", default=None,
                        help="write freshness.csv, freshness.md and freshness.png here")
    parser.add_argument("--quiet", action="store_true", help="print only the table")


def run_freshness(args: Any) -> int:
    """``recinc freshness``: build the models, replay every cell, print the table, write
    the files."""
    import os

    from ..data import load_dataset
    from ..registry import make
    from .cli import _number_or_text, parse_params

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise ValueError("--models is empty: give comma-separated model names")
    if len(set(names)) != len(names):
        raise ValueError(f"--models names a model twice: {args.models}")
    if args.k < 1:
        raise ValueError(f"--k must be a positive integer, got {args.k}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {args.jobs}")
    params = parse_params(args.param, names)
    models = {}
    for name in names:
        try:
            models[name] = make(name, **params.get(name, {}))
            models[name].reset()  # a bad parameter is refused now, not in the first cell
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model {name!r}: {exc}") from exc
    intervals = [_number_or_text(x.strip()) for x in args.intervals.split(",") if x.strip()]
    contexts = [x.strip() for x in args.contexts.split(",") if x.strip()]
    if args.data_home:
        os.environ["RECINC_DATA_HOME"] = args.data_home
    frame = load_dataset(args.data)
    result = freshness(models, frame, intervals, contexts, k=args.k,
                       warmup=_number_or_text(args.warmup), n_jobs=args.jobs,
                       eval_fraction=args.eval_fraction, verbose=not args.quiet)
    print(result.format())
    failed = result.table[result.table["status"] != "ok"] if len(result.table) else result.table
    for row in failed.itertuples():
        print(f"{row.model} failed at interval {row.interval} ({row.context} context)",
              file=sys.stderr)
    if args.out:
        written = result.write(args.out)
        if not args.quiet:
            print(f"\nwrote {', '.join(sorted(written))} to {args.out}", file=sys.stderr)
    return 0 if len(failed) < len(result.table) or not len(result.table) else 1
