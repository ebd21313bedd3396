"""Model names -> factories: the built-in models, runtime registrations and entry-point plugins.

Third-party packages add models through the entry-point group ``recinc_plugins.models``::

    [project.entry-points."recinc_plugins.models"]
    my-model = "my_package.models:MyRecommender"

The target is an :class:`~recinc_plugins.base.IncrementalRecommender` subclass or any callable
returning one; its docstring's first line is its description.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._optional import extra_installed

__all__ = ["ModelSpec", "get_spec", "list_models", "make", "register"]

ENTRY_POINT_GROUP = "recinc_plugins.models"


@dataclass
class ModelSpec:
    """A named model: where its factory lives, what it is, and which extra it needs."""

    name: str
    target: str | Callable[..., Any]  # "module:attribute", or the factory itself
    description: str = ""
    extra: str | None = None
    source: str = "built-in"
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def installed(self) -> bool:
        return extra_installed(self.extra)

    def model_class(self) -> type | None:
        """The model class the factory is, or None where the extra is missing or the factory
        is a function (this imports the model's module)."""
        if not self.installed:
            return None
        try:
            target = self.load()
        except ImportError:
            return None
        return target if isinstance(target, type) else None

    def load(self) -> Callable[..., Any]:
        if callable(self.target):
            return self.target
        if not self.installed:
            raise ImportError(
                f"model {self.name!r} needs the {self.extra!r} extra: "
                f"pip install 'recinc-plugins[{self.extra}]'"
            )
        module_name, _, attr = self.target.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):  # entry points allow "module:Class.factory"
            target = getattr(target, part)
        return target


def _builtin(name: str, target: str, description: str, extra: str | None = None,
             **defaults: Any) -> ModelSpec:
    return ModelSpec(name, target, description, extra, "built-in", defaults)


_A = "recinc_plugins.adapters"
_BUILTINS: list[ModelSpec] = [
    _builtin("popularity", "recinc_plugins.baselines:Popularity",
             "all-time item popularity (the floor every model is compared to)"),
    _builtin("newcomer-popularity", "recinc_plugins.baselines:Popularity",
             "popularity, with unknown users answered by what new users picked first lately",
             cold_start="newcomer"),
    _builtin("decayed-popularity", "recinc_plugins.baselines:DecayedPopularity",
             "item popularity with exponential decay (half-life in events or time)"),
    _builtin("random", "recinc_plugins.baselines:Random", "uniformly random items (seeded)"),
    _builtin("item-knn", "recinc_plugins.knn:ItemKNN",
             "item-to-item co-occurrence in users' sequences, from their latest items and context"),
    _builtin("implicit-als", f"{_A}.implicit:ImplicitALS",
             "implicit's ALS; touched users/items re-solved per step", "implicit"),
    _builtin("implicit-bpr", f"{_A}.implicit:ImplicitBPR",
             "implicit's BPR; grown factors, warm-started training per step", "implicit"),
    _builtin("implicit-lmf", f"{_A}.implicit:ImplicitLMF",
             "implicit's logistic MF; grown factors, warm-started training per step", "implicit"),
    _builtin("lightfm", f"{_A}.lightfm:LightFMRecommender",
             "LightFM (warp/bpr/logistic/warp-kos) with grown state and side features", "lightfm"),
    _builtin("river-baseline", f"{_A}.river:RiverBaseline",
             "River's reco.Baseline (biases), learn_one per event", "river"),
    _builtin("river-biasedmf", f"{_A}.river:RiverBiasedMF",
             "River's reco.BiasedMF, learn_one per event, vectorised scoring", "river"),
    _builtin("river-funkmf", f"{_A}.river:RiverFunkMF",
             "River's reco.FunkMF, learn_one per event, vectorised scoring", "river"),
    _builtin("surprise-svd", f"{_A}.surprise:SurpriseSVD",
             "Surprise SVD with fold-in between periodic refits", "surprise"),
    _builtin("surprise-svdpp", f"{_A}.surprise:SurpriseSVDpp",
             "Surprise SVD++ with fold-in between periodic refits", "surprise"),
    _builtin("surprise-nmf", f"{_A}.surprise:SurpriseNMF",
             "Surprise NMF with fold-in between periodic refits", "surprise"),
    _builtin("surprise-baseline", f"{_A}.surprise:SurpriseBaselineOnly",
             "Surprise BaselineOnly with fold-in between periodic refits", "surprise"),
    _builtin("surprise-knn", f"{_A}.surprise:SurpriseKNNBasic",
             "Surprise KNNBasic, periodic refit", "surprise"),
    _builtin("surprise-knn-means", f"{_A}.surprise:SurpriseKNNWithMeans",
             "Surprise KNNWithMeans, periodic refit", "surprise"),
    _builtin("surprise-knn-zscore", f"{_A}.surprise:SurpriseKNNWithZScore",
             "Surprise KNNWithZScore, periodic refit", "surprise"),
    _builtin("surprise-knn-baseline", f"{_A}.surprise:SurpriseKNNBaseline",
             "Surprise KNNBaseline, periodic refit", "surprise"),
    _builtin("surprise-slopeone", f"{_A}.surprise:SurpriseSlopeOne",
             "Surprise SlopeOne, periodic refit", "surprise"),
    _builtin("surprise-coclustering", f"{_A}.surprise:SurpriseCoClustering",
             "Surprise CoClustering, periodic refit", "surprise"),
    _builtin("neural", "recinc_plugins.neural:NeuralRecommender",
             "PyTorch two-tower model: growing embeddings, recent-items user state, replay",
             "torch"),
    _builtin("neural-seq", "recinc_plugins.neural:SequentialRecommender",
             "PyTorch sequential model: events learned from their own past, attention pooling",
             "torch"),
]

_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _BUILTINS}
_plugins_loaded = False


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _REGISTRY:
            continue  # a plugin never shadows a built-in or a runtime registration
        dist = getattr(getattr(ep, "dist", None), "name", "a plugin")
        _REGISTRY[ep.name] = ModelSpec(ep.name, ep.value, f"(plugin from {dist})", None,
                                       f"entry point ({dist})")


def register(name: str, factory: Callable[..., Any], *, description: str | None = None,
             extra: str | None = None, overwrite: bool = False) -> ModelSpec:
    """Register ``factory`` (a model class or a callable returning a model) under ``name``."""
    if not name or name != name.lower() or " " in name or "_" in name:
        raise ValueError(f"model names are lower-case words joined by dashes, got {name!r}")
    _load_plugins()
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"a model named {name!r} is already registered (pass overwrite=True)")
    doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
    spec = ModelSpec(name, factory, description or (doc[0] if doc else ""), extra, "runtime")
    _REGISTRY[name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; a ValueError suggests close names."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))})"
        ) from None


def make(name: str, **params: Any) -> Any:
    """Build the model registered under ``name`` with ``params``.

    Examples
    --------
    >>> import recinc_plugins
    >>> recinc_plugins.make("decayed-popularity", half_life=500)
    DecayedPopularity(half_life=500)
    """
    spec = get_spec(name)
    factory = spec.load()
    return factory(**{**spec.defaults, **params})


_CAPABILITY_COLUMNS = ["feedback", "update", "cold_start", "side_features", "context"]


def list_models(capabilities: bool = False) -> pd.DataFrame:
    """One row per registered model: name, description, extra, installed, source.

    ``capabilities=True`` adds what each installed model's
    :class:`~recinc_plugins.base.Capabilities` say: ``feedback`` (``"ratings"``,
    ``"implicit"`` or ``"both"``), ``update``, ``cold_start``, ``side_features`` and
    ``context`` (whether it scores with a user's recent events; None where unknown). It
    imports every installed model's library, so it is off by default.
    """
    _load_plugins()
    rows = []
    for spec in _REGISTRY.values():
        row = {"name": spec.name, "description": spec.description,
               "extra": spec.extra or "-", "installed": spec.installed, "source": spec.source}
        if capabilities:
            row.update(_capability_row(spec))
        rows.append(row)
    columns = ["name", "description", "extra", "installed", "source"]
    return pd.DataFrame(rows, columns=columns + (_CAPABILITY_COLUMNS if capabilities else []))


def _capability_row(spec: ModelSpec) -> dict[str, Any]:
    """The capabilities of ``spec``'s model class; ``cold_start`` names the policy the
    registered model starts with (its ``cold_start`` parameter, else popularity)."""
    cls = spec.model_class()
    caps = getattr(cls, "capabilities", None)
    if caps is None:
        return dict.fromkeys(_CAPABILITY_COLUMNS)
    feedback = {(True, True): "both", (True, False): "ratings"}.get(
        (bool(caps.explicit), bool(caps.implicit)), "implicit")
    parameter = inspect.signature(cls).parameters.get("cold_start")
    policy = spec.defaults.get("cold_start", parameter.default if parameter else "popularity")
    policy = policy if isinstance(policy, str) else "newcomer"  # a Newcomer(...)
    if caps.cold_start == "features":
        policy = f"features, else {policy}"
    return {"feedback": feedback, "update": caps.update, "cold_start": policy,
            "side_features": bool(caps.side_features), "context": bool(caps.context)}
