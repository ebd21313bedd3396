"""``recinc grid SPEC`` and ``recinc tune MODEL --space SPACE``."""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any

__all__ = ["add_grid_commands"]


def add_grid_commands(sub: Any) -> None:
    """Add the ``grid`` and ``tune`` subcommands to ``recinc``'s subparsers."""
    grid = sub.add_parser(
        "grid", help="run a spec's models x parameters x datasets x steps x seeds on Ray",
        description="Run every cell of a TOML grid spec (one compare of one model setting on "
                    "one dataset, step size and seed) as Ray tasks: an embedded local Ray by "
                    "default, a cluster with --address or RAY_ADDRESS; without Ray, in local "
                    "worker processes. Rows go to OUT/cells.csv as cells end; OUT/report.md "
                    "and OUT/table.csv give the mean and 95%% interval over seeds.")
    grid.add_argument("spec", help="the grid spec (TOML; see docs/grid.md)")
    grid.add_argument("--out", default=None,
                      help="output folder (default: the spec's out)")
    grid.add_argument("--address", default=None,
                      help="the Ray cluster to run on, e.g. 10.0.0.5:6379 or auto (default: "
                           "$RAY_ADDRESS, else an embedded local Ray)")
    grid.add_argument("--local", action="store_true",
                      help="run in local worker processes, not on Ray")
    grid.add_argument("--jobs", type=int, default=None,
                      help="cores of the embedded Ray, or local worker processes (default: "
                           "every core)")
    grid.add_argument("--resume", action="store_true",
                      help="run only the cells that OUT/cells.csv has no row for")
    grid.add_argument("--retry-failed", action="store_true",
                      help="with --resume, also rerun the cells whose row says failed")
    grid.add_argument("--overwrite", action="store_true",
                      help="start over when OUT/cells.csv exists")
    grid.add_argument("--no-plots", action="store_true", help="do not draw the PNG plot")
    grid.add_argument("--quiet", action="store_true", help="no progress bar")
    grid.set_defaults(func=_cmd_grid)

    tune = sub.add_parser(
        "tune", help="tune one model's parameters with Ray Tune on a replay",
        description="Ray Tune over one model's parameters: trials replay the first part of "
                    "the stream (--tune-until) and report the running recall at doubling "
                    "prefixes, so ASHA stops poor settings early; the best setting and the "
                    "defaults are then compared on the rest of the stream.")
    tune.add_argument("model", help="a registered model (see `recinc models`)")
    tune.add_argument("--space", required=True, action="append",
                      help="the search space: a TOML file, or KEY=EXPR; KEY=EXPR with EXPR a "
                           "list (a choice), uniform(a, b), loguniform(a, b), randint(a, b), "
                           "lograndint(a, b) or a fixed value (repeatable)")
    tune.add_argument("--data", default="synthetic",
                      help="dataset name or file (default: the built-in synthetic stream)")
    tune.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                      help="a fixed model parameter (repeatable)")
    tune.add_argument("--step", default="1000", help="events per step, or a duration like 1D")
    tune.add_argument("--warmup", default="0",
                      help="events, fraction or time of the tuning part learned before scoring")
    tune.add_argument("--k", type=int, default=10, help="the cut-off K (default: 10)")
    tune.add_argument("--target", choices=("auto", "ranking", "rating"), default="auto")
    tune.add_argument("--metric", default=None,
                      help="what is tuned (default: recall@K, or rmse with --target rating)")
    tune.add_argument("--tune-until", type=float, default=0.5,
                      help="the fraction of the stream tuned on; the rest is for the report "
                           "(default: 0.5)")
    tune.add_argument("--samples", type=int, default=16, help="trials (default: 16)")
    tune.add_argument("--rungs", type=int, default=4,
                      help="doubling prefixes of the tuning part each trial reports on, the "
                           "last the whole part (default: 4)")
    tune.add_argument("--search", choices=("auto", "optuna", "random"), default="auto",
                      help="auto: Optuna through Ray Tune where installed, else random")
    tune.add_argument("--seed", type=int, default=0,
                      help="seed of the search and of models that take one (default: 0)")
    tune.add_argument("--budget", type=float, default=None,
                      help="seconds one replay may run before its trial fails")
    tune.add_argument("--address", default=None, help="the Ray cluster to run on")
    tune.add_argument("--jobs", type=int, default=None, help="cores of the embedded Ray")
    tune.add_argument("--out", default=None,
                      help="write trials.csv, tuning.csv, holdout.csv and tune.md here")
    tune.add_argument("--quiet", action="store_true", help="print only the result")
    tune.set_defaults(func=_cmd_tune)


def _cmd_grid(args: argparse.Namespace) -> int:
    from .grid import run_grid

    if args.retry_failed and not args.resume:
        raise ValueError("--retry-failed goes with --resume")
    try:
        result = run_grid(args.spec, args.out, address=args.address, local=args.local,
                          jobs=args.jobs, resume=args.resume, retry_failed=args.retry_failed,
                          overwrite=args.overwrite, progress=not args.quiet,
                          plots=not args.no_plots)
    except ConnectionError as exc:
        print(f"recinc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recinc grid: interrupted; the cells that ended are in cells.csv: run again "
              "with --resume for the others", file=sys.stderr)
        return 130
    best = result.best
    if len(best):
        from tabulate import tabulate

        metric = result.spec.protocol.metric
        cols = [c for c in ("dataset", "step", "model", "params", "seeds", metric,
                            f"{metric}_lo", f"{metric}_hi", "events_per_s") if c in best]
        shown = best[cols].astype(object)
        print(tabulate(shown.where(shown.notna(), None), headers="keys", tablefmt="simple",
                       showindex=False, floatfmt=".4g", missingval=""))
    print(f"\n{len(result.cells)} cells ({len(result.failed)} failed; this run: "
          f"{len(result.ran)} {result.where}, already done: {len(result.skipped)}); report: "
          f"{result.out / 'report.md'}", file=sys.stderr)
    return 0 if len(result.failed) < max(len(result.cells), 1) else 1


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _cmd_tune(args: argparse.Namespace) -> int:
    from .tune import tune_model

    params = {}
    for item in args.param:
        key, eq, raw = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = _value(raw)
    space: Any = args.space[0] if len(args.space) == 1 else "; ".join(args.space)
    try:
        result = tune_model(args.model, space, args.data, params=params,
                            step=_value(args.step), warmup=_value(args.warmup), k=args.k,
                            target=args.target, metric=args.metric,
                            tune_until=args.tune_until, num_samples=args.samples,
                            rungs=args.rungs, search=args.search, seed=args.seed,
                            budget=args.budget, address=args.address, jobs=args.jobs,
                            out=args.out, progress=not args.quiet)
    except ConnectionError as exc:
        print(f"recinc: error: {exc}", file=sys.stderr)
        return 2
    print(result.text())
    return 0
