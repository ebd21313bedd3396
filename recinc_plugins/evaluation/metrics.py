"""Metrics from per-event ranks and predictions: summaries, curves, paired tests, drift."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

__all__ = [
    "drift_points",
    "event_metrics",
    "paired_tests",
    "rating_metrics",
    "wilson_interval",
    "window_curves",
]


def event_metrics(rank: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-event top-``k`` metrics from 0-based ranks (``inf``: not ranked, a miss).

    With one relevant item per event, recall@K is the hit indicator, precision@K = hit / K,
    F1@K = 2 hit / (K + 1), NDCG@K = 1 / log2(rank + 2) and MRR@K = 1 / (rank + 1) on a hit.

    Examples
    --------
    >>> import numpy as np
    >>> from recinc_plugins.evaluation import event_metrics
    >>> m = event_metrics(np.array([0.0, 2.0, 5.0, np.inf]), k=3)
    >>> m["recall"].tolist(), m["mrr"].round(3).tolist(), m["ndcg"].round(3).tolist()
    ([1.0, 1.0, 0.0, 0.0], [1.0, 0.333, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0])
    """
    rank = np.asarray(rank, dtype=np.float64)
    hit = rank < k
    safe = np.where(hit, rank, 0.0)
    hit_f = hit.astype(np.float64)
    return {
        "recall": hit_f,
        "precision": hit_f / k,
        "f1": 2.0 * hit_f / (k + 1),
        "ndcg": np.where(hit, 1.0 / np.log2(safe + 2.0), 0.0),
        "mrr": np.where(hit, 1.0 / (safe + 1.0), 0.0),
    }


def rating_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE and MAE over the events with a prediction (NaN predictions are left out)."""
    made = ~np.isnan(pred)
    if not made.any():
        return {"rmse": float("nan"), "mae": float("nan"), "rated_events": 0}
    err = pred[made] - truth[made]
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
            "rated_events": int(made.sum())}


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a rate of ``hits`` out of ``n`` (NaNs when ``n`` is 0).

    With ``eval_fraction < 1`` it brackets the headline recall@K: the ranked events are
    treated as independent draws, so it also covers the recall the model would have had on
    every scored event (conservatively: the finite-population correction is left out), and,
    like the paired tests, it ignores the dependence between the events of a stream. Unlike
    the plain normal interval it stays inside [0, 1] and does not collapse at 0 hits.

    Examples
    --------
    >>> from recinc_plugins.evaluation.metrics import wilson_interval
    >>> [round(x, 4) for x in wilson_interval(30, 300)]
    [0.0709, 0.1392]
    >>> [round(x, 4) for x in wilson_interval(0, 50)]
    [0.0, 0.0713]
    """
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def window_curves(values: dict[str, dict[str, np.ndarray]], window: int,
                  n_points: int = 200) -> pd.DataFrame:
    """Cumulative and sliding-window means of per-event metric streams.

    ``values`` maps model -> metric -> per-event values (NaN entries are left out of the
    means). Returns a tidy frame with columns ``model, metric, event, cumulative, window``
    sampled at about ``n_points`` evenly spaced event counts (``event`` is 1-based).
    """
    rows = []
    for model, metrics in values.items():
        for metric, v in metrics.items():
            v = np.asarray(v, dtype=np.float64)
            n = v.size
            if n == 0:
                continue
            ok = ~np.isnan(v)
            csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
            ccnt = np.concatenate([[0], np.cumsum(ok)])
            at = np.unique(np.linspace(1, n, min(n_points, n)).round().astype(np.int64))
            lo = np.maximum(at - window, 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                cumulative = csum[at] / ccnt[at]
                win = (csum[at] - csum[lo]) / (ccnt[at] - ccnt[lo])
            rows.append(pd.DataFrame({"model": model, "metric": metric, "event": at,
                                      "cumulative": cumulative, "window": win}))
    if not rows:
        return pd.DataFrame(columns=["model", "metric", "event", "cumulative", "window"])
    return pd.concat(rows, ignore_index=True)


def paired_tests(hits: dict[str, np.ndarray], *, n_boot: int = 2000, alpha: float = 0.05,
                 seed: int = 0) -> pd.DataFrame:
    """For each pair of models, on the same events: McNemar's exact test on hits, and a
    bootstrap interval on the difference in recall.

    The bootstrap resamples events with replacement; for a difference of 0/1 hits the
    resampled mean depends only on how many +1, 0 and -1 differences are drawn, so it is drawn
    from that multinomial directly (the same distribution, in constant time per resample).
    Events are treated as independent, which a stream only approximates.

    Examples
    --------
    >>> import numpy as np
    >>> from recinc_plugins.evaluation import paired_tests
    >>> a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    >>> b = np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    >>> row = paired_tests({"a": a, "b": b}).iloc[0]
    >>> int(row["a_only"]), int(row["b_only"]), round(float(row["mcnemar_p"]), 4)
    (7, 0, 0.0156)
    """
    from scipy.stats import binomtest

    names = list(hits)
    rng = np.random.default_rng(seed)
    rows = []
    for x in range(len(names)):
        for y in range(x + 1, len(names)):
            a, b = np.asarray(hits[names[x]], bool), np.asarray(hits[names[y]], bool)
            if a.size != b.size:
                raise ValueError(f"models {names[x]!r} and {names[y]!r} were scored on "
                                 f"different numbers of events ({a.size} and {b.size})")
            n = a.size
            a_only = int(np.count_nonzero(a & ~b))
            b_only = int(np.count_nonzero(~a & b))
            discordant = a_only + b_only
            p = binomtest(a_only, discordant, 0.5).pvalue if discordant else 1.0
            diff = (a_only - b_only) / n if n else float("nan")
            if n:
                draws = rng.multinomial(n, [a_only / n, b_only / n, 1 - discordant / n],
                                        size=n_boot)
                boot = (draws[:, 0] - draws[:, 1]) / n
                low, high = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
            else:
                low = high = float("nan")
            rows.append({
                "model_a": names[x], "model_b": names[y], "events": n,
                "recall_a": float(a.mean()) if n else float("nan"),
                "recall_b": float(b.mean()) if n else float("nan"),
                "diff": diff, "ci_low": float(low), "ci_high": float(high),
                "a_only": a_only, "b_only": b_only, "mcnemar_p": float(p),
                "significant": bool(p < alpha),
            })
    return pd.DataFrame(rows, columns=["model_a", "model_b", "events", "recall_a", "recall_b",
                                       "diff", "ci_low", "ci_high", "a_only", "b_only",
                                       "mcnemar_p", "significant"])


def drift_points(hits: dict[str, np.ndarray], *, delta: float = 0.002) -> pd.DataFrame | None:
    """Events where River's ADWIN detects a change in each model's hit rate.

    Returns None when River is not installed. ``event`` is the 0-based index among the scored
    events; ``before``/``after`` are the hit rates of the 500 events on each side.
    """
    try:
        from river.drift import ADWIN
    except ImportError:
        return None
    rows = []
    for model, hit in hits.items():
        detector = ADWIN(delta=delta)
        values = np.asarray(hit, dtype=np.float64)
        for pos, value in enumerate(values.tolist()):
            detector.update(value)
            if detector.drift_detected:
                rows.append({"model": model, "event": pos,
                             "before": float(values[max(pos - 500, 0):pos + 1].mean()),
                             "after": float(values[pos + 1:pos + 501].mean())
                             if pos + 1 < values.size else float("nan")})
    return pd.DataFrame(rows, columns=["model", "event", "before", "after"])
