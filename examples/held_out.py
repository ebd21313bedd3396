"""The README's held-out column: its ml-100k rows replayed on the built-in synthetic stream.

    python examples/held_out.py

The defaults of the factor models, the neural model and the newcomer cold start were chosen on
MovieLens 100K; the synthetic stream (20,000 ratings, drifting tastes, a moving catalogue) had
no part in choosing most of them, so most of these numbers are out of sample. The exceptions
(since 2026-11): implicit-als's regularisation and context weight and the neural model's
batch size were chosen on the first half of ml-100k *and* this stream, so their rows at
1,000-event steps are in sample here. Each model keeps its own cold-start policy
(``cold_start=None``), as the ml-100k rows do.
"""

from __future__ import annotations

import recinc_plugins as rp
from recinc_plugins.evaluation import Stream, compare


def main() -> None:
    frame = rp.load_dataset("synthetic")
    rows = []
    for step, names in ((1, ("popularity", "neural")),
                        (1_000, ("popularity", "popularity-newcomer", "implicit-als",
                                 "implicit-bpr", "lightfm", "neural"))):
        models = {}
        for name in names:
            if name == "popularity-newcomer":
                models[name] = rp.make("popularity", cold_start="newcomer")
            elif name.startswith(("implicit", "lightfm")):
                models[name] = rp.make(name, seed=0, num_threads=1)
            elif name == "neural":
                models[name] = rp.make(name, seed=0)
            else:
                models[name] = rp.make(name)
        summary = compare(models, Stream(frame, step=step), k=10, cold_start=None).summary
        for _, row in summary.iterrows():
            rows.append((step, row["model"], row["recall@10"]))
    print("| step | model | recall@10 on the synthetic stream |")
    print("| --- | --- | --- |")
    for step, model, recall in rows:
        print(f"| {step:,} | {model} | {recall:.4f} |")


if __name__ == "__main__":
    main()
