"""Shared fixtures: small synthetic streams for unit tests, MovieLens 100K where available."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from recinc_plugins.data import synthetic_stream


def _data_home() -> Path | None:
    home = os.environ.get("RECINC_DATA_HOME")
    if home and (Path(home) / "ml-100k" / "u.data").exists():
        return Path(home)
    return None


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The data home holding ml-100k; tests using it skip (with the reason) where it is absent."""
    home = _data_home()
    if home is None:
        pytest.skip("MovieLens 100K not found: set RECINC_DATA_HOME to a folder holding ml-100k/")
    return home


@pytest.fixture(scope="session")
def ml100k(data_home: Path) -> pd.DataFrame:
    """MovieLens 100K in the canonical schema, in the order the harness replays it (timestamp
    order, stable on ties)."""
    from recinc_plugins.data import load_dataset
    from recinc_plugins.evaluation import Stream

    return Stream(load_dataset("ml-100k", home=data_home, download=False)).frame


@pytest.fixture(scope="session")
def explicit_stream() -> pd.DataFrame:
    """3,000 explicit ratings, 150 users, 300 items (seeded)."""
    return synthetic_stream(n_events=3_000, n_users=150, n_items=300, seed=7)


@pytest.fixture(scope="session")
def implicit_stream() -> pd.DataFrame:
    """3,000 implicit events with weights, 150 users, 300 items (seeded)."""
    return synthetic_stream(n_events=3_000, n_users=150, n_items=300, feedback="implicit", seed=7)


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``install_plugin(module, source, models)``: install a third-party package for one test.

    Writes ``module.py`` with ``source`` and a distribution (named after the module) whose
    entry points register ``models`` (model name -> ``"module:attribute"``), puts them on the
    path, and makes the registry read the entry points again.
    """
    from recinc_plugins import registry

    def install(module: str, source: str, models: dict[str, str]) -> None:
        (tmp_path / f"{module}.py").write_text(source)
        dist = tmp_path / f"{module}-1.0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
        (dist / "entry_points.txt").write_text(
            "[recinc_plugins.models]\n" + "".join(f"{n} = {t}\n" for n, t in models.items()))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        monkeypatch.setattr(registry, "_plugins_loaded", False)

    return install

