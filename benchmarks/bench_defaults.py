"""Where the fresh-context defaults of 2026-11 came from, and how they hold on data that did
not choose them.

Run: ``RECINC_DATA_HOME=/path/to/data python benchmarks/bench_defaults.py`` (about 10 minutes
on a shared 2-core machine; ``--models`` picks some of implicit-als, neural, lightfm;
``--jobs 2`` replays two settings at once). Every figure is recall@10 at 1,000-event steps,
top-10 with the user's items excluded, ``compare``'s defaults (``cold_start="popularity"``,
``seed=0``), all events counted.

- **Tuning** (what chose the defaults): each setting of the grid on the first 50,000 events
  of ml-100k (in timestamp order) and on the built-in synthetic stream, with learned and with
  fresh context. implicit-als: ``regularization`` (its ``"auto"`` is now 3 at every step size;
  it was 30 at steps of 1,000 events or more) and ``context_weight`` (now 4); neural:
  ``batch_size`` (None: 4 for the ranking losses; it was 256); lightfm: ``context_inertia``
  (0.1; there was none, which is 0).
- **Reported** (not used to choose): the former default against the new one on ml-100k's
  second half (the first 50,000 events learned as a warm-up, never scored) and on the whole
  stream, with popularity beside them.

Without ml-100k only the synthetic rows run. The figures are exact (no timing), so the load
does not matter.
"""

from __future__ import annotations

import argparse

import pandas as pd
from _common import movielens

from recinc_plugins import load_dataset, make
from recinc_plugins.evaluation import Stream, compare
from recinc_plugins.registry import get_spec

STEP = 1000
HALF = 50_000
#: per model: its former default (the parameters that give it back), and the grid tried
SETTINGS = {
    "implicit-als": {
        "former": {"regularization": 30.0, "context_weight": 1.0},
        "grid": [*({"regularization": r, "context_weight": 1.0} for r in (1.0, 3.0, 10.0, 30.0)),
                 *({"regularization": 3.0, "context_weight": w} for w in (2.0, 4.0, 8.0))],
    },
    "neural": {
        "former": {"batch_size": 256},
        "grid": [{"batch_size": b} for b in (256, 32, 8, 4)],
    },
    "lightfm": {
        "former": {"context_inertia": 0.0},
        "grid": [{"context_inertia": c} for c in (0.0, 0.1, 0.3, 1.0, 3.0)],
    },
}


def label(params: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items()) or "defaults"


def recalls(models: dict, stream: Stream, context: str, jobs: int) -> pd.Series:
    result = compare(models, stream, k=10, context=context, n_jobs=jobs)
    for name, error in result.failures.items():
        raise RuntimeError(f"{name} failed: {error.strip().splitlines()[-1]}")
    return result.summary.set_index("model")["recall@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SETTINGS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    try:
        ml = movielens()
    except FileNotFoundError:
        ml = None
        print("ml-100k not found (RECINC_DATA_HOME): the synthetic stream only\n")
    tuning = {"synthetic": Stream(load_dataset("synthetic"), step=STEP)}
    if ml is not None:
        tuning["ml-100k first half"] = Stream(ml.iloc[:HALF], step=STEP)
    for name in names:
        if not get_spec(name).installed:
            print(f"left out: {name} (needs the {get_spec(name).extra!r} extra)")
            continue
        grid = SETTINGS[name]["grid"]
        rows = {label(p): {} for p in grid}
        for data, stream in tuning.items():
            for context in ("learned", "fresh"):
                got = recalls({label(p): make(name, **p) for p in grid}, stream, context,
                              args.jobs)
                for key, value in got.items():
                    rows[key][f"{data}, {context}"] = value
        print(f"{name}: tuning (recall@10, 1,000-event steps)\n")
        print(pd.DataFrame(rows).T.to_string(float_format=lambda x: f"{x:.4f}"), "\n",
              flush=True)
        if ml is None:
            continue
        models = {"popularity": make("popularity"),
                  f"{name}, former default ({label(SETTINGS[name]['former'])})":
                      make(name, **SETTINGS[name]["former"]),
                  f"{name}, default": make(name)}
        report = {}
        for data, stream in (("second half", Stream(ml, step=STEP, warmup=HALF)),
                             ("whole stream", Stream(ml, step=STEP))):
            for context in ("learned", "fresh"):
                report[f"{data}, {context}"] = recalls(models, stream, context, args.jobs)
        print(f"{name}: reported on data that did not choose it\n")
        print(pd.DataFrame(report).to_string(float_format=lambda x: f"{x:.4f}"), "\n",
              flush=True)


if __name__ == "__main__":
    main()
