"""tune_model(): Ray Tune over one model's parameters on the first part of a replayed stream,
reported on the rest."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from ..evaluation import CompareResult, Stream, compare
from ..evaluation.report import write_atomic
from ..registry import get_spec
from .spec import _takes_any, tomllib

__all__ = ["TuneResult", "parse_space", "tune_model"]

_KINDS = {"choice": None, "uniform": 2, "loguniform": 2, "randint": 2, "lograndint": 2}


def parse_space(space: str | Path | Mapping[str, Any]) -> dict[str, tuple]:
    """A search space: ``{parameter: (kind, *arguments)}`` with kind ``choice`` (values),
    ``uniform``/``loguniform`` (low, high), ``randint``/``lograndint`` (low, high: high
    excluded, as in Ray Tune) or ``fixed`` (value).

    ``space`` is a mapping, a TOML file (a ``[space]`` table, or keys at the top), or inline
    text ``"key=expr; key=expr"``. A list is a choice, ``"loguniform(1e-3, 1)"`` (a string in
    TOML) a distribution, anything else a fixed value.

    >>> space = parse_space("factors=[16, 32]; regularization=loguniform(1e-3, 1); iterations=5")
    >>> space["factors"], space["regularization"], space["iterations"]
    (('choice', 16, 32), ('loguniform', 0.001, 1), ('fixed', 5))
    """
    if isinstance(space, Path) or (isinstance(space, str) and space.endswith(".toml")):
        path = Path(space)
        if not path.exists():
            raise FileNotFoundError(f"search space file {path} does not exist")
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        space = data.get("space", data)
    if isinstance(space, str):
        items = {}
        for part in (p.strip() for p in space.replace("\n", ";").split(";")):
            if not part:
                continue
            key, eq, expr = part.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"search space {part!r}: expected KEY=EXPR, e.g. "
                                 "regularization=loguniform(1e-3, 1)")
            items[key.strip()] = expr.strip()
        space = items
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"the search space is empty or not a table: {space!r}")
    return {str(key): _domain(str(key), value) for key, value in space.items()}


def _domain(key: str, value: Any) -> tuple:
    if isinstance(value, str):
        try:
            node = ast.parse(value, mode="eval").body
        except SyntaxError:
            return ("fixed", value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kind = node.func.id
            if kind not in _KINDS:
                raise ValueError(f"search space {key}: unknown distribution {kind!r}; "
                                 f"expected one of {', '.join(_KINDS)}")
            try:
                args = [ast.literal_eval(a) for a in node.args]
            except ValueError:
                raise ValueError(f"search space {key}: {value!r}: arguments must be "
                                 "numbers or strings") from None
            return _checked(key, kind, args)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return ("fixed", value)
    if isinstance(value, (list, tuple)):
        return _checked(key, "choice", list(value))
    return ("fixed", value)


def _checked(key: str, kind: str, args: list) -> tuple:
    if kind == "choice":
        if not args:
            raise ValueError(f"search space {key}: a choice needs at least one value")
        return ("choice", *args)
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                 for a in args) or not args[0] < args[1]:
        raise ValueError(f"search space {key}: {kind} takes (low, high) numbers with "
                         f"low < high, got {args}")
    if kind.startswith("log") and args[0] <= 0:
        raise ValueError(f"search space {key}: {kind} needs low > 0, got {args[0]}")
    if kind.endswith("randint") and not all(isinstance(a, int) for a in args):
        raise ValueError(f"search space {key}: {kind} takes integers, got {args}")
    return (kind, *args)


def _ray_domain(domain: tuple) -> Any:
    from ray import tune

    kind, *args = domain
    return tune.choice(args) if kind == "choice" else getattr(tune, kind)(*args)


def _inside(domain: tuple, value: Any) -> bool:
    kind, *args = domain
    if kind == "choice":
        return value in args
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return False
    if kind.endswith("randint"):
        return float(value).is_integer() and args[0] <= value < args[1]
    return args[0] <= value <= args[1]


@dataclass
class TuneResult:
    """What :func:`tune_model` returns (and ``recinc tune`` prints and writes).

    Attributes
    ----------
    best_params, defaults : dict
        The best setting found on the tuning part, and the model's defaults for the same
        parameters.
    trials : pandas.DataFrame
        One row per trial: its parameters, ``rungs`` reached, the metric at its last rung,
        the events it was measured on, and ``status`` (``completed``, ``stopped early``,
        ``error``).
    tuning : pandas.DataFrame
        The metric of the defaults and of the best setting over the whole tuning part.
    holdout : CompareResult or None
        Defaults against the best setting on the rest of the stream (None with
        ``tune_until=1``).
    """

    model: str
    metric: str
    mode: str
    space: dict[str, tuple]
    best_params: dict[str, Any]
    defaults: dict[str, Any]
    trials: pd.DataFrame
    tuning: pd.DataFrame
    holdout: CompareResult | None
    parts: dict[str, Any] = field(default_factory=dict)
    search: str = ""

    @property
    def stopped_early(self) -> int:
        return int((self.trials["status"] == "stopped early").sum())

    def text(self) -> str:
        p = self.parts
        status = self.trials["status"].value_counts()
        lines = [
            f"tune {self.model} on {p['data']}: {p['events']:,} events in timestamp order, "
            f"step {p['step']}",
            f"tuned on events 1-{p['split']:,} (the first {p['tune_until']:.0%}): "
            f"{len(self.trials)} trials ({self.search}), ASHA over {len(p['rungs'])} rungs "
            f"(the running {self.metric} after "
            + ", ".join(f"{e:,}" for e in p["rungs"]) + " scored events): "
            + ", ".join(f"{n} {s}" for s, n in status.items()),
        ]
        if self.holdout is not None:
            lines.append(f"reported on events {p['split'] + 1:,}-{p['events']:,} (the rest): "
                         f"the first {p['split']:,} learned with fit as a warm-up, then each "
                         "step scored before it is learned; none of these events was seen "
                         "while tuning")
        else:
            lines.append("tune_until=1: every event was used for tuning; nothing is reported "
                         "out of sample")
        best = ", ".join(f"{k}={v!r}" for k, v in self.best_params.items())
        lines += ["", f"best: {best}", "",
                  "on the tuning part (in sample):",
                  tabulate(self.tuning, headers="keys", tablefmt="simple", showindex=False,
                           floatfmt=".4g")]
        if self.holdout is not None:
            summary = self.holdout.summary
            cols = [c for c in ("model", self.metric, f"ndcg@{self.holdout.k}", "rmse",
                                "update_us_per_event", "events_per_s")
                    if c in summary and summary[c].notna().any()]
            lines += ["", "on the rest (out of sample):",
                      tabulate(summary[cols], headers="keys", tablefmt="simple",
                               showindex=False, floatfmt=".4g")]
            paired = self.holdout.paired() if len(self.holdout.records) == 2 else None
            if paired is not None and len(paired):
                row = paired.iloc[0]
                lines.append(
                    f"paired on the same events: {row['model_a']} - {row['model_b']} = "
                    f"{row['diff']:+.4g} (95% interval {row['ci_low']:+.4g} to "
                    f"{row['ci_high']:+.4g}), McNemar p = {row['mcnemar_p']:.2g}")
        return "\n".join(lines)

    def write(self, folder: str | Path) -> list[str]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "trials.csv", self.trials.to_csv(index=False))
        write_atomic(folder / "tuning.csv", self.tuning.to_csv(index=False))
        names = ["trials.csv", "tuning.csv", "tune.md"]
        if self.holdout is not None:
            write_atomic(folder / "holdout.csv", self.holdout.summary.to_csv(index=False))
            names.append("holdout.csv")
        write_atomic(folder / "tune.md", "# Tuning\n\n```\n" + self.text() + "\n```\n\n"
                     + tabulate(self.trials, headers="keys", tablefmt="github",
                                showindex=False, floatfmt=".4g") + "\n")
        return names


def _trial(config: dict[str, Any], *, name: str, build: Any, fixed: dict[str, Any],
           streams: list[Stream], options: dict[str, Any], metric: str) -> None:
    """One Tune trial: the running metric after each rung, the replay of a longer prefix of
    the tuning part each time (rung r's prefix ends on a step boundary, so its value is the
    running metric of one replay of the whole part at that step)."""
    from ray import tune

    for rung, stream in enumerate(streams, start=1):
        model = build(**{**fixed, **config})
        res = compare({name: model}, stream, n_jobs=1, **options)
        if res.failures:
            raise RuntimeError(res.failures[name].strip().splitlines()[-1])
        row = res.summary.iloc[0]
        tune.report({metric: float(row[metric]), "events": int(row["events"]), "rung": rung,
                     "replay_s": float(row["wall_s"])})


def _rung_streams(frame: pd.DataFrame, step: Any, n_warmup: int, rungs: int
                  ) -> list[Stream]:
    """Prefixes of the tuning part, doubling, each ending on one of its step boundaries."""
    whole = Stream(frame, step=step, warmup=n_warmup)
    scored = whole.n_scored
    ends: list[int] = []
    for r in range(rungs):
        want = n_warmup + math.ceil(scored / 2 ** (rungs - 1 - r))
        end = int(whole.bounds[np.searchsorted(whole.bounds, want)])
        if not ends or end > ends[-1]:
            ends.append(end)
    return [whole if end == len(frame) else Stream(frame.iloc[:end], step=step,
                                                   warmup=n_warmup) for end in ends]


def _defaults(build: Any, spec_defaults: dict[str, Any], keys: Any) -> dict[str, Any]:
    try:
        parameters = inspect.signature(build).parameters
    except (TypeError, ValueError):
        parameters = {}
    out = {}
    for key in keys:
        if key in spec_defaults:
            out[key] = spec_defaults[key]
        elif key in parameters and parameters[key].default is not inspect.Parameter.empty:
            out[key] = parameters[key].default
    return out


def tune_model(model: str, space: str | Path | Mapping[str, Any],
               data: str | pd.DataFrame = "synthetic", *, params: Mapping[str, Any] | None = None,
               step: int | str = 1000, warmup: int | float | str = 0, k: int = 10,
               target: str = "auto", exclude_seen: bool = True, metric: str | None = None,
               tune_until: float = 0.5, num_samples: int = 16, rungs: int = 4,
               search: str = "auto", seed: int = 0, budget: float | None = None,
               address: str | None = None, jobs: int | None = None,
               out: str | Path | None = None, progress: bool = True) -> TuneResult:
    """Tune one registered model's parameters with Ray Tune on a replay, and report the best
    setting against the defaults on the part of the stream not used for tuning.

    The stream (in timestamp order) is split at ``tune_until``: trials replay the first part
    (warm-up ``warmup``, steps of ``step`` events, top-``k``), reporting the running
    ``metric`` (``recall@k``, or ``rmse`` with ``target="rating"``) after each of ``rungs``
    doubling prefixes of it, so ASHA stops poor settings after a short prefix. The search is
    Optuna's through Ray Tune where Optuna is installed, else random (``search="optuna"`` or
    ``"random"`` to choose); the model's defaults are the first trial where they lie in the
    space, and they stay the best unless a trial beats them over the whole tuning part. Then
    defaults and best setting are compared on the rest of the stream: the first
    part learned with ``fit`` as a warm-up, then replayed step by step as in ``compare``.

    ``params`` fixes other parameters; a model with a ``seed`` gets ``seed`` unless
    ``params`` gives one. ``address``/``jobs``: as for :func:`run_grid` (Tune needs Ray).
    """
    from .runner import connect_ray, ray_installed

    if not ray_installed():
        raise ImportError("tuning runs on Ray Tune, which is not installed: "
                          "pip install 'recinc-plugins[ray]'")
    if isinstance(tune_until, bool) or not 0 < tune_until <= 1:
        raise ValueError(f"tune_until must be in (0, 1], the fraction of the stream tuned on, "
                         f"got {tune_until!r}")
    if isinstance(rungs, bool) or not isinstance(rungs, int) or rungs < 1:
        raise ValueError(f"rungs must be a positive integer, got {rungs!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if search not in ("auto", "optuna", "random"):
        raise ValueError(f"search must be 'auto', 'optuna' or 'random', got {search!r}")
    optuna = importlib.util.find_spec("optuna") is not None
    if search == "optuna" and not optuna:
        raise ImportError("search='optuna' needs Optuna: pip install optuna")
    use_optuna = search == "optuna" or (search == "auto" and optuna)
    domains = parse_space(space)
    spec = get_spec(model)
    build = spec.load()
    try:
        accepted = inspect.signature(build).parameters
    except (TypeError, ValueError):
        accepted = {}
    names = [n for n, p in accepted.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for key in [*domains, *(params or {})]:
        if accepted and key not in names and not _takes_any(build, accepted):
            raise ValueError(f"model {model!r} has no parameter {key!r}; its parameters: "
                             f"{', '.join(names)}")
    fixed = {**spec.defaults, **(params or {})}
    fixed.update({key: d[1] for key, d in domains.items() if d[0] == "fixed"})
    if "seed" in accepted and "seed" not in fixed:
        fixed["seed"] = seed
    if "num_threads" in accepted and "num_threads" not in fixed:
        fixed["num_threads"] = 1  # a trial has one core
    tunable = {key: d for key, d in domains.items() if d[0] != "fixed"}
    if not tunable:
        raise ValueError("the search space has no parameter to tune (every one is fixed)")
    metric = metric or ("rmse" if target == "rating" else f"recall@{k}")
    mode = "min" if metric in ("rmse", "mae") else "max"

    if isinstance(data, pd.DataFrame):
        frame, label = data, "the given frame"
    else:
        from ..data import load_dataset

        frame, label = load_dataset(data), str(data)
    full = Stream(frame, step=step, warmup=0)  # validated, in replay order
    if full.deletions is not None:
        raise ValueError(
            f"{label} carries {len(full.deletions)} deletion request(s) (rows whose 'event' is "
            "'delete'): tuning replays parts of the stream and would drop them; tune on the "
            "events without them, then compare with the requests (recinc compare "
            "--deletions)")
    ordered = full.frame
    split = round(tune_until * len(ordered))
    part = ordered.iloc[:split]
    tuning_stream = Stream(part, step=step, warmup=warmup)
    streams = _rung_streams(part, step, tuning_stream.n_warmup, rungs)
    options = {"ks": (k,), "target": target, "exclude_seen": exclude_seen,
               "time_budget_s": budget, "threads": 1}

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    defaults = _defaults(build, spec.defaults, tunable)
    start = ([dict(defaults)] if set(defaults) == set(tunable)
             and all(_inside(tunable[key], v) for key, v in defaults.items()) else [])
    if use_optuna:
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(points_to_evaluate=start or None, seed=seed)
        search_text = "Optuna's TPE through Ray Tune"
    else:
        from ray.tune.search import BasicVariantGenerator

        searcher = BasicVariantGenerator(points_to_evaluate=start or None, random_state=seed)
        search_text = "random search" + ("" if search == "random" else
                                         "; Optuna is not installed")
    if start:
        search_text += ", the defaults first"
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=len(streams),
                              grace_period=1, reduction_factor=2)
    trainable = tune.with_resources(
        tune.with_parameters(_trial, name=model, build=build, fixed=fixed, streams=streams,
                             options=options, metric=metric),
        {"cpu": 1})
    started, where = connect_ray(address, jobs)
    tmp = None
    try:
        if out is None:
            tmp = tempfile.TemporaryDirectory(prefix="recinc-tune-")
            storage = Path(tmp.name)
        else:
            storage = Path(out).resolve() / "ray-tune"
        if progress:
            print(f"tuning {model} {where}: {num_samples} trials on {len(part):,} events",
                  file=sys.stderr)
        tuner = tune.Tuner(
            trainable,
            param_space={key: _ray_domain(d) for key, d in tunable.items()},
            tune_config=tune.TuneConfig(metric=metric, mode=mode, search_alg=searcher,
                                        scheduler=scheduler, num_samples=num_samples,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=f"tune-{model}", storage_path=str(storage),
                                      verbose=1 if progress else 0),
        )
        grid = tuner.fit()
        trials = _trials(grid, tunable, metric, len(streams))
    finally:
        if tmp is not None:
            tmp.cleanup()
        if started:
            import ray

            ray.shutdown()
    done = trials[trials["status"] == "completed"].dropna(subset=[metric])
    if done.empty:
        raise RuntimeError(f"no trial completed every rung; errors: "
                           f"{trials['error'].dropna().tolist()[:3]}")
    top = done.sort_values(metric, ascending=mode == "min", kind="stable").iloc[0]
    best = {key: _plain(top[key]) for key in tunable}
    default_row = done[[all(_same(r[key], defaults.get(key)) for key in tunable)
                        for _, r in done.iterrows()]] if start else done.iloc[0:0]
    if len(default_row):
        default_value = float(default_row.iloc[0][metric])
    else:  # the defaults were not a trial, or were stopped early: replay them here
        res = compare({"defaults": build(**{**fixed, **defaults})}, tuning_stream, n_jobs=1,
                      **options)
        default_value = float(res.summary.iloc[0].get(metric, np.nan))
    best_value = float(top[metric])
    beaten = best_value > default_value if mode == "max" else best_value < default_value
    if not beaten and set(defaults) == set(tunable) and np.isfinite(default_value):
        best, best_value = dict(defaults), default_value  # no trial did better: keep them
    tuning = pd.DataFrame([
        {"setting": "defaults", **{k: defaults.get(k) for k in tunable}, metric: default_value},
        {"setting": "best", **best, metric: best_value}])
    holdout = None
    if split < len(ordered):
        rest = Stream(ordered, step=step, warmup=split)
        models = {"defaults": build(**{**fixed, **defaults})}
        if any(not _same(best[key], defaults.get(key)) for key in tunable):
            models["tuned"] = build(**{**fixed, **best})
        holdout = compare(models, rest, n_jobs=min(len(models), jobs or 2), **options)
    result = TuneResult(model, metric, mode, domains, best, defaults, trials, tuning, holdout,
                        parts={"data": label, "events": len(ordered), "split": split,
                               "tune_until": tune_until, "step": step,
                               "rungs": [s.n_scored for s in streams]},
                        search=search_text)
    if out is not None:
        result.write(out)
    return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(np.isclose(a, b)) if isinstance(a, (int, float, np.number)) else a == b
    except TypeError:
        return a == b


def _trials(grid: Any, tunable: dict[str, tuple], metric: str, max_t: int) -> pd.DataFrame:
    rows = []
    for i, result in enumerate(grid):
        config = result.config or {}
        metrics = result.metrics or {}
        reached = int(metrics.get("training_iteration", 0) or 0)
        status = ("error" if result.error is not None else
                  "completed" if reached >= max_t else "stopped early")
        rows.append({"trial": i, **{k: _plain(config.get(k)) for k in tunable},
                     "rungs": reached, metric: metrics.get(metric, np.nan),
                     "events": metrics.get("events", np.nan), "status": status,
                     "error": None if result.error is None
                     else str(result.error).strip().splitlines()[-1]})
    return pd.DataFrame(rows)
