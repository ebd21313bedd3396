"""Model files: save and load time of format 2 (arrays and JSON) against format 1 (a pickle).

A neural model (``make("neural")``) learns a synthetic stream of 1,000,000 users, then is saved
and loaded in both formats, alternately, best of ``--repeat``; the ratios say what reading a
file that cannot run code costs. Format 1 is written as the previous release wrote it (a
header, then a pickle of the parameters and the learned state under a SHA-256) and read back
through ``load(path, trusted=True)``, which reads it as that release did.

    python benchmarks/bench_persistence.py [--users 1000000] [--events 20000] [--repeat 3]

Before each timed save or load the page cache's dirty pages are written out (``os.sync``), and
the formats take turns going first, so neither waits for the other's writes.

The model learns ``--events`` events of ``--users`` users (a neural model learns a few hundred
events a second on one core), then is given the ids of all ``--users`` users (``add_ids``), as
a model that has met them would hold: one embedding row and one history row each.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import struct
import tempfile
import time

import numpy as np
from _common import clocked

import recinc_plugins
from recinc_plugins.data import synthetic_stream
from recinc_plugins.persistence import MODEL_MAGIC


def save_format_1(model: recinc_plugins.IncrementalRecommender, path: str) -> None:
    """What ``model.save`` wrote before format 2: a JSON header, then a pickle."""
    payload = pickle.dumps({"params": model.get_params(), "state": model._get_state()},
                           protocol=pickle.HIGHEST_PROTOCOL)
    cls = type(model)
    header = json.dumps({
        "format": 1, "class": f"{cls.__module__}:{cls.__qualname__}",
        "payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "python": platform.python_version(), "versions": {},
    }).encode()
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<8sII", MODEL_MAGIC, 1, len(header)))
        fh.write(header)
        fh.write(payload)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    frame = synthetic_stream(n_events=args.events, n_users=args.users, n_items=5_000,
                             feedback="implicit", method="sampled", seed=0)
    model = recinc_plugins.make("neural", device="cpu", seed=0).fit(frame)
    model.add_ids(users=np.arange(args.users))
    model.partial_fit(frame.iloc[:0])  # makes room for every user
    print(f"neural model: {model.n_users:,} users, {model.n_items:,} items, learned "
          f"{model.n_events_:,} events ({time.perf_counter() - t0:.0f} s)")

    folder = tempfile.mkdtemp(prefix="bench_persistence_")
    paths = {1: os.path.join(folder, "format1.recinc"), 2: os.path.join(folder, "format2.recinc")}
    save = {1: lambda: save_format_1(model, paths[1]), 2: lambda: model.save(paths[2])}
    load = {1: lambda: recinc_plugins.load(paths[1], trusted=True),
            2: lambda: recinc_plugins.load(paths[2])}
    times: dict[tuple[str, str, int], list[float]] = {}
    for rep in range(args.repeat):  # alternately, in turn first, so both meet the same machine
        for fmt in ((1, 2) if rep % 2 == 0 else (2, 1)):
            for verb, run in (("save", save[fmt]), ("load", load[fmt])):
                os.sync()  # the other format's writes are not this one's to wait for
                cpu0 = time.process_time()
                times.setdefault(("wall", verb, fmt), []).append(clocked(run))
                times.setdefault(("cpu", verb, fmt), []).append(time.process_time() - cpu0)

    users = np.arange(0, args.users, max(1, args.users // 50))
    expected = model.recommend(users, k=10)
    for fmt in (1, 2):
        got = load[fmt]().recommend(users, k=10)
        assert np.array_equal(got.items, expected.items), f"format {fmt} lost the model"
        assert np.array_equal(got.scores, expected.scores), f"format {fmt} lost the model"

    print(f"{'':11s}{'format 1 (pickle)':>20s}{'format 2 (npz+json)':>22s}{'ratio':>8s}")
    for clock in ("wall", "cpu"):
        for verb in ("save", "load"):
            old, new = min(times[(clock, verb, 1)]), min(times[(clock, verb, 2)])
            print(f"{verb + ' ' + clock:11s}{old:>18.2f} s{new:>20.2f} s{new / old:>8.2f}")
    sizes = {fmt: os.path.getsize(path) / 2**20 for fmt, path in paths.items()}
    print(f"{'size':11s}{sizes[1]:>17.0f} MB{sizes[2]:>19.0f} MB{sizes[2] / sizes[1]:>8.2f}")
    print(f"(best of {args.repeat}; wall time, and CPU time of this process (writing into the "
          f"page cache included); {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()})")
    for path in paths.values():
        os.remove(path)
    os.rmdir(folder)


if __name__ == "__main__":
    main()
