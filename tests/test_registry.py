import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import recinc_plugins
from recinc_plugins import registry
from recinc_plugins.cli import main


def test_make_builds_the_named_baselines():
    assert type(recinc_plugins.make("popularity")).__name__ == "Popularity"
    assert recinc_plugins.make("random", seed=4).seed == 4


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ValueError, match="unknown model 'populartiy'; did you mean popularity"):
        recinc_plugins.make("populartiy")


def test_list_models_names_extras_and_installation():
    table = recinc_plugins.list_models().set_index("name")
    for name in ("popularity", "decayed-popularity", "random", "implicit-als", "lightfm",
                 "river-biasedmf", "surprise-svd", "neural"):
        assert name in table.index
    assert table.loc["lightfm", "extra"] == "lightfm"
    assert table.loc["popularity", "installed"]


def test_a_model_whose_extra_is_missing_raises_import_error_naming_the_extra(monkeypatch):
    spec = registry.ModelSpec("fancy", "nowhere_module:Fancy", "x", extra="fancy-extra")
    monkeypatch.setitem(registry._REGISTRY, "fancy", spec)
    with pytest.raises(ImportError, match=r"needs the 'fancy-extra' extra: pip install "
                                          r"'recinc-plugins\[fancy-extra\]'"):
        recinc_plugins.make("fancy")


def test_runtime_registration_and_name_rules(monkeypatch):
    from recinc_plugins.baselines import Popularity

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("my-pop", Popularity)
    assert isinstance(recinc_plugins.make("my-pop"), Popularity)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("my-pop", Popularity)
    with pytest.raises(ValueError, match="lower-case words joined by dashes"):
        registry.register("My_Pop", Popularity)


def test_third_party_models_register_through_entry_points(install_plugin):
    install_plugin("thirdparty_reco", textwrap.dedent('''
        from recinc_plugins import Popularity

        class Trendy(Popularity):
            """Trendy items from a third-party package."""
    '''), {"trendy": "thirdparty_reco:Trendy"})
    table = recinc_plugins.list_models().set_index("name")
    assert table.loc["trendy", "source"] == "entry point (thirdparty-reco)"
    model = recinc_plugins.make("trendy")
    assert type(model).__name__ == "Trendy"
    model.fit(pd.DataFrame({"user": [1], "item": [2]}))


def test_importing_the_package_imports_no_optional_library():
    code = ("import sys, recinc_plugins, recinc_plugins.cli, recinc_plugins.registry,"
            " recinc_plugins.grid;"
            "print(sorted(m for m in ('torch','lightfm','implicit','river','surprise',"
            "'matplotlib','ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_models_lists_every_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "implicit-als" in out and "installed" in out and "surprise" in out
    assert "feedback" in out and "touched" in out and "features, else newcomer" in out


def test_list_models_shows_what_the_capabilities_say(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register("made-by-a-function", lambda: recinc_plugins.Popularity())
    table = recinc_plugins.list_models(capabilities=True).set_index("name")
    assert table.loc["popularity", ["feedback", "update", "cold_start", "side_features"]
                     ].tolist() == ["implicit", "per-event", "popularity", False]
    assert table.loc["newcomer-popularity", "cold_start"] == "newcomer"
    assert table.loc["lightfm", "cold_start"] == "features, else newcomer"
    assert table.loc["lightfm", "side_features"]
    assert table.loc["implicit-als", "update"] == "touched"
    assert table.loc["surprise-svd", "feedback"] == "ratings"
    assert table.loc["neural", "feedback"] == "both"
    # which models score with a user's recent events (context="fresh"), which ignore them
    assert table.loc[["item-knn", "implicit-als", "lightfm", "neural"], "context"].all()
    assert not table.loc[["popularity", "river-biasedmf", "surprise-knn"], "context"].any()
    assert table.loc["made-by-a-function", ["feedback", "update"]].isna().all()
    assert "feedback" not in recinc_plugins.list_models().columns  # imports nothing by default


def test_cli_datasets_shows_the_data_home(capsys, tmp_path):
    assert main(["datasets", "--data-home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"data home: {tmp_path}" in out and "ml-100k" in out and "synthetic" in out


def test_dotted_entry_point_targets_resolve():
    spec = registry.ModelSpec("x", "collections:OrderedDict.fromkeys")
    from collections import OrderedDict

    assert spec.load() == OrderedDict.fromkeys
