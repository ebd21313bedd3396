"""Grid specs: a TOML file naming datasets, step sizes, models with parameter grids, seeds and
the protocol; every combination is one :class:`Cell`."""

from __future__ import annotations

import difflib
import hashlib
import inspect
import itertools
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Cell", "Dataset", "GridSpec", "ModelGrid", "Protocol", "SpecError", "load_spec"]

_TOP = ("out", "datasets", "steps", "seeds", "protocol", "models")
_PROTOCOL = ("k", "warmup", "target", "exclude_seen", "clip", "eval_fraction", "eval_seed",
             "budget", "threads", "window")
_TARGETS = ("auto", "ranking", "rating")
_SOURCES = ("name", "path", "synthetic")


class SpecError(ValueError):
    """A grid spec that cannot be run; the message names the file and the bad key."""


@dataclass(frozen=True)
class Dataset:
    """Where a dataset's events come from: a named dataset, a file, or a synthetic stream."""

    label: str
    source: str  # "name", "path" or "synthetic"
    value: str | None = None  # the dataset name or the path
    options: tuple[tuple[str, Any], ...] = ()  # synthetic_stream's (or the reader's) arguments

    def load(self) -> pd.DataFrame:
        from ..data import load_dataset, synthetic_stream

        options = dict(self.options)
        if self.source == "synthetic":
            return synthetic_stream(**options)
        return load_dataset(self.value, **options)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "value": self.value, "options": dict(self.options)}


@dataclass(frozen=True)
class Protocol:
    """The replay settings shared by every cell (``compare``'s arguments and the warm-up)."""

    ks: tuple[int, ...] = (10,)
    warmup: int | float | str = 0
    target: str = "auto"
    exclude_seen: bool = True
    clip: tuple[float, float] | None = None
    eval_fraction: float = 1.0
    eval_seed: int = 0
    budget: float | None = None
    threads: int = 1
    window: int | None = None

    @property
    def metric(self) -> str:
        """The headline column: recall at the first K, or RMSE for a rating-only grid."""
        return "rmse" if self.target == "rating" else f"recall@{self.ks[0]}"

    @property
    def higher_is_better(self) -> bool:
        return self.target != "rating"

    def describe(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "warmup": self.warmup, "target": self.target,
                "exclude_seen": self.exclude_seen,
                "clip": None if self.clip is None else list(self.clip),
                "eval_fraction": self.eval_fraction, "eval_seed": self.eval_seed,
                "budget": self.budget, "threads": self.threads}


@dataclass(frozen=True)
class ModelGrid:
    """One ``[models.LABEL]`` table: a registered model and its parameter grid."""

    label: str
    name: str  # the registry name
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # parameter -> the values to try
    seeded: bool = True  # whether the model takes a ``seed`` (else it runs once per seed set)

    def settings(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, in the spec's order."""
        keys = [key for key, _ in self.grid]
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(values for _, values in self.grid))]


@dataclass(frozen=True)
class Cell:
    """One replay: one model with one setting on one (dataset, step, seed)."""

    dataset: str
    step: int | str
    model: str  # the label of the model's table
    name: str  # the registry name
    params: tuple[tuple[str, Any], ...]
    seed: int | None
    key: str = field(default="", compare=False)

    @property
    def params_text(self) -> str:
        """The setting as compact JSON (the ``params`` column of the tables)."""
        return json.dumps(dict(self.params), sort_keys=True, default=str)

    @property
    def label(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params)
        seed = "" if self.seed is None else f" seed={self.seed}"
        return f"{self.dataset}/{self.step} {self.model}({inner}){seed}"

    def model_params(self) -> dict[str, Any]:
        params = dict(self.params)
        if self.seed is not None:
            params["seed"] = self.seed
        return params


@dataclass(frozen=True)
class GridSpec:
    """A parsed and checked grid; :meth:`cells` expands it."""

    datasets: tuple[Dataset, ...]
    steps: tuple[int | str, ...]
    models: tuple[ModelGrid, ...]
    seeds: tuple[int, ...] = (0,)
    protocol: Protocol = Protocol()
    out: str | None = None
    source: str = "<spec>"

    def cells(self) -> list[Cell]:
        """Every (dataset, step, model setting, seed) combination; a model without a ``seed``
        parameter runs once per (dataset, step, setting), with ``seed`` None."""
        out = []
        for dataset in self.datasets:
            for step in self.steps:
                for model in self.models:
                    for params in model.settings():
                        for seed in (self.seeds if model.seeded else (None,)):
                            cell = Cell(dataset.label, step, model.label, model.name,
                                        tuple(params.items()), seed)
                            out.append(_keyed(cell, dataset, self.protocol))
        return out

    def dataset(self, label: str) -> Dataset:
        return next(d for d in self.datasets if d.label == label)

    def describe(self) -> dict[str, Any]:
        return {"datasets": {d.label: d.describe() for d in self.datasets},
                "steps": list(self.steps), "seeds": list(self.seeds),
                "models": {m.label: {"model": m.name, "grid": {k: list(v) for k, v in m.grid},
                                     "seeded": m.seeded} for m in self.models},
                "protocol": self.protocol.describe()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<spec>") -> GridSpec:
        """Check a spec already read into a dict (what :func:`load_spec` does after reading
        the TOML); a :class:`SpecError` names the first bad key."""
        return _parse(data, source)


def _keyed(cell: Cell, dataset: Dataset, protocol: Protocol) -> Cell:
    """The cell with its key: a digest of everything that defines its numbers, so a rerun of
    a changed spec never mistakes an old row for one of its cells."""
    what = [dataset.label, dataset.describe(), str(cell.step), cell.model, cell.name,
            cell.params_text, cell.seed, protocol.describe()]
    digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode())
    return Cell(cell.dataset, cell.step, cell.model, cell.name, cell.params, cell.seed,
                key=digest.hexdigest()[:12])


def load_spec(path: str | Path) -> GridSpec:
    """Read and check a grid spec (TOML).

    Examples
    --------
    >>> spec = GridSpec.from_dict({
    ...     "datasets": {"tiny": {"synthetic": {"n_events": 500, "n_users": 40,
    ...                                         "n_items": 60}}},
    ...     "steps": [50, 100], "seeds": [0, 1],
    ...     "models": {"popularity": {}, "random": {}},
    ... })
    >>> len(spec.cells())  # popularity has no seed: 2 steps x (1 + 2 seeds)
    6
    >>> GridSpec.from_dict({"datasets": ["synthetic"], "models": {"random": {"sed": 1}}})
    Traceback (most recent call last):
    ...
    recinc_plugins.grid.spec.SpecError: <spec>: models.random.sed: 'random' has no ...
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"grid spec {path} does not exist")
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    return _parse(data, str(path))


# -- checking ------------------------------------------------------------------------------


def _fail(source: str, key: str, message: str) -> SpecError:
    return SpecError(f"{source}: {key}: {message}")


def _unknown(source: str, prefix: str, keys: Any, allowed: tuple[str, ...]) -> None:
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise _fail(source, f"{prefix}{key}", f"unknown key{hint}; expected one of "
                                                  f"{', '.join(allowed)}")


def _parse(data: Mapping[str, Any], source: str) -> GridSpec:
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a grid spec is a table of keys, got {type(data).__name__}")
    _unknown(source, "", data, _TOP)
    for key in ("datasets", "models"):
        if key not in data:
            raise _fail(source, key, "missing: a grid needs datasets and models "
                                     "(see docs/grid.md)")
    datasets = _datasets(data["datasets"], source)
    steps = _steps(data.get("steps", [1000]), source)
    seeds = _seeds(data.get("seeds", [0]), source)
    protocol = _protocol(data.get("protocol", {}), source)
    models = _models(data["models"], source)
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise _fail(source, "out", f"expected a folder name, got {out!r}")
    return GridSpec(datasets, steps, models, seeds, protocol, out, source)


def _datasets(value: Any, source: str) -> tuple[Dataset, ...]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):  # names or paths, labelled by themselves
        if not value or not all(isinstance(v, str) and v for v in value):
            raise _fail(source, "datasets", "expected dataset names or paths (strings), or a "
                                            f"table of labelled datasets, got {value!r}")
        value = {v: v for v in value}
    if not isinstance(value, Mapping) or not value:
        raise _fail(source, "datasets", f"expected a list or a table of datasets, got {value!r}")
    out = []
    for label, entry in value.items():
        key = f"datasets.{label}"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, Mapping):
            raise _fail(source, key, f"expected a name or path, or a table, got {entry!r}")
        given = [s for s in _SOURCES if s in entry]
        if len(given) != 1:
            raise _fail(source, key, "give exactly one of name = 'ml-100k', path = "
                                     "'events.csv', synthetic = { n_events = ... }")
        kind = given[0]
        options = {k: v for k, v in entry.items() if k != kind}
        if kind == "synthetic":
            if options:
                _unknown(source, f"{key}.", options, ("synthetic",))
            synth = entry["synthetic"]
            if synth is True:
                synth = {}
            if not isinstance(synth, Mapping):
                raise _fail(source, f"{key}.synthetic", "expected a table of synthetic_stream "
                                                        f"arguments, got {synth!r}")
            from ..data import synthetic_stream

            allowed = tuple(inspect.signature(synthetic_stream).parameters)
            _unknown(source, f"{key}.synthetic.", synth, allowed)
            out.append(Dataset(label, "synthetic", None, tuple(sorted(synth.items()))))
            continue
        name = entry[kind]
        if not isinstance(name, str) or not name:
            raise _fail(source, f"{key}.{kind}", f"expected a string, got {name!r}")
        if kind == "name":
            from ..data.loaders import DATASETS

            if name not in DATASETS and not Path(name).expanduser().exists():
                close = difflib.get_close_matches(name, list(DATASETS), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise _fail(source, key, f"{name!r} is neither a named dataset{hint} nor an "
                                         "existing file (see `recinc datasets`)")
        elif not Path(name).expanduser().exists():
            raise _fail(source, f"{key}.path", f"{name} does not exist")
        out.append(Dataset(label, "name" if kind == "name" else "path", name,
                           tuple(sorted(options.items()))))
    return tuple(out)


def _steps(value: Any, source: str) -> tuple[int | str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _fail(source, "steps", "empty: give at least one step size")
    out: list[int | str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int)
                                                                   and v < 1):
            raise _fail(source, "steps", f"{v!r} is not a step: events per step (a positive "
                                         "integer) or a duration such as '1D'")
        if isinstance(v, str):
            try:
                pd.Timedelta(v)
            except ValueError:
                raise _fail(source, "steps", f"{v!r} is not a duration such as '1D' or "
                                             "'6h'") from None
        if v in out:
            raise _fail(source, "steps", f"{v!r} is listed twice")
        out.append(v)
    return tuple(out)


def _seeds(value: Any, source: str) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                             for v in values):
        raise _fail(source, "seeds", f"expected non-negative integers, got {value!r}")
    if len(set(values)) != len(values):
        raise _fail(source, "seeds", f"a seed is listed twice: {value!r}")
    return tuple(values)


def _protocol(value: Any, source: str) -> Protocol:
    if not isinstance(value, Mapping):
        raise _fail(source, "protocol", f"expected a table, got {value!r}")
    _unknown(source, "protocol.", value, _PROTOCOL)
    kwargs: dict[str, Any] = {}
    if "k" in value:
        ks = value["k"] if isinstance(value["k"], list) else [value["k"]]
        if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1
                             for k in ks):
            raise _fail(source, "protocol.k", f"expected positive integers, got {value['k']!r}")
        kwargs["ks"] = tuple(ks)
    if "warmup" in value:
        w = value["warmup"]
        if isinstance(w, bool) or not isinstance(w, (int, float, str)) or (
                isinstance(w, (int, float)) and w < 0) or (isinstance(w, float) and w >= 1):
            raise _fail(source, "protocol.warmup", "expected events (an integer), a fraction "
                                                   f"in [0, 1) or a time, got {w!r}")
        kwargs["warmup"] = w
    if "target" in value:
        if value["target"] not in _TARGETS:
            raise _fail(source, "protocol.target", f"expected one of {', '.join(_TARGETS)}, "
                                                   f"got {value['target']!r}")
        kwargs["target"] = value["target"]
    if "exclude_seen" in value:
        if not isinstance(value["exclude_seen"], bool):
            raise _fail(source, "protocol.exclude_seen",
                        f"expected true or false, got {value['exclude_seen']!r}")
        kwargs["exclude_seen"] = value["exclude_seen"]
    if "clip" in value:
        c = value["clip"]
        if not (isinstance(c, list) and len(c) == 2 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in c)
                and c[0] < c[1]):
            raise _fail(source, "protocol.clip", f"expected [low, high], got {c!r}")
        kwargs["clip"] = (float(c[0]), float(c[1]))
    if "eval_fraction" in value:
        f = value["eval_fraction"]
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise _fail(source, "protocol.eval_fraction", f"expected 0 < F <= 1, got {f!r}")
        kwargs["eval_fraction"] = float(f)
    for key, attr, low in (("eval_seed", "eval_seed", 0), ("threads", "threads", 1),
                           ("window", "window", 1)):
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise _fail(source, f"protocol.{key}", f"expected an integer >= {low}, got "
                                                       f"{v!r}")
            kwargs[attr] = v
    if "budget" in value:
        b = value["budget"]
        if isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0:
            raise _fail(source, "protocol.budget", "expected seconds per cell (a positive "
                                                   f"number), got {b!r}")
        kwargs["budget"] = float(b)
    return Protocol(**kwargs)


def _takes_any(factory: Any, parameters: Mapping[str, inspect.Parameter]) -> bool:
    """Whether ``factory`` takes any keyword: a function with ``**kwargs``, not a model class
    (whose parameters are its named ones; its ``**`` only takes deprecated names)."""
    from ..base import IncrementalRecommender

    if isinstance(factory, type) and issubclass(factory, IncrementalRecommender):
        return False
    return any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _models(value: Any, source: str) -> tuple[ModelGrid, ...]:
    from ..registry import get_spec

    if not isinstance(value, Mapping) or not value:
        raise _fail(source, "models", "expected a table of models: [models.implicit-als] "
                                      "with parameter lists under it")
    out = []
    for label, table in value.items():
        key = f"models.{label}"
        if not isinstance(table, Mapping):
            raise _fail(source, key, f"expected a table of parameters, got {table!r}")
        table = dict(table)
        name = table.pop("model", label)
        try:
            spec = get_spec(name)
        except ValueError as exc:
            raise _fail(source, key if name == label else f"{key}.model", str(exc)) from None
        if not spec.installed:
            raise _fail(source, key, f"model {name!r} needs the {spec.extra!r} extra: "
                                     f"pip install 'recinc-plugins[{spec.extra}]'")
        factory = spec.load()
        try:
            parameters = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a factory whose signature cannot be read
            parameters = {}
        takes_any = _takes_any(factory, parameters)
        grid = []
        for param, values in table.items():
            pkey = f"{key}.{param}"
            if param in ("seed", "random_state"):
                raise _fail(source, pkey, "seeds are set for the whole grid with the "
                                          "top-level seeds = [...]")
            if parameters and not takes_any and param not in parameters:
                names = [n for n, p in parameters.items() if n not in ("seed", "random_state")
                         and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
                close = difflib.get_close_matches(param, names, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise _fail(source, pkey, f"{name!r} has no parameter {param!r}{hint}; its "
                                          f"parameters: {', '.join(names)}")
            values = tuple(values) if isinstance(values, list) else (values,)
            if not values:
                raise _fail(source, pkey, "an empty list: give at least one value")
            grid.append((param, values))
        seeded = "seed" in parameters
        out.append(ModelGrid(label, name, tuple(grid), seeded))
    return tuple(out)
