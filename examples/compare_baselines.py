"""Compare the baselines on MovieLens 100K under the prequential protocol, with plots.

Run::

    RECINC_DATA_HOME=/path/to/data python examples/compare_baselines.py [--step 100] [--out DIR]

Replays all 100,000 ratings in timestamp order, 100 events per step: each step is scored
against the models as they were before it, then learned. Prints the summary, the paired tests
and the drift points, and writes ``report.md``, CSV/JSON and PNG plots to ``--out`` (a fresh
temporary folder by default: the outputs derive from ml-100k, whose licence forbids
redistributing it, so keep them out of version control).
"""

from __future__ import annotations

import argparse
import tempfile

from recinc_plugins import DecayedPopularity, Popularity, Random, load_dataset
from recinc_plugins.evaluation import Stream, compare, format_summary, protocol_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=100, help="events per step")
    parser.add_argument("--out", default=None, help="report folder (default: a temp folder)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    args = parser.parse_args()

    frame = load_dataset("ml-100k", download=False)
    stream = Stream(frame, step=args.step)
    models = {
        "popularity": Popularity(),
        "decayed-1000ev": DecayedPopularity(half_life=1000),
        "decayed-7d": DecayedPopularity(half_life="7D"),
        "random": Random(seed=0),
    }
    result = compare(models, stream, ks=(10, 20), n_jobs=args.jobs, progress=True)

    print(protocol_text(result), "\n")
    print(format_summary(result), "\n")
    paired = result.paired()
    print("paired tests on hit@10 (McNemar; 95% bootstrap interval on the recall difference)")
    print(paired[["model_a", "model_b", "diff", "ci_low", "ci_high", "mcnemar_p"]]
          .to_string(index=False, float_format=lambda x: f"{x:.4g}"), "\n")
    drift = result.drift
    if drift is not None:
        print(f"ADWIN drift points on hit@10: {len(drift)} "
              f"({drift.groupby('model').size().to_dict()})")
    out = args.out or tempfile.mkdtemp(prefix="compare-baselines-")
    written = result.write(out)
    print(f"wrote {', '.join(sorted(written))} to {out}")


if __name__ == "__main__":
    main()
