"""compare(): replay one stream through several models, in parallel processes, and summarise."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import inspect
import io
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._threads import cores
from ..base import IncrementalRecommender, Newcomer
from ..coldstart import check_cold_start
from ..data.interactions import InteractionsError
from .metrics import (
    drift_points,
    event_metrics,
    paired_tests,
    rating_metrics,
    wilson_interval,
    window_curves,
)
from .prequential import (
    ModelDiverged,
    ReplayConfig,
    ReplayRecord,
    read_checkpoint,
    replay,
    replay_threads,
    resolve_device,
)
from .report import folder_lock, write_atomic, write_report
from .stream import Stream

__all__ = ["CompareInterrupted", "CompareResult", "compare"]

_TARGETS = ("auto", "ranking", "rating")
_RANKING_METRICS = ("recall", "precision", "f1", "ndcg", "mrr")


_UNFINISHED = "not finished"


@dataclass
class CompareResult:
    """What :func:`compare` returns: one record per model that finished, and the failures.

    Attributes
    ----------
    stream : Stream
        The replayed stream.
    config : ReplayConfig
        The protocol every model was replayed under.
    records : dict
        Model name -> :class:`~recinc_plugins.evaluation.ReplayRecord` (per-event ranks
        and predictions, per-step costs), for the models that finished.
    failures : dict
        Model name -> the traceback of the error that stopped it (for a model that diverged,
        what went non-finite and when).
    diverged : dict
        Model name -> the 0-based step whose scoring found the model's scores or predicted
        ratings non-finite (its replay stopped there; its summary row says ``"diverged"``).
    unfinished : list
        The models an interrupted run (Ctrl-C) stopped before they finished.
    settings : dict
        Model name -> ``{"cold_start": ..., "seed": ...}``: what the comparison ran it with.
    rating_scale : tuple or None
        ``(low, high)``: the scale the stream's ratings were checked against (given, or
        inferred from the first events); None without ratings or a check.
    out_of_scale : dict
        ``{"policy": "error" | "clip" | "drop", "events": n}``: what was done with the
        ratings outside that scale, and to how many.
    summary : pandas.DataFrame
        One row per model (failed ones too, with ``status="failed"`` or ``"diverged"``, and
        the unfinished ones of an interrupted run with ``status="not finished"``).
    mask : numpy.ndarray or None
        Which scored events were ranked (``eval_fraction < 1``), the same for every model;
        None when every one was. Every metric is computed over the ranked events.
    """

    stream: Stream
    config: ReplayConfig
    records: dict[str, ReplayRecord]
    failures: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    #: per model, the cold-start policy and seed the comparison gave it
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    diverged: dict[str, int] = field(default_factory=dict)
    rating_scale: tuple[float, float] | None = None
    out_of_scale: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mask = self.config.sample(self.stream.n_scored)
        for name, rec in self.records.items():
            _check_mask(name, rec, self.mask)
        self.summary = self._summary()
        self._drift: pd.DataFrame | bool | None = False

    @property
    def k(self) -> int:
        """The first (headline) K."""
        return self.config.ks[0]

    @property
    def n_ranked(self) -> int:
        """How many scored events were ranked (all of them unless ``eval_fraction < 1``)."""
        return self.stream.n_scored if self.mask is None else int(self.mask.sum())

    def _ranked(self, values: np.ndarray) -> np.ndarray:
        """Per-scored-event ``values`` restricted to the ranked events."""
        return values if self.mask is None else values[self.mask]

    # -- per-event outcomes ------------------------------------------------------------------

    def hits(self, k: int | None = None) -> dict[str, np.ndarray]:
        """Model -> per-event hit@K (bool) on the ranked events (every scored event unless
        ``eval_fraction < 1``), in stream order."""
        k = self._check_k(k)
        return {name: self._ranked(rec.rank) < k for name, rec in self.records.items()}

    def _check_k(self, k: int | None) -> int:
        """``k``, or the headline K; ranks are kept only below the largest K of the run, so a
        larger one cannot be answered."""
        if k is None:
            return self.k
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > max(self.config.ks):
            raise ValueError(f"k={k} is above the largest K of this run: ranks were kept only "
                             f"for the Ks {list(self.config.ks)} (compare with ks=(..., {k}) "
                             "to get it)")
        return int(k)

    def events(self) -> pd.DataFrame:
        """Tidy per-event outcomes: one row per model and ranked event (``position``: the
        event's position in the stream)."""
        stream = self.stream
        off = stream.n_warmup
        idx = (np.arange(stream.n_scored) if self.mask is None
               else np.flatnonzero(self.mask))
        frames = []
        for name, rec in self.records.items():
            rank = rec.rank[idx]
            data = {
                "model": name,
                "position": off + idx,
                "user": stream.user_ids[stream.users[off + idx]],
                "item": stream.item_ids[stream.items[off + idx]],
                "rank": rank,
                f"hit@{self.k}": rank < self.k,
                "cold_user": stream.cold_user[idx],
                "cold_item": stream.cold_item[idx],
            }
            if stream.has_ratings:
                data["rating"] = stream.ratings[off + idx]
                data["pred"] = rec.pred[idx]
            frames.append(pd.DataFrame(data))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # -- summary -----------------------------------------------------------------------------

    def _summary(self) -> pd.DataFrame:
        rows = []
        for name in self.order:
            if name in self.diverged:
                rows.append(_diverged_row(name, self.failures[name], self.diverged[name]))
            elif name in self.failures:
                rows.append(_failed_row(name, self.failures[name]))
            elif name in self.records:
                rows.append(self._summary_row(name, self.records[name]))
            elif name in self.unfinished:
                rows.append(_unfinished_row(name))
        return _summary_frame(rows)

    def _summary_row(self, name: str, rec: ReplayRecord) -> dict[str, Any]:
        stream, config = self.stream, self.config
        n = stream.n_scored
        ranked = self._ranked
        row: dict[str, Any] = {"model": name, "status": "ok", "events": n,
                               "scored_events": self.n_ranked}
        row.update(self.settings.get(name, {}))
        row["context"] = config.context
        k0 = self.k
        if config.ranking:
            rank = ranked(rec.rank)
            for k in config.ks:
                metrics = event_metrics(rank, k)
                for metric in _RANKING_METRICS:
                    row[f"{metric}@{k}"] = _mean(metrics[metric])
                    if metric == "recall" and k == k0 and config.eval_fraction < 1:
                        # only a sample of the events was ranked: how far the recall of all
                        # of them could be
                        low, high = wilson_interval(int(metrics[metric].sum()), rank.size)
                        row[f"recall@{k}_lo"], row[f"recall@{k}_hi"] = low, high
                r = config.ks.index(k)
                row[f"coverage@{k}"] = float(rec.recommended[r].sum() / max(stream.n_items, 1))
            hit = rank < k0
            cold_user, cold_item = ranked(stream.cold_user), ranked(stream.cold_item)
            warm = ~cold_user & ~cold_item
            row["warm_events"] = int(warm.sum())
            row[f"warm_recall@{k0}"] = _mean(hit[warm])
            row["cold_user_events"] = int(cold_user.sum())
            row[f"cold_user_recall@{k0}"] = _mean(hit[cold_user])
            row["cold_item_events"] = int(cold_item.sum())
            if config.exclude_seen:
                repeat = stream.seen_before if config.context == "fresh" else stream.repeat
                row["repeat_events"] = int(ranked(repeat).sum())
        if stream.has_ratings:
            off = stream.n_warmup
            row.update(rating_metrics(ranked(rec.pred), ranked(stream.ratings[off:])))
        else:
            row.update({"rmse": float("nan"), "mae": float("nan"), "rated_events": 0})
        per_user = rec.score_s[rec.scored_users > 0] / rec.scored_users[rec.scored_users > 0]
        p50, p95, p99 = (np.percentile(per_user, [50, 95, 99]) * 1e3 if per_user.size
                         else (float("nan"),) * 3)
        update_s = float(rec.update_s.sum())
        row.update({
            "fit_s": rec.fit_s,
            "update_s": update_s,
            "update_us_per_event": update_s / n * 1e6 if n else float("nan"),
            "score_s": float(rec.score_s.sum()),
            "rec_p50_ms": float(p50), "rec_p95_ms": float(p95), "rec_p99_ms": float(p99),
            "wall_s": rec.wall_s,
            "cpu_s": float(rec.extra.get("cpu_s", float("nan"))),
            "events_per_s": n / rec.wall_s if rec.wall_s > 0 and n else float("nan"),
            "peak_mem_mb": rec.peak_mem_mb,
            "model_mb": rec.model_mb,
        })
        if stream.deletions is not None:
            done = getattr(rec, "deletions", None) or {}
            seconds = float(np.sum(done.get("forget_s", [])))
            ids = int(np.sum(done.get("users", [])) + np.sum(done.get("items", [])))
            row.update({"deletions": len(done.get("position", [])), "forget_s": seconds,
                        "forget_ms_per_id": seconds / ids * 1e3 if ids else float("nan")})
        return row

    # -- deletion requests -------------------------------------------------------------------

    def deletions(self, window: int | None = None, k: int | None = None) -> pd.DataFrame:
        """One row per model and position where deletion requests were served: when
        (``position``: stream events before it; ``timestamp``), what was asked (``users``,
        ``items``: ids requested), what the model forgot (``forgot_users``,
        ``forgot_items``: ids it knew; ``events``: their events), ``exact`` (its report),
        ``forget_ms`` (its ``forget`` call), and ``recall@K`` over the ``window`` ranked
        events before the request and after it (``recall@K_before``/``_after``; default
        window: the curves', a twentieth of the scored events, at least 100)."""
        stream = self.stream
        columns = ["model", "position", "timestamp", "users", "items", "forgot_users",
                   "forgot_items", "events", "exact", "forget_ms"]
        if stream.deletions is None:
            return pd.DataFrame(columns=columns)
        k = self._check_k(k)
        n = stream.n_scored
        if window is None:
            window = max(100, n // 20)
        elif isinstance(window, (bool, np.bool_)) or not isinstance(
                window, (int, np.integer)) or window < 1:
            raise ValueError(f"window must be a positive number of events, got {window!r}")
        asked = stream.deletions.groupby("served_at", sort=True).agg(
            users=("user", lambda v: int(pd.unique(v.dropna()).size)),
            items=("item", lambda v: int(pd.unique(v.dropna()).size)))
        times = None
        if "timestamp" in stream.deletions.columns:  # the first request's time, where several
            times = stream.deletions.groupby("served_at", sort=True)["timestamp"].first()
        ranked = np.ones(n, dtype=bool) if self.mask is None else self.mask
        rows = []
        for name, rec in self.records.items():
            done = getattr(rec, "deletions", None)
            if not done:
                continue
            hit = rec.rank < k
            for n_done, at in enumerate(done["position"]):
                at = int(at)
                lo = at - stream.n_warmup  # the request's place among the scored events
                before = np.flatnonzero(ranked[:lo])[-window:]
                after = lo + np.flatnonzero(ranked[lo:])[:window]
                row = {"model": name, "position": at,
                       "timestamp": times.get(at, pd.NaT) if times is not None else pd.NaT,
                       "users": int(asked.loc[at, "users"]), "items": int(asked.loc[at, "items"]),
                       "forgot_users": int(done["users"][n_done]),
                       "forgot_items": int(done["items"][n_done]),
                       "events": int(done["events"][n_done]),
                       "exact": bool(done["exact"][n_done]),
                       "forget_ms": float(done["forget_s"][n_done]) * 1e3,
                       f"recall@{k}_before": _mean(hit[before]) if self.config.ranking
                       else float("nan"),
                       f"recall@{k}_after": _mean(hit[after]) if self.config.ranking
                       else float("nan"),
                       "events_before": int(before.size), "events_after": int(after.size)}
                rows.append(row)
        frame = pd.DataFrame(rows)
        return frame if len(frame) else pd.DataFrame(columns=columns)

    # -- over time ---------------------------------------------------------------------------

    def curves(self, window: int | None = None, n_points: int = 200) -> pd.DataFrame:
        """Cumulative and sliding-window curves of every metric, for every model.

        ``window`` is in scored events (default: a twentieth of the stream, at least 100);
        with ``eval_fraction < 1`` the means are over the ranked events among them.
        Columns: ``model, metric, event, cumulative, window``.
        """
        n = self.stream.n_scored
        if window is None:
            window = max(100, n // 20)
        elif isinstance(window, (bool, np.bool_)) or not isinstance(
                window, (int, np.integer)) or window < 1:
            raise ValueError(f"window must be a positive number of events, got {window!r}")
        values: dict[str, dict[str, np.ndarray]] = {}
        off = self.stream.n_warmup
        unranked = None if self.mask is None else ~self.mask
        for name, rec in self.records.items():
            per: dict[str, np.ndarray] = {}
            if self.config.ranking:
                for k in self.config.ks:
                    for metric, v in event_metrics(rec.rank, k).items():
                        per[f"{metric}@{k}"] = v
            if self.stream.has_ratings and not np.isnan(rec.pred).all():
                err = rec.pred - self.stream.ratings[off:]
                with np.errstate(over="ignore"):  # a diverging model's errors overflow to inf
                    per["abs_error"] = np.abs(err)
                    per["squared_error"] = err ** 2
            if unranked is not None:  # NaN values are left out of the means
                for v in per.values():
                    v[unranked] = np.nan
            values[name] = per
        return window_curves(values, window, n_points)

    def paired(self, k: int | None = None, **kwargs: Any) -> pd.DataFrame:
        """Paired tests between every two models on hit@K over the ranked events (see
        :func:`~recinc_plugins.evaluation.paired_tests`)."""
        if not self.config.ranking:
            return paired_tests({})
        return paired_tests(self.hits(self._check_k(k)), **kwargs)

    @property
    def drift(self) -> pd.DataFrame | None:
        """ADWIN drift points on each model's hit@K stream (over the ranked events; ``event``
        is the scored-event position); None without River installed."""
        if self._drift is False:
            drift = drift_points(self.hits()) if self.config.ranking else None
            if drift is not None and self.mask is not None and len(drift):
                drift["event"] = np.flatnonzero(self.mask)[drift["event"].to_numpy()]
            self._drift = drift
        return self._drift

    # -- output ------------------------------------------------------------------------------

    def write(self, folder: str | Path, *, plots: bool = True,
              window: int | None = None) -> dict[str, Path]:
        """Write ``summary.csv``, ``summary.json``, ``curves.csv``, ``paired.csv``,
        ``drift.csv``, ``report.md`` and PNG plots (``window``: of the curves, in events)."""
        return write_report(self, Path(folder), plots=plots, window=window)

    def __repr__(self) -> str:
        unfinished = f", {len(self.unfinished)} not finished" if self.unfinished else ""
        return (f"CompareResult({len(self.records)} models finished, {len(self.failures)} "
                f"failed{unfinished}, {self.stream!r})")


class CompareInterrupted(KeyboardInterrupt):
    """Raised by :func:`compare` when it is interrupted (Ctrl-C): a KeyboardInterrupt that
    carries the :class:`CompareResult` of the models that ended before it (``.result``; the
    others are in ``result.unfinished``)."""

    def __init__(self, result: CompareResult) -> None:
        super().__init__(f"interrupted: {len(result.unfinished)} model(s) did not finish "
                         f"({', '.join(result.unfinished)})")
        self.result = result


def _check_mask(name: str, rec: ReplayRecord, mask: np.ndarray | None) -> None:
    scored = getattr(rec, "scored", None)
    if scored is None:
        return  # every event ranked: the metrics are restricted to the mask here
    if mask is None or scored.shape != mask.shape or not np.array_equal(scored, mask):
        raise ValueError(f"model {name!r} was ranked on other events than the comparison's "
                         "eval_fraction/eval_seed draw")


def _failed_row(name: str, tb: str) -> dict[str, Any]:
    error = tb.strip().splitlines()
    return {"model": name, "status": "failed", "error": error[-1] if error else "failed"}


def _diverged_row(name: str, message: str, step: int) -> dict[str, Any]:
    return {"model": name, "status": "diverged", "diverged_step": step, "error": message}


def _unfinished_row(name: str) -> dict[str, Any]:
    return {"model": name, "status": _UNFINISHED, "error": "interrupted before it finished"}


def _summary_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    summary = pd.DataFrame(rows)
    # a failed model's row has no counts: keep the count columns integer (nullable) rather
    # than let the missing values turn them into floats
    for col in summary.columns:
        if col in ("events", "diverged_step") or col.endswith("_events"):
            values = summary[col]
            if values.notna().any() and all(float(v).is_integer()
                                            for v in values.dropna()):
                summary[col] = values.astype("Int64")
    if "error" in summary.columns:
        summary = summary[[c for c in summary.columns if c != "error"] + ["error"]]
    return summary


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def _settled(models: dict[str, IncrementalRecommender], cold_start: Any, seed: Any,
             threads: int) -> tuple[dict[str, IncrementalRecommender], dict[str, dict[str, Any]]]:
    """Copies of ``models`` under the comparison's cold-start policy and seed (see
    ``compare``), and what each ended with (``{"cold_start": ..., "seed": ...}``). A model
    whose library runs its own threads (``num_threads`` left at its default, every core)
    gets the replay's threads: a small step's solve gains nothing from more, and a
    multi-threaded SGD (BPR, LightFM) is not reproducible."""
    if cold_start is not None:
        check_cold_start(cold_start, "cold_start")
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(
            seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    settled, settings = {}, {}
    for name, model in models.items():
        model = copy.deepcopy(model)
        names = model._param_names()
        defaults = {p.name: p.default
                    for p in inspect.signature(type(model).__init__).parameters.values()}
        if cold_start is not None:
            if "cold_start" not in names:
                model.cold_start = cold_start  # the shared fallback reads it (not a parameter)
            elif _same(model.cold_start, defaults["cold_start"]):
                model.set_params(cold_start=cold_start)
        if seed is not None and "seed" in names and model.seed is None:
            model.set_params(seed=int(seed))
        if "num_threads" in names and defaults["num_threads"] == 0 == model.num_threads:
            model.set_params(num_threads=threads)  # (0: every core, the library's default)
        policy = model._cold_start_policy()
        settings[name] = {"cold_start": policy if isinstance(policy, str) else repr(policy),
                          "seed": getattr(model, "seed", None) if "seed" in names else None}
        settled[name] = model
    return settled, settings


def _same(value: Any, default: Any) -> bool:
    try:
        return value is default or bool(value == default)
    except Exception:
        return False


def _as_models(models: Any) -> dict[str, IncrementalRecommender]:
    if isinstance(models, IncrementalRecommender):
        models = {type(models).__name__: models}
    elif not isinstance(models, Mapping):
        models = list(models)
        names = [type(m).__name__ for m in models]
        models = {(f"{n}-{i}" if names.count(n) > 1 else n): m
                  for i, (n, m) in enumerate(zip(names, models, strict=True))}
    if not models:
        raise ValueError("compare needs at least one model")
    for name, model in models.items():
        if not isinstance(model, IncrementalRecommender):
            raise TypeError(f"model {name!r} is a {type(model).__name__}, not an "
                            "IncrementalRecommender")
    return dict(models)


def _config(stream: Stream, k: int, ks: Any, target: str, exclude_seen: bool,
            clip: Any, **kwargs: Any) -> ReplayConfig:
    if ks is None:
        ks = (k,)
    if isinstance(ks, (int, np.integer)):
        ks = (ks,)
    ks = tuple(int(x) for x in ks)
    if not ks or any(x < 1 for x in ks):
        raise ValueError(f"k/ks must be positive integers, got {ks}")
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}")
    if target == "rating" and not stream.has_ratings:
        raise ValueError("target='rating' needs ratings, but the stream has no 'rating' column")
    if clip is not None:
        clip = (float(clip[0]), float(clip[1]))
        if not clip[0] < clip[1]:
            raise ValueError(f"clip must be (low, high) with low < high, got {clip}")
    rating = {"auto": "auto", "ranking": "never", "rating": "always"}[target]
    return ReplayConfig(ks=ks, exclude_seen=bool(exclude_seen), ranking=target != "rating",
                        rating=rating, clip=clip, **kwargs)


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when its parent dies (a ``kill -9`` of the
    comparison leaves no worker running on); best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # pragma: no cover - no prctl: the worker ends at its next send
        pass


def _worker(conn: Any, name: str, model: IncrementalRecommender, stream: Stream,
            config: ReplayConfig) -> None:
    # Ctrl-C is the parent's to handle: it stops the workers and keeps what finished
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    try:
        record = replay(name, model, stream, config)
    except ModelDiverged as exc:
        conn.send(("diverged", (str(exc), exc.step)))
    except BaseException:
        conn.send(("failed", traceback.format_exc()))
    else:
        conn.send(("ok", record))
    finally:
        conn.close()


# libraries whose thread pools (OpenMP, torch's) do not survive a plain fork
_FORK_UNSAFE = ("torch", "implicit", "lightfm", "sklearn")


def _default_context() -> str:
    if not sys.platform.startswith("linux"):
        return "spawn"
    # a plain fork starts at once and needs no main-module guard, but a child of a process
    # that has started OpenMP or torch threads can hang; forkserver children fork from a clean
    # server instead (and, like spawn, need `if __name__ == "__main__":` in scripts)
    if any(name in sys.modules for name in _FORK_UNSAFE):
        return "forkserver"
    return "fork"


class _Live:
    """The output folder of a running comparison: ``summary.csv`` (a row per model that
    ended, ok or failed) and ``status.json`` (every model's state), each rewritten through a
    temporary file and ``os.replace`` as soon as something changes, so a run that is killed
    at any moment leaves both complete and parseable."""

    def __init__(self, folder: str | Path, stream: Stream, config: ReplayConfig,
                 order: list[str]) -> None:
        self._write = write_atomic
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.base = CompareResult(stream=stream, config=config, records={}, order=[])
        self.order = order
        self.rows: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {name: {"status": "waiting"} for name in order}
        self.state = "running"
        self.started_at = _now()
        self.warned = False
        # an unwritable folder is an error before any work starts; a summary.csv left by an
        # earlier run is replaced by this run's (empty so far)
        self._write(self.folder / "status.json", self._status_text())
        self._write(self.folder / "summary.csv",
                    pd.DataFrame(columns=["model", "status"]).to_csv(index=False))

    def _status_text(self) -> str:
        payload = {"state": self.state, "pid": os.getpid(), "started": self.started_at,
                   "updated": _now(), "models": self.models}
        return json.dumps(payload, indent=2) + "\n"

    def _save(self, summary: pd.DataFrame | None = None) -> None:
        try:
            if summary is not None:
                buffer = io.StringIO()
                summary.to_csv(buffer, index=False)
                self._write(self.folder / "summary.csv", buffer.getvalue())
            self._write(self.folder / "status.json", self._status_text())
        except OSError as exc:  # a full disk must not stop the comparison itself
            if not self.warned:
                self.warned = True
                import warnings

                warnings.warn(f"could not update the files in {self.folder}: {exc}",
                              RuntimeWarning, stacklevel=3)

    def started(self, name: str) -> None:
        self.models[name] = {"status": "running"}
        self._save()

    def ended(self, name: str, record: ReplayRecord | None = None,
              error: str | None = None, diverged: int | None = None) -> None:
        if record is not None:
            try:
                self.rows[name] = self.base._summary_row(name, record)
            except Exception:  # the final summary will say what is wrong with the record
                self.rows[name] = _failed_row(name, traceback.format_exc())
            self.models[name] = {"status": "ok"}
        elif diverged is not None:
            self.rows[name] = _diverged_row(name, error or "diverged", diverged)
            self.models[name] = {"status": "diverged", "step": diverged,
                                 "error": self.rows[name]["error"]}
        else:
            self.rows[name] = _failed_row(name, error or "failed")
            self.models[name] = {"status": "failed", "error": self.rows[name]["error"]}
        self._save(_summary_frame([self.rows[n] for n in self.order if n in self.rows]))

    def finish(self, result: CompareResult | None, interrupted: bool) -> None:
        self.state = "interrupted" if interrupted else ("finished" if result is not None
                                                        else "error")
        for name, entry in self.models.items():
            if entry["status"] in ("waiting", "running"):
                self.models[name] = {"status": _UNFINISHED,
                                     "error": "interrupted before it finished"
                                     if interrupted else "the comparison stopped"}
        self._save(None if result is None else result.summary)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Outcomes:
    """What each model ended with, filled in as it ends (so an interrupted run keeps it),
    passed on to the live output folder and, where the log is not a terminal, as one line
    per model (no progress bars: no control characters in a log file)."""

    def __init__(self, order: list[str], live: _Live | None, log: bool, k: int | None
                 ) -> None:
        self.order = order
        self.live = live
        self.log = log
        self.k = k
        self.records: dict[str, ReplayRecord] = {}
        self.failures: dict[str, str] = {}
        self.diverged: dict[str, int] = {}
        self.t0: dict[str, float] = {}

    def started(self, name: str) -> None:
        self.t0[name] = time.monotonic()
        if self.live is not None:
            self.live.started(name)

    def ended(self, name: str, record: ReplayRecord | None = None, error: str | None = None,
              diverged: int | None = None) -> None:
        if record is not None:
            self.records[name] = record
        else:
            self.failures[name] = error or "failed"
            if diverged is not None:
                self.diverged[name] = diverged
        if self.live is not None:
            self.live.ended(name, record, error, diverged)
        if self.log:
            self._log_line(name, record, error, diverged)

    def _log_line(self, name: str, record: ReplayRecord | None, error: str | None,
                  diverged: int | None) -> None:
        done = len(self.records) + len(self.failures)
        seconds = time.monotonic() - self.t0.get(name, time.monotonic())
        if record is not None:
            hits = record.rank < (self.k or 0)
            ranked = hits if record.scored is None else hits[record.scored]
            what = f"ok, recall@{self.k} {ranked.mean():.4f}" if self.k and ranked.size \
                else "ok"
        elif diverged is not None:
            what = f"diverged at step {diverged}"
        else:
            lines = (error or "failed").strip().splitlines()
            what = f"failed: {lines[-1] if lines else 'failed'}"
        print(f"[{done}/{len(self.order)}] {name}: {what} ({seconds:.1f} s)", file=sys.stderr,
              flush=True)


def _run_parallel(models: dict[str, IncrementalRecommender], stream: Stream,
                  config: ReplayConfig, n_jobs: int, context: str | None,
                  outcomes: _Outcomes) -> None:
    """Replay the models in worker processes, at most ``n_jobs`` at once; ``outcomes`` is
    filled in place as models end (so an interrupted run keeps them)."""
    ctx = multiprocessing.get_context(context or _default_context())
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["numpy", "pandas", "recinc_plugins.evaluation"])
    queue = list(models.items())
    running: dict[Any, tuple[str, Any, float]] = {}
    # a step can run long past a soft budget check: the worker is stopped a little later
    hard = None if config.time_budget_s is None else 1.2 * config.time_budget_s + 2.0
    position = 0
    try:
        while queue or running:
            while queue and len(running) < n_jobs:
                name, model = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                cfg = ReplayConfig(**{**config.__dict__, "progress_position": position})
                proc = ctx.Process(target=_worker, args=(send, name, model, stream, cfg),
                                   name=f"recinc-compare-{name}", daemon=True)
                outcomes.started(name)
                try:
                    # with forkserver/spawn the model is pickled here: a model that cannot
                    # be fails alone, the others run
                    proc.start()
                except Exception:
                    recv.close()
                    outcomes.ended(name, error=traceback.format_exc())
                    continue
                finally:
                    send.close()
                running[recv] = (name, proc, time.monotonic())
                position += 1
            if running:
                _collect(running, outcomes, hard, config)
    finally:
        # on any error (or KeyboardInterrupt) in this loop, leave no worker running
        for conn, (_, proc, _) in running.items():
            if proc.is_alive():
                proc.kill()
            proc.join()
            conn.close()


def _collect(running: dict[Any, tuple[str, Any, float]], outcomes: _Outcomes,
             hard: float | None, config: ReplayConfig) -> None:
    """Wait for workers to finish (or to go over their hard time limit) and record them."""
    timeout = None
    if hard is not None:
        timeout = max(0.0, min(t + hard for _, _, t in running.values()) - time.monotonic())
    ready = wait(list(running), timeout=timeout)
    if not ready and hard is not None:
        for conn, (name, proc, started) in list(running.items()):
            if time.monotonic() - started >= hard:
                proc.kill()
                proc.join()
                del running[conn]
                conn.close()
                outcomes.ended(name, error=f"TimeoutError: model {name!r} went over its time "
                                           f"budget of {config.time_budget_s:g} s (worker "
                                           "stopped)")
        return
    for conn in ready:
        name, proc, _ = running.pop(conn)
        try:
            status, payload = conn.recv()
        except (EOFError, OSError):
            proc.join()
            status, payload = "failed", (f"worker process for {name!r} died without a "
                                         f"result (exit code {proc.exitcode})")
        else:
            proc.join()
        conn.close()
        if status == "ok":
            outcomes.ended(name, payload)
        elif status == "diverged":
            outcomes.ended(name, error=payload[0], diverged=payload[1])
        else:
            outcomes.ended(name, error=payload)


def compare(
    models: Mapping[str, IncrementalRecommender] | Any,
    stream: Stream | pd.DataFrame,
    *,
    k: int = 10,
    ks: Any = None,
    target: str = "auto",
    exclude_seen: bool = True,
    clip: tuple[float, float] | None = None,
    n_jobs: int = 1,
    progress: bool = False,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    time_budget_s: float | None = None,
    mp_context: str | None = None,
    eval_fraction: float = 1.0,
    eval_seed: int = 0,
    out: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    cold_start: str | Newcomer | None = "popularity",
    seed: int | None = 0,
    context: str = "learned",
    rating_scale: tuple[float, float] | str | None = "auto",
    on_out_of_scale: str = "error",
    deletions: pd.DataFrame | None = None,
) -> CompareResult:
    """Replay ``stream`` through every model, test-then-learn, and summarise.

    Every model starts from scratch (a copy is trained; the models passed in are untouched),
    learns the warm-up with ``fit``, then for each step is scored on the step's events and
    given them with ``partial_fit``. See ``docs/protocol.md`` for what exactly is counted.

    Parameters
    ----------
    models
        ``{name: model}`` (or a list of models, named after their classes).
    stream
        A :class:`Stream` (or an interactions frame, replayed with ``Stream``'s defaults).
    k, ks
        The cut-off for the ranking metrics, or several (``ks=(10, 20)``); the first is the
        headline one (cold-start splits, paired tests, drift).
    target
        ``"auto"``: rank every event, and predict its rating with models whose scores are
        ratings (``predicts_ratings()``) when the stream has ratings. ``"ranking"``: ranks
        only. ``"rating"``: predicted ratings from every model, no ranking.
    exclude_seen
        Leave the items the user had before the step out of the candidates.
    clip
        ``(low, high)``: clip predicted ratings to the rating scale.
    rating_scale, on_out_of_scale
        The scale of the stream's ratings: ``(low, high)``, ``"auto"`` (the range of the
        ratings of the warm-up, or without one of the first step; of the first 100 events
        when that is shorter) or None (no check). A rating outside it is an error
        naming its positions (``on_out_of_scale="error"``, the default), or is clipped to
        the scale (``"clip"``) or left out of the stream (``"drop"``), for every model; the
        result says how many (``out_of_scale``).
    n_jobs
        Models replayed at once, each in its own worker process (1: in this process). A model
        that raises, or whose worker dies, is reported in ``failures``; the others finish.
    progress
        Show a progress bar per model (events/s included); where standard error is not a
        terminal (a log file), one line per model as it ends instead.
    checkpoint_dir, checkpoint_every, resume
        Save each model and its replay state every ``checkpoint_every`` steps (and at the end)
        under ``checkpoint_dir``; with ``resume=True`` a model with a checkpoint there carries
        on from it instead of starting over.
    time_budget_s
        Stop a model whose replay runs longer than this (it is reported as failed).
    mp_context
        The multiprocessing start method for ``n_jobs > 1`` (default on Linux: ``fork`` when
        no OpenMP/torch library (torch, implicit, LightFM, scikit-learn) has been imported,
        else ``forkserver``; ``spawn`` elsewhere).
    eval_fraction, eval_seed
        Rank only a seeded fraction (``0 < eval_fraction <= 1``) of the scored events, the
        same events for every model; every event is still learned. Every metric is then over
        the ranked events (``scored_events`` in the summary), with a 95% interval on the
        headline recall (``recall@K_lo``, ``recall@K_hi``). Candidate items are never sampled.
    context
        ``"learned"`` (the default): an event is scored against what the model has learned,
        the steps before. ``"fresh"``: also with its user's events earlier in the same step,
        given as context (not learned; models with ``capabilities.context`` use them) and
        excluded from the candidates. See ``docs/protocol.md``.
    cold_start
        How every model answers unknown users, so that a comparison compares like with like:
        ``"popularity"`` (the default), ``"newcomer"`` or a ``Newcomer(...)``. A model whose
        ``cold_start`` parameter differs from its class's default keeps its own; ``None`` lets
        every model keep its own. The summary's ``cold_start`` column says which each used.
    seed
        The seed of every model whose ``seed`` is None (an int), so two runs of the same
        comparison give the same numbers; ``None`` leaves the models as given. The summary's
        ``seed`` column says which each used.
    threads
        BLAS/OpenMP/torch threads per model during the replay (the warm-up ``fit`` uses every
        core it has). None: one for steps under ``SMALL_STEP`` (10,000) events, else the
        model's share of the cores (all of them divided among the ``n_jobs`` workers). A
        model's own ``num_threads`` parameter still rules its library's threads.
    device
        Where factor models (those with ``item_vectors``, as implicit's) are scored: "auto"
        (a CUDA GPU through torch where there is one, else numpy's BLAS), "numpy", or a torch
        device ("cuda", "cpu").
    deletions
        Deletion requests served during the replay: a frame of ``timestamp`` (or
        ``position``) and ``user`` or ``item`` (see :class:`Stream`; a stream may carry them
        itself). At each request every model forgets the ids (``forget(...,
        missing="ignore")``), after the events before it and before the ones after it (the
        step it falls in is cut there); a forgotten id that comes back is new to the models.
        ``result.deletions()`` gives each request's cost per model and the recall before and
        after it; the summary adds ``deletions``, ``forget_s`` and ``forget_ms_per_id``.
    out
        A folder where each model's summary row is written (``summary.csv``) as soon as the
        model ends, ok or failed, and every model's state (``status.json``: ``waiting``,
        ``running``, ``ok``, ``failed``, ``diverged``, ``not finished``), so a run that is
        killed or interrupted leaves the models that finished. ``result.write(out)``
        completes the report. The folder is locked for the run (``.recinc.lock``, holding
        this process's id): a second run on it is refused at once.

    A model whose scores or predicted ratings become non-finite (NaN) is stopped there and
    reported with ``status="diverged"`` and the step (``diverged_step``), never as ``"ok"``.

    Raises
    ------
    InteractionsError
        A rating outside the rating scale, with ``on_out_of_scale="error"``.
    OutputFolderBusy
        ``out`` is in use by another run that is still going.
    CompareInterrupted
        On Ctrl-C (KeyboardInterrupt): the workers are stopped and ``.result`` holds the
        models that ended before it (the others in ``result.unfinished``). It is a
        KeyboardInterrupt, so code that does not catch it stops as on any Ctrl-C.

    Examples
    --------
    >>> from recinc_plugins.baselines import Popularity, Random
    >>> from recinc_plugins.data import synthetic_stream
    >>> from recinc_plugins.evaluation import Stream, compare
    >>> stream = Stream(synthetic_stream(n_events=2000, n_users=100, n_items=200, seed=3),
    ...                 step=100, warmup=200)
    >>> res = compare({"pop": Popularity(), "random": Random(seed=0)}, stream, k=10)
    >>> res.summary[["model", "events", "recall@10"]].round(3)
        model  events  recall@10
    0     pop    1800      0.116
    1  random    1800      0.098
    """
    if isinstance(stream, pd.DataFrame):
        stream = Stream(stream, deletions=deletions)
    elif isinstance(stream, Stream) and deletions is not None:
        if stream.deletions is not None:
            raise ValueError("the stream carries deletion requests already and deletions= "
                             "gives more: give them one way")
        stream = Stream(stream.frame, step=stream.step, warmup=stream.n_warmup,
                        deletions=deletions)
    if not isinstance(stream, Stream):
        raise TypeError(f"stream must be a Stream or an interactions DataFrame, got "
                        f"{type(stream).__name__}")
    stream, scale, out_of_scale = _checked_ratings(stream, rating_scale, on_out_of_scale)
    models = _as_models(models)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}")
    if n_jobs < 0:
        n_jobs = max(1, (multiprocessing.cpu_count() or 1) + 1 + n_jobs)
    if checkpoint_every and not checkpoint_dir:
        raise ValueError("checkpoint_every needs a checkpoint_dir to write to")
    if resume and not checkpoint_dir:
        raise ValueError("resume=True needs the checkpoint_dir to resume from")
    if checkpoint_dir and checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0 steps, got {checkpoint_every}")
    if isinstance(eval_fraction, (bool, np.bool_)) or not isinstance(
            eval_fraction, (int, float, np.integer, np.floating)) or not 0 < eval_fraction <= 1:
        raise ValueError("eval_fraction must be a number with 0 < eval_fraction <= 1 (the "
                         f"fraction of the scored events that is ranked), got {eval_fraction!r}")
    if isinstance(eval_seed, (bool, np.bool_)) or not isinstance(
            eval_seed, (int, np.integer)) or eval_seed < 0:
        raise ValueError(f"eval_seed must be a non-negative integer, got {eval_seed!r}")
    # a log file gets a line per model, not bars
    log = bool(progress) and not _is_terminal(sys.stderr)
    config = _config(stream, k, ks, target, exclude_seen, clip,
                     checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
                     checkpoint_every=int(checkpoint_every), resume=bool(resume),
                     progress=bool(progress) and not log, time_budget_s=time_budget_s,
                     eval_fraction=float(eval_fraction), eval_seed=int(eval_seed),
                     device=device, threads=None if threads is None else int(threads),
                     max_threads=max(1, cores() // min(n_jobs, len(models))))
    resolve_device(device)  # a wrong device is refused before any work starts
    if threads is not None and (isinstance(threads, (bool, np.bool_)) or not isinstance(
            threads, (int, np.integer)) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None (chosen by step size), "
                         f"got {threads!r}")
    if context not in ("learned", "fresh"):
        raise ValueError(f"context must be 'learned' or 'fresh', got {context!r}")
    config = dataclasses.replace(config, context=context)
    models, settings = _settled(models, cold_start, seed, replay_threads(stream, config))
    order = list(models)
    if config.checkpoint_dir and config.resume:
        for name in order:  # refuse a wrong checkpoint before any work starts
            # read whole (the model too, under the allow-list): a damaged or crafted file
            # is an error here, not a failed model later
            read_checkpoint(name, stream, config, models[name],
                            model_class=type(models[name]))
    with contextlib.nullcontext() if out is None else folder_lock(out):
        outcomes = _Outcomes(order, None if out is None else _Live(out, stream, config, order),
                             log, config.ks[0] if config.ranking else None)
        interrupted = _run(models, stream, config, n_jobs, mp_context, outcomes)
        records = {name: outcomes.records[name] for name in order if name in outcomes.records}
        unfinished = [name for name in order
                      if name not in records and name not in outcomes.failures]
        result = CompareResult(stream=stream, config=config, records=records,
                               failures=outcomes.failures, order=order, unfinished=unfinished,
                               settings=settings, diverged=outcomes.diverged,
                               rating_scale=scale, out_of_scale=out_of_scale)
        if outcomes.live is not None:
            outcomes.live.finish(result, interrupted)
    if interrupted:
        raise CompareInterrupted(result)
    return result


def _run(models: dict[str, IncrementalRecommender], stream: Stream, config: ReplayConfig,
         n_jobs: int, mp_context: str | None, outcomes: _Outcomes) -> bool:
    """Replay every model (in this process, or in workers), filling ``outcomes``; True when
    Ctrl-C stopped the run (the workers are stopped, what ended is kept)."""
    try:
        if n_jobs == 1 or len(models) == 1:
            for name, model in models.items():
                outcomes.started(name)
                try:
                    record = replay(name, model, stream, config)  # (our copy)
                except ModelDiverged as exc:
                    outcomes.ended(name, error=str(exc), diverged=exc.step)
                except Exception:
                    outcomes.ended(name, error=traceback.format_exc())
                else:
                    outcomes.ended(name, record)
        else:
            _run_parallel(models, stream, config, min(n_jobs, len(models)), mp_context,
                          outcomes)
    except KeyboardInterrupt:
        return True
    except BaseException:
        if outcomes.live is not None:
            outcomes.live.finish(None, interrupted=False)
        raise
    return False


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


#: "auto" infers the rating scale from the warm-up, or the first step, or when either is
#: shorter, the first this many events
SCALE_EVENTS = 100
_OUT_OF_SCALE = ("error", "clip", "drop")


def _infer_scale(sample: np.ndarray) -> tuple[float, float, list[float]]:
    """The range of ``sample``'s ratings, less the extreme values that look like errors: a
    value at either end seen in at most 1% of the sample (or once) and farther from the next
    value than the whole range of the others (1000 among ratings 1 to 5; not a rare 0.5 among
    half-stars). Returns ``(low, high, the values left out)``."""
    values, counts = np.unique(sample, return_counts=True)
    rare = counts <= max(1.0, 0.01 * sample.size)
    lo, hi = 0, values.size - 1
    while hi - lo >= 2:
        if rare[hi] and values[hi] - values[hi - 1] > values[hi - 1] - values[lo]:
            hi -= 1
        elif rare[lo] and values[lo + 1] - values[lo] > values[hi] - values[lo + 1]:
            lo += 1
        else:
            break
    odd = [float(v) for v in (*values[:lo], *values[hi + 1:])]
    return float(values[lo]), float(values[hi]), odd


def _checked_ratings(stream: Stream, rating_scale: Any, on_out_of_scale: str
                     ) -> tuple[Stream, tuple[float, float] | None, dict[str, Any]]:
    """``stream`` with its ratings checked against the rating scale (see ``compare``): the
    stream (clipped or with events dropped, where asked), the scale, what was done."""
    if on_out_of_scale not in _OUT_OF_SCALE:
        raise ValueError(f"on_out_of_scale must be one of {', '.join(_OUT_OF_SCALE)}, got "
                         f"{on_out_of_scale!r}")
    if not stream.has_ratings or rating_scale is None:
        return stream, None, {}
    ratings = stream.ratings
    if isinstance(rating_scale, str):
        if rating_scale != "auto":
            raise ValueError(f"rating_scale must be (low, high), 'auto' or None, got "
                             f"{rating_scale!r}")
        first = stream.n_warmup or int(stream.bounds[1])
        sample = ratings[:max(first, min(len(ratings), SCALE_EVENTS))]
        low, high, odd = _infer_scale(sample)
        source = (f"inferred from the first {sample.size:,} events' ratings"
                  + (f", where {', '.join(f'{v:g}' for v in odd)} looked like errors"
                     if odd else "")
                  + "; pass rating_scale=(low, high) (--rating-scale LOW,HIGH) to set it")
    else:
        try:
            low, high = (float(x) for x in rating_scale)
        except (TypeError, ValueError):
            raise ValueError(f"rating_scale must be (low, high), 'auto' or None, got "
                             f"{rating_scale!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"rating_scale must be (low, high) with finite low < high, got "
                             f"{rating_scale!r}")
        source = "as given"
    outside = (ratings < low) | (ratings > high)
    count = int(outside.sum())
    done = {"policy": on_out_of_scale, "events": count}
    if not count:
        return stream, (low, high), done
    if on_out_of_scale == "error":
        rows = np.flatnonzero(outside)
        shown = ", ".join(f"{r} ({ratings[r]:g})" for r in rows[:10])
        more = f" and {rows.size - 10} more" if rows.size > 10 else ""
        raise InteractionsError(
            f"column 'rating': {count} rating(s) outside the rating scale [{low:g}, "
            f"{high:g}] ({source}) at stream positions (timestamp order) {shown}{more}; "
            "clip them or drop them with on_out_of_scale='clip' or 'drop' "
            "(--on-out-of-scale)", column="rating", rows=rows)
    requests = None
    if stream.deletions is not None:
        requests = stream.deletions[["position", "user", "item"]].copy()
    if on_out_of_scale == "clip":
        frame = stream.frame.assign(rating=np.clip(ratings, low, high))
        warmup = stream.n_warmup
    else:
        frame = stream.frame[~outside].reset_index(drop=True)
        warmup = stream.n_warmup - int(outside[:stream.n_warmup].sum())
        if requests is not None:  # the same requests, among the events that are left
            before = np.concatenate([[0], np.cumsum(outside)])
            requests["position"] -= before[requests["position"].to_numpy()]
    return (Stream(frame, step=stream.step, warmup=warmup, deletions=requests), (low, high),
            done)
