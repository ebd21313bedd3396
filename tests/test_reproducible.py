"""Two runs of the same comparison give the same numbers, for every registered model."""

from __future__ import annotations

import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins.data import synthetic_stream
from recinc_plugins.evaluation import Stream, compare

MODELS = recinc_plugins.list_models()




@pytest.fixture(scope="module")
def stream():
    return Stream(synthetic_stream(n_events=1_200, n_users=80, n_items=150, seed=11),
                  step=300, warmup=300)


@pytest.mark.parametrize("name", MODELS["name"].tolist())
def test_the_same_comparison_twice_gives_identical_numbers(stream, name):
    row = MODELS.set_index("name").loc[name]
    if not row["installed"]:
        pytest.skip(f"{name} needs the {row['extra']!r} extra")
    params = {}
    try:
        runs = [compare({name: recinc_plugins.make(name, **params)}, stream, k=10).summary
                for _ in range(2)]
    except TypeError:
        pytest.skip(f"{name} takes no default construction")
    first, second = runs
    assert first.loc[0, "status"] == "ok", first.loc[0].get("error")
    metrics = [c for c in first.columns if "@" in c or c in ("rmse", "mae")]
    pd.testing.assert_frame_equal(first[metrics], second[metrics])
