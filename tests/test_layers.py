"""The package's layers: no module imports one that imports it back, models never import the
evaluation package, and what examples and users need is importable from the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

import recinc_plugins

PACKAGE = Path(recinc_plugins.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its text (functions and
    ``TYPE_CHECKING`` blocks included: a circle there is still a circle to a reader)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("recinc_plugins", *path.relative_to(PACKAGE).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found = [target, *(f"{target}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in found if t in modules and t != name)
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    circles = sorted(name for name in graph if name in _reaches(graph, name))
    assert circles == []


#: the layers below the harness: data, the models and what they are built from
MODEL_LAYER = ("data", "adapters", "neural", "compat", "base", "state", "ranking", "coldstart",
               "persistence", "params", "growth", "ids", "sparse", "baselines", "registry",
               "knn", "context", "_threads")


def test_models_never_import_the_evaluation_package():
    graph = _imports()
    models = [name for name in graph if name.split(".")[1:2] and
              name.split(".")[1] in MODEL_LAYER]
    assert "recinc_plugins.adapters.implicit" in models
    for name in models:
        assert not any(t.startswith("recinc_plugins.evaluation") for t in graph[name]), name


def test_the_base_module_keeps_every_name_it_had():
    from recinc_plugins import base

    for name in ("Batch", "Capabilities", "IncrementalRecommender", "ModelFileError", "Newcomer",
                 "Recommendations", "top_k", "NEWCOMER_EVENTS", "NEWCOMER_HALF_LIFE"):
        assert hasattr(base, name), name


def test_load_reads_any_model_file_and_the_baselines_are_exported(tmp_path):
    events = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"]})
    for model in (recinc_plugins.Popularity(), recinc_plugins.DecayedPopularity(half_life=2),
                  recinc_plugins.Random(seed=1)):
        model.fit(events)
        model.save(tmp_path / "m.recinc")
        loaded = recinc_plugins.load(tmp_path / "m.recinc")
        assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
        assert loaded.recommend([1, 9], k=2).items.tolist() == \
            model.recommend([1, 9], k=2).items.tolist()


def test_the_report_helpers_are_exported_by_the_evaluation_package():
    from recinc_plugins.evaluation import format_summary, protocol_text, write_report

    assert callable(format_summary) and callable(protocol_text) and callable(write_report)
