"""Arguments and runner for ``recinc compare``."""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import sys
from typing import Any

__all__ = ["DEFAULT_BUDGET_S", "add_compare_arguments", "parse_params", "run_compare"]

#: per-model time budget of the no-argument run, so that it always finishes quickly
DEFAULT_BUDGET_S = 10.0
_BASELINES = ("popularity", "newcomer-popularity", "decayed-popularity", "random")
#: the no-argument run: models that replay the synthetic stream in a few seconds
DEFAULT_MODELS = (*_BASELINES, "implicit-als", "lightfm", "river-baseline", "river-biasedmf",
                  "surprise-baseline")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--data-home``: what ``recinc compare`` and ``recinc freshness`` read."""
    parser.add_argument("--data", default="synthetic",
                        help="dataset name (see `recinc datasets`) or a CSV/Parquet/MovieLens "
                             "path (default: the built-in synthetic stream)")
    parser.add_argument("--data-home", default=None,
                        help="folder holding named datasets (default: $RECINC_DATA_HOME)")


def add_param_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """``--param NAME.KEY=VALUE`` (repeatable), with ``example`` in its help."""
    parser.add_argument("--param", action="append", default=[], metavar="NAME.KEY=VALUE",
                        help=f"a model parameter, e.g. --param {example} (repeatable; values "
                             "are Python literals, true/false/yes/no, none, or plain strings)")


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--models", default=None,
                        help="comma-separated model names (see `recinc models`), or 'all' for "
                             "every installed built-in model; default: the baselines and the "
                             "installed fast models ("
                             + ", ".join(DEFAULT_MODELS[len(_BASELINES):]) + "), "
                             f"each stopped after {DEFAULT_BUDGET_S:g} s")
    add_param_argument(parser, "decayed-popularity.half_life=500")
    parser.add_argument("--step", default="1000",
                        help="events per step (1: every event), or a duration like 1D "
                             "(default: 1000)")
    parser.add_argument("--warmup", default="0",
                        help="events (int), fraction (float < 1) or time learned before "
                             "scoring (default: 0)")
    parser.add_argument("--k", default="10", help="cut-off(s) K, e.g. 10 or 10,20 (default: 10)")
    parser.add_argument("--target", choices=("auto", "ranking", "rating"), default="auto",
                        help="what is scored (default: auto)")
    parser.add_argument("--keep-seen", action="store_true",
                        help="keep the items the user already had among the candidates")
    parser.add_argument("--clip", default=None, metavar="LOW,HIGH",
                        help="clip predicted ratings, e.g. 1,5")
    parser.add_argument("--rating-scale", default="auto", metavar="LOW,HIGH",
                        help="the scale of the ratings, e.g. 1,5; auto: inferred from the "
                             "warm-up or the first step; none: no check (default: auto)")
    parser.add_argument("--on-out-of-scale", choices=("error", "clip", "drop"),
                        default="error",
                        help="what a rating outside the scale does: stop with an error "
                             "naming it, clip it to the scale, or drop its event (default: "
                             "error)")
    parser.add_argument("--time-format", default=None, metavar="FORMAT",
                        help="the format of text timestamps, e.g. %%d/%%m/%%Y (default: "
                             "inferred from the first values; every value must match it)")
    parser.add_argument("--deletions", default=None, metavar="PATH",
                        help="a CSV or Parquet file of deletion requests (columns timestamp or "
                             "position, and user or item, one id per row): every model forgets "
                             "the ids at their time, and the report shows each request's cost "
                             "and recall before and after it (docs/forget.md); the data may "
                             "instead carry rows whose 'event' column is 'delete'")
    parser.add_argument("--window", type=int, default=None,
                        help="sliding-window size of the curves, in events")
    parser.add_argument("--jobs", type=int, default=None,
                        help="models replayed at once in worker processes (default: 1, or 2 "
                             "for the no-argument run)")
    parser.add_argument("--budget", type=float, default=None,
                        help="stop (and report as failed) a model whose replay runs longer than "
                             "this many seconds")
    parser.add_argument("--eval-fraction", type=float, default=1.0, metavar="F",
                        help="rank only a seeded fraction F (0 < F <= 1) of the scored events, "
                             "the same for every model; every event is still learned, and the "
                             "summary gives scored_events and a 95%% interval on recall@K "
                             "(default: 1, every event)")
    parser.add_argument("--eval-seed", type=int, default=0, metavar="N",
                        help="seed of the --eval-fraction draw (default: 0)")
    parser.add_argument("--context", choices=("learned", "fresh"), default="learned",
                        help="learned: score each event with what the model learned before its "
                             "step; fresh: also with the user's earlier events in the step, as "
                             "context (default: learned)")
    parser.add_argument("--cold-start", default="popularity",
                        help="how every model answers unknown users: popularity, newcomer, or "
                             "own (each model's own policy); a model given its own with "
                             "--param NAME.cold_start=... keeps it (default: popularity)")
    parser.add_argument("--seed", default="0",
                        help="seed of every model not given one (an integer, or none to leave "
                             "them unseeded; default: 0)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="BLAS/OpenMP/torch threads per model during the replay (default: "
                             "1 for steps under 10,000 events, else the model's share of the "
                             "cores)")
    parser.add_argument("--device", default="auto",
                        help="where factor models are scored: auto (a CUDA GPU where there is "
                             "one, else numpy), numpy, or a torch device such as cuda "
                             "(default: auto)")
    parser.add_argument("--checkpoint-dir", default=None,
                        help="save models and replay state here every --checkpoint-every steps")
    parser.add_argument("--checkpoint-every", type=int, default=0,
                        help="steps between checkpoints (default: only at the end)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoints in --checkpoint-dir")
    parser.add_argument("--out", default=None,
                        help="write summary.csv, summary.json, curves.csv, report.md and plots "
                             "to this folder; summary.csv gets each model's row as soon as it "
                             "ends and status.json says which are running, so a killed or "
                             "interrupted run keeps the models that finished")
    parser.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars; print only the summary table")


_WORDS = {"true": True, "yes": True, "false": False, "no": False, "none": None, "null": None}


def parse_value(text: str) -> Any:
    """A ``--param`` value: a Python literal (``500``, ``0.1``, ``"warp"``, ``(1, 5)``,
    ``True``), one of true/false/yes/no/none (any case), or else the text itself.

    >>> [parse_value(v) for v in ["500", "false", "Yes", "none", "warp", "(1, 5)"]]
    [500, False, True, None, 'warp', (1, 5)]
    """
    word = text.strip().lower()
    if word in _WORDS:
        return _WORDS[word]
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _number_or_text(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_params(items: list[str], names: list[str]) -> dict[str, dict[str, Any]]:
    """``["model.key=value", ...]`` -> ``{model: {key: value}}``; values as
    :func:`parse_value` reads them (Python literals, true/false/yes/no/none, else strings).

    >>> parse_params(["decayed-popularity.half_life=500", "random.seed=3"],
    ...              ["decayed-popularity", "random"])
    {'decayed-popularity': {'half_life': 500}, 'random': {'seed': 3}}
    """
    params: dict[str, dict[str, Any]] = {}
    for item in items:
        head, eq, raw = item.partition("=")
        name, dot, key = head.rpartition(".")
        if not eq or not dot or not name or not key:
            raise ValueError(f"--param {item!r}: expected NAME.KEY=VALUE, e.g. "
                             "decayed-popularity.half_life=500")
        if name not in names:
            raise ValueError(f"--param {item!r} names model {name!r}, which is not among the "
                             f"compared models ({', '.join(names)})")
        params.setdefault(name, {})[key] = parse_value(raw)
    return params


def _rating_scale(text: str) -> tuple[float, float] | str | None:
    """``--rating-scale``: "auto", "none" or LOW,HIGH."""
    word = text.strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else "auto"
    low, comma, high = text.partition(",")
    try:
        scale = (float(low), float(high))
    except ValueError:
        scale = None
    if not comma or scale is None or not scale[0] < scale[1]:
        raise ValueError(f"--rating-scale must be LOW,HIGH with LOW < HIGH (such as 1,5), auto "
                         f"or none, got {text!r}")
    return scale


def _cutoffs(text: str) -> tuple[int, ...]:
    """``--k``: one or more positive integers, comma-separated."""
    try:
        ks = tuple(int(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise ValueError(f"--k must be one or more positive integers such as 10 or 10,20, got "
                         f"{text!r}")
    return ks


def _installed_models(only: tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The built-in models (of ``only``, if given) whose library is installed; and the others."""
    from ..registry import list_models

    table = list_models()
    chosen, skipped = [], []
    for row in table.itertuples():
        if row.source != "built-in" or (only is not None and row.name not in only):
            continue
        if row.installed:
            chosen.append(row.name)
        else:
            skipped.append(f"{row.name} (needs the {row.extra!r} extra)")
    return chosen, skipped


def _read_deletions(path: str | None) -> Any:
    """``--deletions``: a CSV (or Parquet) file of deletion requests, or None."""
    if path is None:
        return None
    import pandas as pd

    if not os.path.exists(path):
        raise FileNotFoundError(f"--deletions {path}: no such file")
    if path.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    return pd.read_csv(path)


def run_compare(args: argparse.Namespace) -> int:
    from .report import folder_lock

    if args.window is not None and args.window < 1:
        raise ValueError(f"--window must be >= 1 event, got {args.window}")
    if args.budget is not None and not 0 < args.budget < float("inf"):
        raise ValueError(f"--budget must be a positive number of seconds, got {args.budget:g}")
    if args.jobs is not None and args.jobs < 1 and args.jobs != -1:
        raise ValueError(f"--jobs must be a positive integer or -1 (every core), got "
                         f"{args.jobs}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0 steps, got {args.checkpoint_every}")
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir, the folder to resume from")
    if not 0 < args.eval_fraction <= 1:  # (False for NaN too)
        raise ValueError(f"--eval-fraction must be in (0, 1], the fraction of the scored "
                         f"events that is ranked, got {args.eval_fraction:g}")
    cold_start = None if args.cold_start == "own" else args.cold_start
    if cold_start not in (None, "popularity", "newcomer"):
        raise ValueError(f"--cold-start must be popularity, newcomer or own, got "
                         f"{args.cold_start!r}")
    if args.seed.strip().lower() == "none":
        seed = None
    else:
        try:
            seed = int(args.seed)
        except ValueError:
            raise ValueError(f"--seed must be a non-negative integer or none, got "
                             f"{args.seed!r}") from None
        if seed < 0:
            raise ValueError(f"--seed must be a non-negative integer or none, got {seed}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    if args.eval_seed < 0:
        raise ValueError(f"--eval-seed must be a non-negative integer, got {args.eval_seed}")
    rating_scale = _rating_scale(args.rating_scale)
    ks = _cutoffs(args.k)
    # the folder is this run's from the start to the report: a second run is refused at once
    with contextlib.nullcontext() if args.out is None else folder_lock(args.out):
        return _run(args, ks, cold_start, seed, rating_scale)


def _run(args: argparse.Namespace, ks: tuple[int, ...], cold_start: str | None,
         seed: int | None, rating_scale: Any) -> int:
    from ..data import load_dataset
    from ..registry import make
    from .comparison import CompareInterrupted, compare
    from .report import deletions_text, format_summary, protocol_text
    from .stream import Stream

    default_run = args.models is None
    if default_run or args.models.strip() == "all":
        names, skipped = _installed_models(DEFAULT_MODELS if default_run else None)
    else:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        skipped = []
        if not names:
            raise ValueError("--models is empty: give comma-separated model names")
        if len(set(names)) != len(names):
            raise ValueError(f"--models names a model twice: {args.models}")
    params = parse_params(args.param, names)
    models = {}
    for name in names:
        try:
            models[name] = make(name, **params.get(name, {}))
            models[name].reset()  # a bad parameter is refused now, not in the replay
        except ImportError as exc:
            if args.models is not None and args.models.strip() != "all":
                raise
            skipped.append(f"{name} ({exc})")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"model {name!r}: {exc}") from exc
    if args.data_home:
        os.environ["RECINC_DATA_HOME"] = args.data_home
    frame = load_dataset(args.data, time_format=args.time_format)
    step = _number_or_text(args.step)
    warmup = _number_or_text(args.warmup)
    clip = None
    if args.clip:
        low, _, high = args.clip.partition(",")
        try:
            clip = (float(low), float(high))
        except ValueError:
            raise ValueError(f"--clip {args.clip!r}: expected LOW,HIGH such as 1,5") from None
    stream = Stream(frame, step=step, warmup=warmup, deletions=_read_deletions(args.deletions))
    jobs = args.jobs if args.jobs is not None else (min(2, os.cpu_count() or 1)
                                                    if default_run else 1)
    budget = args.budget if args.budget is not None else (DEFAULT_BUDGET_S if default_run
                                                          else None)
    if not args.quiet:
        print(f"{args.data}: {stream!r}", file=sys.stderr)
        if skipped:
            print("not run: " + "; ".join(skipped), file=sys.stderr)
    try:
        result = compare(models, stream, ks=ks, target=args.target,
                         exclude_seen=not args.keep_seen, clip=clip, n_jobs=jobs,
                         progress=not args.quiet, checkpoint_dir=args.checkpoint_dir,
                         checkpoint_every=args.checkpoint_every, resume=args.resume,
                         time_budget_s=budget, eval_fraction=args.eval_fraction,
                         eval_seed=args.eval_seed, out=args.out, device=args.device,
                         threads=args.threads, cold_start=cold_start, seed=seed,
                         context=args.context, rating_scale=rating_scale,
                         on_out_of_scale=args.on_out_of_scale)
    except CompareInterrupted as exc:  # Ctrl-C: report the models that ended, then say so
        result = exc.result
    if not args.quiet:
        print(protocol_text(result))
        print()
    print(format_summary(result))
    if stream.deletions is not None and result.records:
        print(f"\ndeletion requests ({len(stream.deletions):,}): the cost of forget and "
              f"recall@{result.k} before and after them")
        print(deletions_text(result, result.deletions(window=args.window)))
    for name, tb in result.failures.items():
        verb = "diverged" if name in result.diverged else "failed"
        print(f"\n{name} {verb}: {tb.strip().splitlines()[-1]}", file=sys.stderr)
    if result.unfinished:
        print(f"\ninterrupted: {', '.join(result.unfinished)} did not finish",
              file=sys.stderr)
    if args.out:
        written = result.write(args.out, plots=not args.no_plots, window=args.window)
        if not args.quiet:
            print(f"\nwrote {', '.join(sorted(written))} to {args.out}", file=sys.stderr)
    if result.unfinished:
        return 130  # the shell's code for a run stopped by Ctrl-C (SIGINT)
    return 0 if len(result.failures) < len(models) else 1
