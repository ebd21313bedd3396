"""Parameters, scikit-learn style: read back, set, cloned and shown; and the checks every model
uses to refuse a bad one with a message naming it.

Constructors store each keyword argument verbatim under its own name and do no other work, so
``get_params``, ``set_params``, ``clone`` and ``repr`` need nothing from the model. A model
validates its parameters in ``_check_params`` (called before any state is built) with the
``check_*`` helpers below, which all raise ``ValueError("<name> must be ..., got <value>")``.

Randomness is seeded by a parameter named ``seed`` in every model: numpy's ``default_rng``,
torch and River call it a seed, as do the package's own ``synthetic_stream`` and
``ReplayConfig.eval_seed``. Models that wrap a library calling it ``random_state``
(implicit, LightFM, Surprise) pass ``seed`` on under that name, and still accept
``random_state`` (with a DeprecationWarning) and read it from older model files.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from .coldstart import check_cold_start

__all__ = [
    "Parameters",
    "check_bool",
    "check_choice",
    "check_int",
    "check_number",
    "check_seed",
]

Self = TypeVar("Self", bound="Parameters")


class Parameters:
    """``get_params`` / ``set_params`` / ``clone`` / ``repr`` from the constructor's signature."""

    #: parameters saved or passed under an earlier name: old name -> current name (``load``
    #: maps them; a constructor taking ``**renamed`` accepts them through _accept_renamed)
    _renamed_params: ClassVar[dict[str, str]] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The constructor parameters, read back from the attributes of the same names."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: Self, **params: Any) -> Self:
        """Set parameters by name (checked names; a ``cold_start`` value is checked at once,
        since a fitted model uses it at once). Takes effect at the next ``fit``."""
        names = self._param_names()
        for key in params:
            if key not in names:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {key!r}; its parameters are {names}"
                )
        if "cold_start" in params:
            check_cold_start(params["cold_start"], "cold_start")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def clone(self: Self) -> Self:
        """A new, unfitted model with the same parameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = []
        for name in self._param_names():
            value = getattr(self, name, None)
            default = sig.parameters[name].default
            try:
                same = value is default or bool(value == default)
            except Exception:
                same = False
            if not same:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def _accept_renamed(self, given: dict[str, Any]) -> None:
        """Store keywords given under an earlier name (``_renamed_params``) under the current
        name, with a DeprecationWarning: what a constructor's ``**renamed`` catches."""
        for old, value in given.items():
            new = self._renamed_params.get(old)
            if new is None:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument {old!r}")
            if getattr(self, new) is not None:
                raise TypeError(f"{type(self).__name__}() got both {old!r} and {new!r}")
            warnings.warn(f"{type(self).__name__}({old}=...) is deprecated: use {new}=...",
                          DeprecationWarning, stacklevel=3)
            setattr(self, new, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int = 1, *, optional: bool = False) -> None:
    """``value`` is an integer (not a bool) ``>= minimum``, or None when ``optional``."""
    if optional and value is None:
        return
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}"
                         f"{' or None' if optional else ''}, got {value!r}")


def check_number(name: str, value: Any, minimum: float = 0, *, strict: bool = False,
                 optional: bool = False) -> None:
    """``value`` is a finite real number (not a bool) ``>= minimum`` (``> minimum`` when
    ``strict``), or None when ``optional``."""
    if optional and value is None:
        return
    ok = isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_)) and bool(np.isfinite(value)) \
        and (value > minimum if strict else value >= minimum)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}"
                         f"{' or None' if optional else ''}, got {value!r}")


def check_choice(name: str, value: Any, options: Sequence[Any]) -> None:
    """``value`` is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, "
                         f"got {value!r}")


def check_seed(name: str, value: Any) -> None:
    """``value`` is an integer seed or None."""
    if value is not None and not _is_int(value):
        raise ValueError(f"{name} must be an integer or None, got {value!r}")


def check_bool(name: str, value: Any) -> None:
    """``value`` is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
