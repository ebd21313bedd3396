"""The evaluation engine at scale: a 10M-event synthetic stream, and the old engine against the
new one on MovieLens 100K.

    python benchmarks/bench_scale.py                  # everything below (about 15 minutes)
    python benchmarks/bench_scale.py --only synthetic # the large stream alone
    python benchmarks/bench_scale.py --only ml100k    # old vs new engine on ml-100k
    python benchmarks/bench_scale.py --only sweep     # cost against events and catalogue, plot
    python benchmarks/bench_scale.py --events 1e6 --users 487000 --items 190000

Every replay runs in a fresh child process, so each peak resident memory is that replay's own
(the stream included). The large stream is ``load_dataset("synthetic-10m")`` (10,000,000
implicit events, 1,000,000 users, 200,000 items); other sizes are drawn with
``synthetic_stream(..., method="sampled")``.

What it prints, for the large stream:

- the BLAS speed of this machine on the scoring GEMM's shape (float32 GFLOP/s);
- popularity, every event ranked, 100,000-event steps: wall time, events/s, peak memory;
- implicit-als (64 factors), every event learned and 2% ranked: the same, the time spent
  ranking, and its ratio to the bound set by the GEMM flops it needed at that BLAS speed.

For ml-100k it replays popularity, implicit-als and neural at 1 and 1,000-event steps with the
engine of ``--old-ref`` (a git commit of this repository, read with ``git archive``) and with
this checkout's, and prints both speeds, their ratio, and whether every metric is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: the last commit with the engine that scored a users x catalogue float64 block per step
OLD_ENGINE = "a535c62"
ML100K_MODELS = {
    "popularity": {},
    "implicit-als": {"random_state": 0, "num_threads": 1},  # the old engine knows no `seed`
    "neural": {"seed": 0},
}
#: parameters giving the old tree's model where a default changed after the old engine:
#: implicit-als's small-step defaults ("auto") and regularisation, neural's batch size
NEW_ONLY = {"implicit-als": {"regularization": 30.0, "item_refresh": 0.0},
            "neural": {"batch_size": 256}}


# -- the child: one replay, reported as JSON ----------------------------------------------------

def _frame(spec: dict):
    from recinc_plugins.data import load_dataset, synthetic_stream

    if spec["data"] == "ml-100k":
        return load_dataset("ml-100k", home=os.environ.get("RECINC_DATA_HOME"), download=False)
    if spec["data"] == "synthetic-10m":
        return load_dataset("synthetic-10m")
    return synthetic_stream(n_events=spec["events"], n_users=spec["users"],
                            n_items=spec["items"], feedback="implicit", method="sampled",
                            seed=0)


def child(spec: dict) -> dict:
    """Build the stream, replay one model, report speed, memory and metrics."""
    from threadpoolctl import threadpool_limits

    from recinc_plugins.evaluation import Stream
    from recinc_plugins.evaluation.prequential import ReplayConfig, replay
    from recinc_plugins.registry import make

    t0 = time.perf_counter()
    frame = _frame(spec)
    generate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream = Stream(frame, step=spec["step"])
    del frame
    # the per-event protocol facts every model of a comparison shares (computed on first use,
    # which would otherwise land in the first model's ranking time)
    for fact in ("history", "history_first", "repeat", "cold_user", "cold_item"):
        getattr(stream, fact, None)
    stream_s = time.perf_counter() - t0
    fraction = spec.get("eval_fraction", 1.0)
    config = ReplayConfig(**({"eval_fraction": fraction} if fraction < 1 else {}))
    model = make(spec["model"], **spec.get("params", {}))
    threads = spec.get("threads")
    t0 = time.perf_counter()
    with threadpool_limits(threads):
        record = replay(spec["model"], model, stream, config)
    wall = time.perf_counter() - t0
    scored = getattr(record, "scored", None)  # (the old engine has no sampling)
    mask = scored if scored is not None else slice(None)
    rank = record.rank[mask]
    ndcg = np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)
    return {
        "generate_s": generate_s, "stream_s": stream_s, "wall_s": wall,
        "events": len(stream), "users": stream.n_users, "items": stream.n_items,
        "events_per_s": len(stream) / wall,
        "ranked": int(np.size(rank)),
        "recall": float((rank < 10).mean()), "ndcg": float(ndcg.mean()),
        "coverage": float(record.recommended[0].mean()),
        "rank_s": float(record.extra.get("rank_s", float("nan"))),
        "score_s": float(record.score_s.sum()), "update_s": float(record.update_s.sum()),
        "gemm_flops": float(record.extra.get("gemm_flops", 0.0)),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(spec: dict, pythonpath: str | None = None) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"child {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the sections -------------------------------------------------------------------------------

def blas_gflops(n_items: int, factors: int = 64, rows: int = 200) -> float:
    """float32 GFLOP/s of this machine's BLAS on the scoring GEMM's shape (best of 5)."""
    rng = np.random.default_rng(0)
    users = rng.random((rows, factors), dtype=np.float32)
    items = np.ascontiguousarray(rng.random((n_items, factors), dtype=np.float32).T)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        users @ items
        best = min(best, time.perf_counter() - t0)
    return 2 * rows * factors * n_items / best / 1e9


def synthetic(args: argparse.Namespace) -> None:
    if args.events == 10_000_000 and args.users == 1_000_000 and args.items == 200_000:
        data = {"data": "synthetic-10m"}
    else:
        data = {"data": "synthetic", "events": args.events, "users": args.users,
                "items": args.items}
    gflops = blas_gflops(args.items)
    print(f"BLAS, float32, the scoring GEMM's shape (200 x 64 x {args.items:,}): "
          f"{gflops:.1f} GFLOP/s")
    pop = run_child({**data, "model": "popularity", "step": 100_000})
    print(f"stream: {pop['events']:,} events, {pop['users']:,} users, {pop['items']:,} items; "
          f"generated in {pop['generate_s']:.1f} s, encoded in {pop['stream_s']:.1f} s")
    _line("popularity, every event ranked", pop)
    als = run_child({**data, "model": "implicit-als", "step": 100_000, "eval_fraction": 0.02,
                     "params": {"factors": 64, "seed": 0}})
    _line("implicit-als (64 factors), all learned, 2% ranked", als)
    gflops = max(gflops, blas_gflops(args.items))  # the faster of before and after: the
    # machine may be shared, and the bound should be the best this BLAS can do
    bound = als["gemm_flops"] / (gflops * 1e9)
    print(f"  ranking {als['rank_s']:.1f} s (of which in the model's calls and the GEMM "
          f"{als['score_s']:.1f} s) for {als['gemm_flops'] / 1e12:.2f} TFLOP; the GEMM bound "
          f"at {gflops:.1f} GFLOP/s is {bound:.1f} s: ratio {als['rank_s'] / bound:.2f}x")
    print(f"  learning {als['update_s']:.1f} s")


def _line(label: str, r: dict) -> None:
    per_m = r["peak_mb"] / (r["events"] / 1e6)
    print(f"{label}: {r['wall_s']:.1f} s, {r['events_per_s']:,.0f} events/s, peak "
          f"{r['peak_mb']:,.0f} MB ({per_m:,.0f} MB per million events), recall@10 "
          f"{r['recall']:.4f} over {r['ranked']:,} ranked events")


def ml100k(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old_ref,
                                  "recinc_plugins"], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        print(f"ml-100k, old engine ({args.old_ref}) vs this checkout, one BLAS thread:")
        print(f"{'model':<14}{'step':>6}{'old ev/s':>11}{'new ev/s':>11}{'new/old':>9}"
              f"  identical metrics (recall@10, ndcg@10, coverage@10)")
        for step in (1, 1_000):
            for name, params in ML100K_MODELS.items():
                spec = {"data": "ml-100k", "model": name, "step": step, "params": params,
                        "threads": 1}
                before = run_child(spec, pythonpath=old)
                spec["params"] = {**params, **NEW_ONLY.get(name, {})}
                after = run_child(spec, pythonpath=str(ROOT))
                same = all(before[m] == after[m] for m in ("recall", "ndcg", "coverage"))
                print(f"{name:<14}{step:>6}{before['events_per_s']:>11,.0f}"
                      f"{after['events_per_s']:>11,.0f}"
                      f"{after['events_per_s'] / before['events_per_s']:>8.2f}x  "
                      f"{'yes' if same else 'NO'} ({after['recall']:.5f}, {after['ndcg']:.5f}, "
                      f"{after['coverage']:.5f})")


def sweep(args: argparse.Namespace) -> None:
    """Cost against the catalogue (1M events) and against events (200,000 items; the
    10M-event point is the synthetic section's)."""
    points = [(1_000_000, 200_000, n_items) for n_items in (10_000, 50_000, 200_000)]
    points += [(n_events, n_events // 10, 200_000) for n_events in (300_000, 3_000_000)]
    rows = []
    print(f"{'events':>11}{'users':>10}{'items':>9}  {'popularity ev/s':>16}{'MB':>7}  "
          f"{'implicit-als 2% ev/s':>21}{'MB':>7}{'rank s':>8}")
    for n_events, n_users, n_items in points:
        data = {"data": "synthetic", "events": n_events, "users": n_users, "items": n_items}
        pop = run_child({**data, "model": "popularity", "step": 100_000})
        als = run_child({**data, "model": "implicit-als", "step": 100_000,
                         "eval_fraction": 0.02, "params": {"factors": 64, "seed": 0}})
        rows.append((n_events, pop["users"], pop["items"], pop, als, n_items))
        print(f"{n_events:>11,}{pop['users']:>10,}{pop['items']:>9,}  "
              f"{pop['events_per_s']:>16,.0f}{pop['peak_mb']:>7,.0f}  "
              f"{als['events_per_s']:>21,.0f}{als['peak_mb']:>7,.0f}{als['rank_s']:>8.1f}")
    if args.plot:
        _plot(rows, Path(args.plot))


def _plot(rows: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, by, label in ((axes[0], 2, "catalogue (items), 1M events"),
                          (axes[1], 0, "events (catalogue of up to 200,000 items)")):
        # the catalogue panel: the 1M-event streams; the events panel: the streams asked for
        # 200,000 items (a short stream reaches fewer of them: the axis says how many events)
        chosen = [r for r in rows if (r[0] == 1_000_000 if by == 2 else r[5] == 200_000)]
        chosen.sort(key=lambda r: r[by])
        x = [r[by] for r in chosen]
        ax.plot(x, [r[3]["wall_s"] / r[0] * 1e6 for r in chosen], "o-",
                label="popularity, every event ranked")
        ax.plot(x, [r[4]["wall_s"] / r[0] * 1e6 for r in chosen], "s-",
                label="implicit-als, 2% ranked")
        ax.plot(x, [r[4]["rank_s"] / r[0] * 1e6 for r in chosen], "s--",
                label="implicit-als: ranking only")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("µs per event (wall)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("recinc replay cost on synthetic power-law streams (2 cores, 100,000-event "
                 "steps)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("synthetic", "ml100k", "sweep"))
    parser.add_argument("--events", type=float, default=10_000_000)
    parser.add_argument("--users", type=float, default=1_000_000)
    parser.add_argument("--items", type=float, default=200_000)
    parser.add_argument("--old-ref", default=OLD_ENGINE,
                        help="git commit whose engine is the 'old' one (default: %(default)s)")
    parser.add_argument("--plot", default=None,
                        help="with the sweep: write the cost plot there (a .png)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    args.events, args.users, args.items = int(args.events), int(args.users), int(args.items)
    if args.only in (None, "ml100k"):
        ml100k(args)
    if args.only in (None, "synthetic"):
        synthetic(args)
    if args.only in (None, "sweep"):
        sweep(args)


if __name__ == "__main__":
    main()
