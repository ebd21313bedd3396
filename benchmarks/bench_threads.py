"""Threads: per-event cost of small-step replays on a machine loaded by a second replay.

    python benchmarks/bench_threads.py                 # implicit-als and surprise-svd
    python benchmarks/bench_threads.py --models implicit-als --events 2000

For each model and step size (1 and 1,000 events) on the first events of MovieLens 100K:

- unloaded, one thread: the reference;
- loaded by a second replay (implicit-als at 1,000-event steps) running beside it, both with
  the threads every library starts by default (every core: what the harness did before it
  limited them), then both with the harness's default policy (one thread below 10,000-event
  steps).

It prints microseconds per event and each figure's ratio to the unloaded one-thread reference
(the target for the default policy: within 1.5x). Every replay runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from recinc_plugins._threads import cores

PARAMS = {"implicit-als": {"seed": 0}, "surprise-svd": {"seed": 0},
          "implicit-bpr": {"seed": 0}, "lightfm": {"seed": 0}}


def child(spec: dict) -> dict:
    from recinc_plugins.data import load_dataset
    from recinc_plugins.evaluation import Stream
    from recinc_plugins.evaluation.prequential import ReplayConfig, replay
    from recinc_plugins.registry import make

    frame = load_dataset("ml-100k", home=os.environ.get("RECINC_DATA_HOME"), download=False)
    stream = Stream(frame.iloc[:spec["events"]], step=spec["step"])
    model = make(spec["model"], **PARAMS.get(spec["model"], {}))
    t0 = time.perf_counter()
    record = replay(spec["model"], model, stream, ReplayConfig(threads=spec["threads"]))
    wall = time.perf_counter() - t0
    return {"us_per_event": wall / len(stream) * 1e6, "threads": record.extra["threads"],
            "recall": float((record.rank < 10).mean())}


def run(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="implicit-als,surprise-svd")
    parser.add_argument("--events", type=int, default=3_000,
                        help="events replayed at one event per step (x10 at 1,000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:  # the second replay: implicit-als at 1,000-event steps, over and over
        while True:
            child({"model": "implicit-als", "step": 1_000, "events": 100_000,
                   "threads": json.loads(args.load)})
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    every = cores()
    print(f"{every} cores; per-event cost in microseconds (ratio to unloaded, one thread)")
    print(f"{'model':<14}{'step':>6}{'unloaded 1 thr':>16}{'loaded, all thr':>18}"
          f"{'loaded, default':>18}  same numbers")
    for name in args.models.split(","):
        for step in (1, 1_000):
            events = args.events if step == 1 else 10 * args.events
            spec = {"model": name, "step": step, "events": events}
            reference = run({**spec, "threads": 1})
            loaded = {}
            for mode, threads in (("before", every), ("after", None)):
                # the second replay runs under the same policy as the measured one
                load = subprocess.Popen([sys.executable, __file__, "--load", json.dumps(threads)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    time.sleep(3)  # the second replay is past its start-up
                    loaded[mode] = run({**spec, "threads": threads})
                finally:
                    load.kill()
                    load.wait()
            before, after = loaded["before"], loaded["after"]
            ref = reference["us_per_event"]
            same = reference["recall"] == before["recall"] == after["recall"]
            print(f"{name:<14}{step:>6}{ref:>16,.0f}"
                  f"{before['us_per_event']:>11,.0f} ({before['us_per_event'] / ref:4.1f}x)"
                  f"{after['us_per_event']:>11,.0f} ({after['us_per_event'] / ref:4.1f}x)"
                  f"  {'yes' if same else 'NO'} (threads {after['threads']})")


if __name__ == "__main__":
    main()
