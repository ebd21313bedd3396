"""A 16-cell grid serially and on Ray with 2 workers: the speed-up, and Ray's cost per cell.

Run: ``python benchmarks/bench_grid.py`` (about a minute on 2 cores). The grid: the synthetic
stream (20,000 ratings, 500 users, 1,000 items, 500-event steps, read from a CSV file) x 4 models
(implicit ALS, implicit BPR, LightFM, River BiasedMF) x 2 settings x 2 seeds, every cell one
``compare`` of one model. It runs three ways, each into its own folder:

- serially, in this process (``run_grid(local=True, jobs=1)``);
- on an embedded Ray with 2 CPUs (``ray.init(num_cpus=2)`` timed apart, then ``run_grid``);
- in 2 local worker processes (``run_grid(local=True, jobs=2)``, the fallback without Ray).

Printed: wall time of each, the speed-up over serial (target on 2 free cores: >= 1.7x), the
cells' own time (the sum of ``cell_s``: on a busy machine two cells at once each run slower)
and Ray's overhead per cell: worker-seconds not spent inside cells, ``(2 x wall - sum of
cell_s) / cells``. The machine's load average is printed before and after: the speed-up needs
a second core free of other work. Every run checks that the three give the same recall per cell.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from recinc_plugins.data import synthetic_stream
from recinc_plugins.grid import GridSpec, run_grid
from recinc_plugins.grid.grid import cell_factory

SPEC = {
    "datasets": {"synthetic": {"path": "(written at start)"}},
    "steps": [500],
    "seeds": [0, 1],
    "protocol": {"k": 10, "warmup": 2000},
    "models": {
        "implicit-als": {"factors": [32, 64], "iterations": 15},
        "implicit-bpr": {"factors": [32, 64], "iterations": 100},
        "lightfm": {"no_components": [32, 64], "epochs": 5},
        "river-biasedmf": {"n_factors": [10, 40]},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="keep the three grids' folders here")
    args = parser.parse_args()
    import ray

    root = Path(args.out or tempfile.mkdtemp(prefix="bench-grid-"))
    root.mkdir(parents=True, exist_ok=True)
    # the stream is generated once and read from a file by each grid, and the models'
    # libraries are imported before the clocks start: the three runs differ only in how the
    # cells run
    events = root / "synthetic.csv"
    synthetic_stream(n_events=20_000, n_users=500, n_items=1_000, seed=0).to_csv(
        events, index=False)
    spec = GridSpec.from_dict({**SPEC, "datasets": {"synthetic": {"path": str(events)}}},
                              source="bench_grid")
    n = len(spec.cells())
    assert n == 16, n
    for model in SPEC["models"]:
        cell_factory(model, 1)
    print(f"{n} cells; load average before: {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores")

    t0 = time.perf_counter()
    serial = run_grid(spec, root / "serial", local=True, jobs=1, progress=False,
                      plots=False, overwrite=True)
    serial_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             log_to_driver=False)
    init_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        on_ray = run_grid(spec, root / "ray", progress=False, plots=False, overwrite=True)
        ray_s = time.perf_counter() - t0
    finally:
        ray.shutdown()

    t0 = time.perf_counter()
    local = run_grid(spec, root / "local2", local=True, jobs=2, progress=False, plots=False,
                     overwrite=True)
    local_s = time.perf_counter() - t0

    def recall(result):
        return result.cells.sort_values("cell")["recall@10"].to_numpy()

    for result in (serial, on_ray, local):
        assert (result.cells["status"] == "ok").all(), result.failed
    np.testing.assert_allclose(recall(on_ray), recall(serial), rtol=1e-12)
    np.testing.assert_allclose(recall(local), recall(serial), rtol=1e-12)

    def cells_s(result):
        return float(result.cells["cell_s"].sum())

    print(f"serial, in this process:     {serial_s:6.1f} s  (cells {cells_s(serial):.1f} s)")
    print(f"Ray, 2 workers:              {ray_s:6.1f} s  (cells {cells_s(on_ray):.1f} s; "
          f"ray.init {init_s:.1f} s apart)  speed-up {serial_s / ray_s:.2f}x "
          f"({serial_s / (ray_s + init_s):.2f}x with ray.init)")
    print(f"local, 2 worker processes:   {local_s:6.1f} s  (cells {cells_s(local):.1f} s)  "
          f"speed-up {serial_s / local_s:.2f}x")
    overhead = (2 * ray_s - cells_s(on_ray)) / n
    print(f"Ray's overhead per cell: {overhead * 1e3:.0f} ms of worker time outside the cell "
          f"((2 x {ray_s:.1f} s - {cells_s(on_ray):.1f} s) / {n}); cells ran "
          f"{cells_s(on_ray) / cells_s(serial):.2f}x as long as serially")
    print(f"load average after: {os.getloadavg()[0]:.2f}; folders under {root}")


if __name__ == "__main__":
    main()
