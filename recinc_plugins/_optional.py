"""Imports of the optional libraries, with errors that name the extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["EXTRAS", "extra_installed", "require"]

# extra name -> modules it must provide
EXTRAS: dict[str, tuple[str, ...]] = {
    "surprise": ("surprise",),
    "lightfm": ("lightfm",),
    "implicit": ("implicit",),
    "river": ("river",),
    "torch": ("torch",),
    "plot": ("matplotlib",),
    "parquet": ("pyarrow",),
}


def extra_installed(extra: str | None) -> bool:
    """True when every module of ``extra`` can be imported (None: no extra needed)."""
    if extra is None:
        return True
    return all(importlib.util.find_spec(m) is not None for m in EXTRAS.get(extra, (extra,)))


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ImportError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{module!r} is not installed; it comes with the {extra!r} extra: "
            f"pip install 'recinc-plugins[{extra}]'"
        ) from exc
