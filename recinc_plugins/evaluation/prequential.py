"""The prequential replay of one model over a Stream: score each step, then learn it.

This is the harness's hot loop. It talks to a model only through the public encoded interface
of :class:`~recinc_plugins.base.IncrementalRecommender` (``add_ids``, ``learn_encoded``,
``score_block``, ``score_encoded``, ``cold_scores``, ``shared_scores``, ``item_vectors`` and
``user_vectors``), translating the stream's codes into the model's own indices with tables
filled only when new ids appear, so no DataFrame is built per step and a model written outside
this package is replayed exactly like a built-in one.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import hashlib
import importlib.util
import math
import os
import pickle
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._threads import cores
from .._threads import limit as limit_threads
from ..base import Batch, IncrementalRecommender, top_k
from ..context import Context
from ..persistence import (
    CHECKPOINT_MAGIC,
    FORMAT_VERSION,
    ContentReader,
    build_model,
    library_versions,
    model_content,
    persisted_classes,
    persisted_names,
    read_container,
    write_container,
)
from ..sparse import concat_ranges
from .stream import Stream

__all__ = ["CheckpointError", "ModelDiverged", "ReplayConfig", "ReplayRecord", "replay"]

#: with fresh context, a row is scored with at most this many of its user's latest in-step items
CONTEXT_ITEMS = 50
#: steps of fewer events than this replay with one thread by default (ReplayConfig.threads);
#: measured with implicit-als on ml-100k on a shared 2-core machine: one thread was as fast or
#: faster at steps of 10 to 10,000 events, and 10x faster at one event with a second replay
#: running beside it
SMALL_STEP = 10_000
#: 4: one file in the model files' format (arrays and JSON); 3 was a pickle
_CHECKPOINT_VERSION = 4
#: the most bytes of scores held at once when a step ranks many users (a block of users)
_BLOCK_BYTES = 32 * 2**20
#: what ``ReplayRecord.deletions`` keeps per position where requests were served
_DELETION_FIELDS = ("position", "forget_s", "users", "items", "events", "exact")


@dataclass(frozen=True)
class ReplayConfig:
    """The protocol settings shared by every model of a comparison."""

    ks: tuple[int, ...] = (10,)
    exclude_seen: bool = True
    ranking: bool = True
    #: "auto": predicted ratings for models whose scores are ratings; "always"; "never"
    rating: str = "auto"
    clip: tuple[float, float] | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    progress: bool = False
    progress_position: int = 0
    #: stop a model (reported as failed) once its replay has run this many seconds
    time_budget_s: float | None = None
    #: the fraction of scored events that are ranked (a seeded draw, the same for every model);
    #: every event is still learned
    eval_fraction: float = 1.0
    #: the seed of that draw
    eval_seed: int = 0
    #: where factor models' scores are computed: "auto" (a CUDA GPU through torch where there
    #: is one, else numpy), "numpy", or a torch device ("cuda", "cuda:1", "cpu")
    device: str = "auto"
    #: "learned": an event is scored with what the model has learned (the steps before);
    #: "fresh": also with its user's events earlier in the same step, given as context (not
    #: learned) and excluded from the candidates
    context: str = "learned"
    #: BLAS/OpenMP/torch threads for the model's learning and scoring during the replay
    #: (the warm-up ``fit`` runs with every core): None picks 1 for steps under
    #: ``SMALL_STEP`` events (a small solve gains nothing from more, and loses most on a busy
    #: machine) and ``max_threads`` otherwise
    threads: int | None = None
    #: the cores one replay may use (``compare`` gives each of its ``n_jobs`` workers a share);
    #: None: every core of the machine
    max_threads: int | None = None

    def key(self) -> tuple:
        """What a checkpoint must agree on to be resumed."""
        return (self.ks, self.exclude_seen, self.ranking, self.rating, self.clip,
                self.eval_fraction, self.eval_seed, self.context)

    def sample(self, n_scored: int) -> np.ndarray | None:
        """Which of ``n_scored`` events are ranked: a boolean mask, or None for all of them.

        Each event is kept with probability ``eval_fraction`` from a generator seeded with
        ``eval_seed``, so every model of a comparison is ranked on the same events.
        """
        if self.eval_fraction >= 1.0:
            return None
        return np.random.default_rng(self.eval_seed).random(n_scored) < self.eval_fraction


@dataclass
class ReplayRecord:
    """What one model's replay produced: per-event outcomes and per-step costs.

    ``rank`` is the 0-based rank of each scored event's item among the candidates when it is
    within the top ``max(ks)``, else ``inf`` (ranked lower, never seen before the step, or an
    item the user already had while seen items are excluded); ``pred`` the predicted rating
    (NaN where none was made). ``scored`` marks the events that were ranked when only a
    fraction was (``ReplayConfig.eval_fraction``), None when every event was; ranking metrics
    are means over the ranked events only (an unranked event's ``rank`` is ``inf`` too).
    """

    name: str
    rank: np.ndarray
    pred: np.ndarray
    recommended: np.ndarray  # (len(ks), n_items) bool: item was in some top-K list
    score_s: np.ndarray  # per step: time in the model's scoring calls
    update_s: np.ndarray  # per step: time in the model's partial_fit
    scored_users: np.ndarray  # per step: rows the model scored
    fit_s: float = 0.0
    wall_s: float = 0.0
    peak_mem_mb: float = float("nan")
    model_mb: float = float("nan")
    predicts_ratings: bool = False
    steps_done: int = 0
    resumed_from: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    scored: np.ndarray | None = None
    #: the deletion requests served (a stream with requests; else None), one entry per
    #: position the replay served some at: ``position`` (events before), ``forget_s`` (the
    #: model's ``forget`` call), ``users``, ``items`` and ``events`` (what it forgot: ids it
    #: knew, and their events), ``exact`` (its report's word)
    deletions: dict[str, list] | None = None


def _rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _fresh_memory_baseline() -> float:
    """Start a model's memory account: return what earlier models freed to the system
    (``malloc_trim``) and reset the process's peak resident size (Linux's ``clear_refs``), so
    that the peak read at the end (``_peak_rss_mb``) is this model's, not an earlier one's.
    Returns the resident memory now, in MB."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            pass
    return _rss_mb()


def _peak_rss_mb() -> float | None:
    """The process's peak resident size since the last reset (VmHWM), in MB; None where the
    system does not say."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_range(values: np.ndarray, start: int) -> bool:
    """``values`` is ``start, start + 1, ...``: model indices equal the stream's codes."""
    return bool(np.array_equal(values, np.arange(start, start + values.size)))


class _ByteCounter:
    """A write-only file that counts what is written: a pickled size without the bytes."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


def _user_vectors(model: IncrementalRecommender, users: np.ndarray,
                  context: Context | None) -> np.ndarray:
    return model.user_vectors(users) if context is None else model.user_vectors(users, context)


def replay_threads(stream: Stream, config: ReplayConfig) -> int:
    """The threads a replay's steps run with (``ReplayConfig.threads``)."""
    if config.threads is not None:
        return int(config.threads)
    if stream.n_scored / max(stream.n_steps, 1) < SMALL_STEP:
        return 1
    return int(config.max_threads or cores())


def resolve_device(spec: str) -> Any:
    """The torch device factor scores are computed on, or None for numpy (see
    ``ReplayConfig.device``). "auto" imports torch only on a machine with an NVIDIA driver."""
    if spec == "numpy":
        return None
    if spec == "auto":
        if not os.path.exists("/dev/nvidiactl") or importlib.util.find_spec("torch") is None:
            return None
        import torch

        return torch.device("cuda") if torch.cuda.is_available() else None
    try:
        import torch
    except ImportError as exc:
        raise ValueError(f"device={spec!r} computes scores with torch, which is not installed "
                         "(pip install 'recinc-plugins[torch]'), or use device='numpy'"
                         ) from exc
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'numpy' or a torch device such as 'cuda', "
                         f"got {spec!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r}, but torch sees no CUDA GPU here (use 'auto' or "
                         "'numpy')")
    return device


def _safe_name(name: str) -> str:
    """A file stem for model ``name``: its safe characters and a short hash of the exact name
    (so "pop/a" and "pop_a" do not share files)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "model"
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _model_identity(model: IncrementalRecommender) -> tuple[str, dict[str, str]]:
    """The model's class and constructor parameters, as a checkpoint records them: each value
    by its repr (memory addresses dropped), so any parameter can be stored and compared."""
    cls = type(model)
    try:
        params = model.get_params()
    except Exception as exc:  # a model whose parameters cannot be read back
        params = {"<get_params>": f"{type(exc).__name__}: {exc}"}
    return (f"{cls.__module__}.{cls.__qualname__}",
            {key: re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))
             for key, value in sorted(params.items())})


class _Replay:
    """The mutable state of one replay; checkpointable between steps.

    The protocol is written once, for any step size: each step's ranked events are grouped by
    user, every user gets one top-``max(ks)`` list (the unknown users of a step share the
    cold-start one), the lists give the coverage, and an event's rank is its item's place in
    its user's list. How a list is computed follows what the model says of its scores:

    - ``shared_scores()`` (the same for every known user) and the cold-start fallback: one
      exact order of the step's best items, each user's list read off it past the user's own
      excluded items: O(history) per user, not O(catalogue);
    - ``item_vectors()`` (a dot product): float32 GEMM blocks, under a memory budget;
    - otherwise ``score_block`` in blocks of users.
    """

    def __init__(self, name: str, model: IncrementalRecommender, stream: Stream,
                 config: ReplayConfig) -> None:
        self.name = name
        self.model = model
        self.stream = stream
        self.config = config
        self.identity = _model_identity(model)  # as given: what a resume must agree on
        self.table_u = np.full(stream.n_users, -1, dtype=np.int64)
        self.table_i = np.full(stream.n_items, -1, dtype=np.int64)
        self.mapped_u = 0
        self.mapped_i = 0
        # one-event rating steps run through score_then_learn_encoded: steps before
        # fused_until are done; fused says whether the model has the path (None: not asked)
        self.fused_until = 0
        self.fused: bool | None = None
        # the model's indices equal the stream's codes (the usual case): no translation needed
        self.identity_u = True
        self.identity_i = True
        self.sample = config.sample(stream.n_scored)
        self.record = ReplayRecord(
            name=name,
            rank=np.full(stream.n_scored, np.inf),
            pred=np.full(stream.n_scored if stream.has_ratings else 0, np.nan),
            recommended=np.zeros((len(config.ks), stream.n_items), dtype=bool),
            score_s=np.zeros(stream.n_steps),
            update_s=np.zeros(stream.n_steps),
            scored_users=np.zeros(stream.n_steps, dtype=np.int64),
            scored=self.sample,
        )
        self.device = resolve_device(config.device)
        # per kind of row (unknown user, known user): the last one-row list's kmax-th score
        self.theta = {False: -np.inf, True: -np.inf}
        # deletion requests: where they are served, and the stream's item codes forgotten so
        # far (never candidates again; an item that comes back has a new code)
        self.groups = stream.deletion_groups
        self.gone_i: np.ndarray | None = None
        if self.groups:
            self.gone_i = np.zeros(stream.n_items, dtype=bool)
            self.record.deletions = {key: [] for key in _DELETION_FIELDS}
        self.mem_base = _fresh_memory_baseline()
        self.mem_peak = self.mem_base

    # -- id translation ----------------------------------------------------------------------

    def _map_new(self, n_users: int, n_items: int) -> None:
        """Give the model the ids first seen before ``n_users``/``n_items`` (stream codes)."""
        stream = self.stream
        if n_users > self.mapped_u:
            new, _ = self.model.add_ids(users=stream.user_ids[self.mapped_u:n_users])
            self.table_u[self.mapped_u:n_users] = new
            if self.identity_u and not _is_range(new, self.mapped_u):
                self.identity_u = False
            self.mapped_u = n_users
        if n_items > self.mapped_i:
            _, new = self.model.add_ids(items=stream.item_ids[self.mapped_i:n_items])
            self.table_i[self.mapped_i:n_items] = new
            if self.identity_i and not _is_range(new, self.mapped_i):
                self.identity_i = False
            self.mapped_i = n_items

    # -- warm-up -----------------------------------------------------------------------------

    def start(self) -> None:
        stream, model = self.stream, self.model
        t0 = time.perf_counter()
        if stream.n_warmup:
            model.fit(stream.warmup_frame())
        else:
            model.reset()
        self.record.fit_s = time.perf_counter() - t0
        # the model encoded the warm-up itself: read its indices for the stream's codes (add,
        # not lookup, in case a model's fit left some id out)
        n_u = int(stream.users[: stream.n_warmup].max(initial=-1)) + 1
        n_i = int(stream.items[: stream.n_warmup].max(initial=-1)) + 1
        users, items = model.add_ids(users=stream.user_ids[:n_u], items=stream.item_ids[:n_i])
        self.table_u[:n_u], self.table_i[:n_i] = users, items
        self.mapped_u, self.mapped_i = n_u, n_i
        # whether a model's scores are ratings is settled by its first learned events: after
        # the warm-up, or after the first step when there is none
        self.rates = self._predict_ratings()
        self.rate_check = not self.rates and not model.is_fitted
        self.identity_u = _is_range(users, 0)
        self.identity_i = _is_range(items, 0)
        if self.groups:
            self._serve(stream.n_warmup)  # requests before the first scored step

    # -- deletion requests -------------------------------------------------------------------

    def _serve(self, at: int) -> None:
        """Serve the deletion requests placed at stream position ``at`` (between two steps):
        the model forgets the ids (``forget(..., missing="ignore")``: an id it never learned is
        skipped), their stream codes lose their model index, forgotten items are no candidates
        from now on, and the other codes are looked up again (a model that forgets by
        retraining renumbers its ids)."""
        group = self.groups.get(at)
        if group is None:
            return
        model, stream = self.model, self.stream
        users, items = group["users"], group["items"]
        t0 = time.perf_counter()
        report = model.forget(users=users if users.size else None,
                              items=items if items.size else None, missing="ignore")
        seconds = time.perf_counter() - t0
        done = self.record.deletions
        for key, value in (("position", at), ("forget_s", seconds), ("users", report.users),
                           ("items", report.items), ("events", report.events),
                           ("exact", bool(report.exact))):
            done[key].append(value)
        self.table_u[group["user_codes"]] = -1
        self.table_i[group["item_codes"]] = -1
        self.gone_i[group["item_codes"]] = True
        if not (report.users or report.items):
            return
        live_u = np.flatnonzero(self.table_u[:self.mapped_u] >= 0)
        live_i = np.flatnonzero(self.table_i[:self.mapped_i] >= 0)
        new_u, new_i = model.add_ids(users=stream.user_ids[live_u],
                                     items=stream.item_ids[live_i])
        self.table_u[live_u], self.table_i[live_i] = new_u, new_i
        # a forgotten code is never met again: the others decide whether codes are indices
        self.identity_u = bool(np.array_equal(new_u, live_u))
        self.identity_i = bool(np.array_equal(new_i, live_i))

    def _gone_until(self, position: int) -> None:
        """The items forgotten by the requests served up to ``position`` (a resumed replay)."""
        for at, group in self.groups.items():
            if at <= position:
                self.gone_i[group["item_codes"]] = True

    # -- scoring -----------------------------------------------------------------------------

    def _predict_ratings(self) -> bool:
        rating = self.config.rating
        if rating == "never" or not self.stream.has_ratings:
            return False
        return rating == "always" or self.model.predicts_ratings()

    def _to_stream_order(self, row: np.ndarray, n_items: int, scores: bool = True
                         ) -> np.ndarray:
        """A score row (or rows) in model item indices -> a fresh array over stream item codes
        ``0..n_items-1``, float32 kept, anything else float64; forgotten items' scores -inf
        (``scores=False``: rows of vectors, left as they are)."""
        row = np.asarray(row)
        dtype = np.float32 if row.dtype == np.float32 else np.float64
        if self.identity_i:
            out = np.array(row[..., :n_items], dtype=dtype)
        else:
            out = np.asarray(row[..., self.table_i[:n_items]], dtype=dtype)
        if scores and self.gone_i is not None:
            self._strike_gone(out, n_items)
        return out

    def _strike_gone(self, scores: Any, n_items: int) -> None:
        """Forgotten items (their stream codes) are no candidates: -inf in ``scores``."""
        gone = self.gone_i[:n_items]
        if gone.any():
            if isinstance(scores, np.ndarray):
                scores[..., gone] = -np.inf
            else:  # a torch tensor
                import torch

                scores[:, torch.from_numpy(np.flatnonzero(gone)).to(scores.device)] = \
                    -torch.inf

    def _score_step(self, j: int) -> None:
        """Rate and rank the (sampled) events of step ``j`` against the model as it is now."""
        stream, config, record = self.stream, self.config, self.record
        s, t = self.bounds[j], self.bounds[j + 1]
        lo = s - stream.n_warmup  # the step's first position among the scored events
        if t - s == 1:  # one event: scalars and slices, not index arrays
            if j < self.fused_until:
                return  # scored and learned already, with the run of steps it is in
            if self.sample is not None and not self.sample[lo]:
                return
            if self.rates and not config.ranking and self.sample is None and not self.groups:
                # rating only: a run of one-event steps through the model's fast path,
                # score_then_learn_encoded (one call, not two per step, and the same numbers);
                # a run stops before a larger step and at a checkpoint
                fused = self.fused
                if fused is None:  # an empty batch asks whether the model has the path
                    empty = np.empty(0, dtype=np.int64)
                    fused = self.fused = self.model.score_then_learn_encoded(
                        Batch(users=empty, items=empty, ratings=np.empty(0))) is not None
                if fused:
                    bounds, end = self.bounds, min(stream.n_steps, j + 1024)
                    every = config.checkpoint_every if config.checkpoint_dir else 0
                    if every:
                        end = min(end, (j // every + 1) * every)
                    last = j + 1
                    while last < end and bounds[last + 1] - bounds[last] == 1:
                        last += 1
                    self._map_new(self.n_users_before[last], self.n_items_before[last])
                    stop = bounds[last]
                    users, items = stream.users[s:stop], stream.items[s:stop]
                    batch = Batch(
                        users=users.astype(np.int64) if self.identity_u else self.table_u[users],
                        items=items.astype(np.int64) if self.identity_i else self.table_i[items],
                        ratings=stream.ratings[s:stop],
                        weights=None if stream.weights is None else stream.weights[s:stop],
                        timestamps=(None if stream.timestamps is None
                                    else stream.timestamps[s:stop]),
                        frame=stream.frame.iloc[s:stop] if stream.has_extra_columns else None,
                    )
                    t0 = time.perf_counter()
                    pred = np.asarray(self.model.score_then_learn_encoded(batch),
                                      dtype=np.float64)
                    seconds = time.perf_counter() - t0
                    self.fused_until = last
                    bad = ~np.isfinite(pred)
                    if bad.any():  # the model has learned the whole run
                        self._diverged(j + int(bad.argmax()),
                                       "its predicted ratings are not finite")
                    if config.clip is not None:
                        pred = np.clip(pred, config.clip[0], config.clip[1])
                    record.pred[lo:lo + pred.size] = pred
                    # the run's time, its predictions included, spread over its steps
                    record.update_s[j:last] = seconds / (last - j)
                    record.predicts_ratings = True
                    record.extra["fused_steps"] = record.extra.get("fused_steps", 0) + last - j
                    return
            if self.rates:  # as below, in scalars: numpy calls on one value cost more
                user, item = stream.users[s], stream.items[s]
                t0 = time.perf_counter()
                pred = self.model.score_encoded(self.table_u[user:user + 1].copy(),
                                                self.table_i[item:item + 1].copy())
                y = float(pred[0])
                if not math.isfinite(y):
                    self._diverged(j, "its predicted ratings are not finite")
                if config.clip is not None:
                    y = min(max(y, config.clip[0]), config.clip[1])
                record.pred[lo] = y
                record.score_s[j] += time.perf_counter() - t0
                record.predicts_ratings = True
                if not config.ranking:
                    record.scored_users[j] += 1
                    return
            n_items = self.n_items_before[j]
            if config.ranking and n_items:
                t0 = time.perf_counter()
                record.rank[lo] = self._rank(j, slice(lo, lo + 1), stream.users[s:t],
                                             stream.items[s:t], n_items)
                self.rank_s += time.perf_counter() - t0
            return
        if self.sample is None:
            pos, ev = slice(lo, lo + t - s), slice(s, t)
        else:
            pos = lo + np.flatnonzero(self.sample[lo:lo + t - s])
            if pos.size == 0:
                return
            ev = pos + stream.n_warmup
        users, items = stream.users[ev], stream.items[ev]
        if self.rates:
            t0 = time.perf_counter()
            pred = self.model.score_encoded(self.table_u[users], self.table_i[items])
            if not (math.isfinite(pred[0]) if pred.size == 1 else np.isfinite(pred).all()):
                self._diverged(j, "its predicted ratings are not finite")
            if config.clip is not None:
                pred = np.clip(pred, config.clip[0], config.clip[1])
            record.pred[pos] = pred
            record.score_s[j] += time.perf_counter() - t0
            record.predicts_ratings = True
            if not config.ranking:
                record.scored_users[j] += users.size
        n_items = self.n_items_before[j]
        if config.ranking and n_items:
            t0 = time.perf_counter()
            record.rank[pos] = self._rank(j, pos, users, items, n_items)
            # ranking in all (the model's scoring, masking, top-K): what bench_scale compares
            # with the GEMM's flops
            self.rank_s += time.perf_counter() - t0

    def _rank(self, j: int, pos: np.ndarray, users: np.ndarray, items: np.ndarray,
              n_items: int) -> np.ndarray:
        """0-based ranks (inf past max(K)) of ``items`` for ``users``, and the coverage."""
        stream, config, record = self.stream, self.config, self.record
        kmax = max(config.ks)
        if users.size == 1:  # one event (one-event steps): one row, in scalars
            user = int(users[0])
            p = pos.start if isinstance(pos, slice) else int(pos[0])
            known = user < self.n_users_before[j]
            start = count = 0
            if known and config.exclude_seen:
                user_ptr, _, n_before = stream.history
                start, count = int(user_ptr[user]), int(n_before[p])
            record.scored_users[j] += 1
            rank = self._one_rank(j, user, known, start, count, n_items, int(items[0]))
            return np.inf if config.exclude_seen and stream.repeat[p] else rank
        if isinstance(pos, slice):
            pos = np.arange(pos.start, pos.stop)
        user_ptr, _, n_before = stream.history
        # one row per user, or with fresh context one per (user, its events before the event
        # in this step): every event of a row has the same candidates and context
        if config.context == "fresh":
            within = self._within_step(j)[pos - (self.bounds[j] - stream.n_warmup)]
            span = int(within.max()) + 1
            keys, inverse = np.unique(users.astype(np.int64) * span + within,
                                      return_inverse=True)
            uniq, row_within = keys // span, keys % span
        else:
            uniq, inverse = np.unique(users, return_inverse=True)
            row_within = np.zeros(uniq.size, dtype=np.int64)
        inverse = inverse.reshape(-1)
        any_event = np.empty(uniq.size, dtype=np.int64)
        any_event[inverse] = pos
        known = uniq < self.n_users_before[j]
        starts = user_ptr[uniq]
        # the user's events before the step (none for a user new in the step), then those
        # before the event in the step
        learned = np.where(known, n_before[any_event], 0)
        counts = learned + row_within if config.exclude_seen else np.zeros(uniq.size, np.int64)
        with_context = row_within > 0
        if with_context.any() and getattr(self.model.capabilities, "context", False):
            lists = self._context_lists(j, uniq, known, starts + learned, row_within, starts,
                                        counts, n_items, kmax)
        else:
            lists = self._plain_lists(j, uniq, known, starts, counts, n_items, kmax)
        record.scored_users[j] += uniq.size
        for r, k in enumerate(config.ks):
            top = lists[:, :k]
            record.recommended[r, top[top >= 0]] = True
        if lists.shape[1] == 0:
            return np.full(users.size, np.inf)
        match = lists[inverse] == items[:, None]
        rank = np.where(match.any(axis=1), match.argmax(axis=1), np.inf)
        if config.exclude_seen:
            # a repeat's item was masked, so it is never found: a miss by construction
            repeat = stream.seen_before if config.context == "fresh" else stream.repeat
            rank[repeat[pos]] = np.inf
        return rank

    def _plain_lists(self, j: int, uniq: np.ndarray, known: np.ndarray, starts: np.ndarray,
                     counts: np.ndarray, n_items: int, kmax: int) -> np.ndarray:
        """Top-``kmax`` lists of rows of users (stream codes ``uniq``) scored without context,
        each past its excluded items (``counts`` of its user's items from ``starts``)."""
        record, model = self.record, self.model
        clock = time.perf_counter
        lists = np.empty((uniq.size, kmax), dtype=np.int64)
        n_known = int(np.count_nonzero(known))
        if n_known < uniq.size:
            t0 = clock()
            cold = model.cold_scores()
            record.score_s[j] += clock() - t0
            row = self._to_stream_order(cold, n_items)
            if np.isnan(row).any():
                self._diverged(j, "its cold-start scores hold NaN")
            lists[~known] = self._shared_lists(row, starts[~known], counts[~known], kmax)
        if n_known:
            t0 = clock()
            shared = model.shared_scores()
            record.score_s[j] += clock() - t0
            if shared is not None:
                row = self._to_stream_order(shared, n_items)
                if np.isnan(row).any():
                    self._diverged(j, "its scores hold NaN")
                found = self._shared_lists(row, starts[known], counts[known], kmax)
            else:
                found = self._row_lists(j, self.table_u[uniq[known]], starts[known],
                                        counts[known], n_items, kmax)
            if n_known == uniq.size:
                return found
            lists[known] = found
        return lists

    def _context_lists(self, j: int, uniq: np.ndarray, known: np.ndarray,
                       context_starts: np.ndarray, context_counts: np.ndarray,
                       starts: np.ndarray, counts: np.ndarray, n_items: int,
                       kmax: int) -> np.ndarray:
        """Top-``kmax`` lists when the model uses context: rows with in-step events before
        theirs are scored with them (the last ``CONTEXT_ITEMS`` the model knows, unknown users
        included, as -1), the others as without context."""
        stream = self.stream
        _, user_items, _ = stream.history
        take = np.minimum(context_counts, CONTEXT_ITEMS)
        idx = concat_ranges(context_starts + context_counts - take, take)
        items = self.table_i[user_items[idx]]
        values = stream.ratings if stream.ratings is not None else stream.weights
        values = np.ones(idx.size) if values is None else values[stream.user_events[idx]]
        owner = np.repeat(np.arange(uniq.size), take)
        mapped = items >= 0  # an item first seen in this step is unknown to the model
        lengths = np.bincount(owner[mapped], minlength=uniq.size)
        has = lengths > 0
        lists = np.empty((uniq.size, kmax), dtype=np.int64)
        if not has.all():
            lists[~has] = self._plain_lists(j, uniq[~has], known[~has], starts[~has],
                                            counts[~has], n_items, kmax)
        if has.any():
            lengths = lengths[has]
            keep = mapped & has[owner]
            context = Context(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                              items[keep], values[keep].astype(np.float64))
            users = np.where(known[has], self.table_u[uniq[has]], -1)
            lists[has] = self._row_lists(j, users, starts[has], counts[has], n_items, kmax,
                                         context)
        return lists

    def _within_step(self, j: int) -> np.ndarray:
        """For each event of step ``j``: how many events of its user come before it in the
        step."""
        s, t = self.bounds[j], self.bounds[j + 1]
        users = self.stream.users[s:t]
        order = np.argsort(users, kind="stable")
        sorted_users = users[order]
        first = np.ones(users.size, dtype=bool)
        first[1:] = sorted_users[1:] != sorted_users[:-1]
        group_start = np.maximum.accumulate(np.where(first, np.arange(users.size), 0))
        within = np.empty(users.size, dtype=np.int64)
        within[order] = np.arange(users.size) - group_start
        return within

    def _one_rank(self, j: int, user: int, known: bool, start: int, count: int,
                  n_items: int, item: int) -> float:
        """The rank of ``item`` for one user (stream code ``user``), and the coverage of the
        user's lists: its score row, its own excluded items masked, the best ``max(ks)`` read
        off it. When every candidate at or above the last row's ``max(ks)``-th score is
        already covered, the lists would add nothing, and the rank is counted instead."""
        model, record, ks = self.model, self.record, self.config.ks
        t0 = time.perf_counter()
        if not known:
            raw = model.cold_scores()
        else:
            raw = model.shared_scores()
            if raw is None:
                rows = self.table_u[user:user + 1]
                vectors = model.item_vectors()
                if vectors is not None:
                    vectors = np.asarray(vectors, dtype=np.float32)
                    raw = np.asarray(model.user_vectors(rows), dtype=np.float32) @ vectors.T
                    record.extra["gemm_flops"] = record.extra.get("gemm_flops", 0) + \
                        2 * vectors.size
                else:
                    raw = model.score_block(rows)
                raw = raw[0]
        record.score_s[j] += time.perf_counter() - t0
        row = self._to_stream_order(raw, n_items)
        if count:
            _, user_items, _ = self.stream.history
            row[user_items[start:start + count]] = -np.inf
        if np.isnan(row).any():
            self._diverged(j, "its scores hold NaN")
        kmax = max(ks)
        theta = self.theta[known]
        cand = (row >= theta).nonzero()[0]
        covered = record.recommended[0] if len(ks) == 1 else record.recommended[:, None]
        if min(kmax, n_items) <= cand.size <= max(16 * kmax, 512) and covered[..., cand].all():
            if item >= n_items:
                return np.inf
            target = row[item]
            if target < theta or target == -np.inf:
                return np.inf
            rank = np.count_nonzero(row > target) + np.count_nonzero(row[:item] == target)
            return float(rank) if rank < kmax else np.inf
        top = self._row_top(row, kmax, known, cand)
        for r, k in enumerate(ks):
            chosen = top[:k]
            record.recommended[r, chosen[chosen >= 0]] = True
        found = (top == item).nonzero()[0]
        return float(found[0]) if found.size else np.inf

    def _row_top(self, row: np.ndarray, kmax: int, slot: bool, cand: np.ndarray) -> np.ndarray:
        """The ``kmax`` best entries of one score row without NaN, best first, ties to the
        lower index, never -inf; -1 pads a short list. ``cand`` are the entries at or above the
        last row's ``kmax``-th score (per ``slot``: known or unknown user), a first guess at
        this one's that usually leaves a few dozen candidates to sort instead of the row."""
        n = row.size
        k = min(kmax, n)
        if not k <= cand.size <= max(16 * kmax, 512):
            kth = np.partition(row, n - k)[n - k]
            cand = (row >= kth).nonzero()[0]
        vals = row[cand]
        order = np.argsort(-vals, kind="stable")[:k]  # cand ascends: ties stay lowest first
        vals = vals[order]
        self.theta[slot] = vals[k - 1] if vals.size >= k else -np.inf
        top = cand[order][vals > -np.inf]
        out = np.full(kmax, -1, dtype=np.int64)
        out[:top.size] = top
        return out

    def _shared_lists(self, row: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                      kmax: int) -> np.ndarray:
        """Top-``kmax`` lists of users who share the score ``row``, each past its own excluded
        items (``user_items[starts[u]:starts[u] + counts[u]]``): one exact order of the best
        ``kmax + max(distinct history)`` items, read per user. -1 pads a short list."""
        n = starts.size
        _, user_items, _ = self.stream.history
        if counts.size and counts.max() > 0:
            idx = concat_ranges(starts, counts)
            first = self.stream.history_first[idx]
            x_items = user_items[idx]
            # an item new in this step (fresh context) is no candidate: nothing to strike
            first &= x_items < row.size
            x_items = x_items[first]
            x_user = np.repeat(np.arange(n), counts)[first]
            longest = int(np.bincount(x_user, minlength=n).max())
        else:
            x_items = x_user = np.empty(0, dtype=np.int64)
            longest = 0
        order, _ = top_k(row[None, :], min(kmax + longest, row.size))
        order = order[0]
        order = order[order >= 0]  # -inf and NaN are never recommended
        m = order.size
        if x_items.size and m:
            place = np.full(row.size, -1, dtype=np.int64)
            place[order] = np.arange(m)
            x_place = place[x_items]
            inside = x_place >= 0
            x_user, x_place = x_user[inside], x_place[inside]
        if x_items.size == 0 or m == 0 or x_user.size == 0:  # no list has an exclusion
            out = np.full((n, kmax), -1, dtype=np.int64)
            out[:, :min(kmax, m)] = order[:kmax]
            return out
        # a user's list is the first kmax places of the order that are not among its own:
        # lay out places 0..kmax+e-1 per user (e: its excluded places in the order), strike
        # its excluded ones by their offset, and keep the first kmax left (no search)
        lengths = np.minimum(kmax + np.bincount(x_user, minlength=n), m)
        offsets = np.cumsum(lengths) - lengths
        keep = np.ones(int(lengths.sum()), dtype=bool)
        inside = x_place < lengths[x_user]
        keep[offsets[x_user[inside]] + x_place[inside]] = False
        cand_user = np.repeat(np.arange(n), lengths)[keep]
        cand_place = concat_ranges(np.zeros(n, dtype=np.int64), lengths)[keep]
        kept = np.bincount(cand_user, minlength=n)
        within = np.arange(cand_user.size) - np.repeat(np.cumsum(kept) - kept, kept)
        ok = within < kmax
        out = np.full((n, kmax), -1, dtype=np.int64)
        out[cand_user[ok], within[ok]] = order[cand_place[ok]]
        return out

    def _row_lists(self, j: int, mapped: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                   n_items: int, kmax: int, context: Context | None = None) -> np.ndarray:
        """Top-``kmax`` lists of known users (model indices ``mapped``) from score rows: the
        model's GEMM when it has ``item_vectors``, else its ``score_block``, in blocks of users
        that keep a block's scores under ``_BLOCK_BYTES``."""
        model, record = self.model, self.record
        _, user_items, _ = self.stream.history
        clock = time.perf_counter
        t0 = clock()
        vectors = model.item_vectors()
        if vectors is not None:
            vectors = self._to_stream_order(np.asarray(vectors).T, n_items, scores=False)
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        record.score_s[j] += clock() - t0
        if vectors is not None and not np.isfinite(vectors).all():
            self._diverged(j, "its item vectors are not finite")
        if vectors is not None and self.device is not None:
            return self._torch_lists(j, mapped, starts, counts, vectors, kmax, context)
        itemsize = 4 if vectors is not None else 8
        block = max(1, _BLOCK_BYTES // itemsize // max(n_items, 1))
        out = np.full((mapped.size, kmax), -1, dtype=np.int64)
        for b0 in range(0, mapped.size, block):
            rows = mapped[b0:b0 + block]
            ctx = None if context is None else context.take(np.arange(b0, b0 + rows.size))
            t0 = clock()
            if vectors is not None:
                users = np.asarray(_user_vectors(model, rows, ctx), dtype=np.float32)
                scores = users @ vectors
                record.score_s[j] += clock() - t0
                if self.gone_i is not None:
                    self._strike_gone(scores, n_items)
                if not np.isfinite(users).all():
                    self._diverged(j, "its user vectors are not finite")
                record.extra["gemm_flops"] = record.extra.get("gemm_flops", 0) + \
                    2 * scores.size * vectors.shape[0]
            else:
                raw = model.score_block(rows) if ctx is None else model.score_block(rows, ctx)
                record.score_s[j] += clock() - t0
                scores = self._to_stream_order(raw, n_items)
            counts_b = counts[b0:b0 + block]
            if counts_b.size and counts_b.max() > 0:
                masked = np.repeat(np.arange(rows.size), counts_b)
                cols = user_items[concat_ranges(starts[b0:b0 + block], counts_b)]
                inside = cols < n_items  # (an item new in this step is no candidate anyway)
                scores[masked[inside], cols[inside]] = -np.inf
            found = top_k(scores, kmax)[0]  # fewer columns than kmax in a tiny catalogue
            if found.shape[1]:  # a NaN is never recommended: look where a list is short
                short = found[:, -1] < 0
                if short.any() and np.isnan(scores[short]).any():
                    self._diverged(j, "its scores hold NaN")
            out[b0:b0 + block, :found.shape[1]] = found
        return out

    def _torch_lists(self, j: int, mapped: np.ndarray, starts: np.ndarray,
                     counts: np.ndarray, vectors: np.ndarray, kmax: int,
                     context: Context | None = None) -> np.ndarray:
        """``_row_lists`` for a factor model on a torch device: the GEMM, the masking and a
        first top-K there; only each row's candidates (scores at or above its K-th) come back,
        to be ordered exactly as ``top_k`` orders (ties to the lower code)."""
        import torch

        model, record = self.model, self.record
        _, user_items, _ = self.stream.history
        device = self.device
        n_items = vectors.shape[1]
        k = min(kmax, n_items)
        clock = time.perf_counter
        items_t = torch.from_numpy(vectors).to(device)
        block = max(1, _BLOCK_BYTES * (8 if device.type == "cuda" else 1) // 4 // n_items)
        out = np.full((mapped.size, kmax), -1, dtype=np.int64)
        for b0 in range(0, mapped.size, block):
            rows = mapped[b0:b0 + block]
            ctx = None if context is None else context.take(np.arange(b0, b0 + rows.size))
            t0 = clock()
            users = np.ascontiguousarray(_user_vectors(model, rows, ctx), dtype=np.float32)
            if not np.isfinite(users).all():
                self._diverged(j, "its user vectors are not finite")
            users_t = torch.from_numpy(users).to(device)
            scores = users_t @ items_t
            if self.gone_i is not None:
                self._strike_gone(scores, n_items)
            record.extra["gemm_flops"] = record.extra.get("gemm_flops", 0) + \
                2 * rows.size * vectors.size
            counts_b = counts[b0:b0 + block]
            if counts_b.size and counts_b.max() > 0:
                masked = np.repeat(np.arange(rows.size), counts_b)
                cols = user_items[concat_ranges(starts[b0:b0 + block], counts_b)]
                inside = cols < n_items
                scores[torch.from_numpy(masked[inside]).to(device),
                       torch.from_numpy(cols[inside].astype(np.int64)).to(device)] = -torch.inf
            scores.nan_to_num_(nan=-torch.inf)
            kth = torch.topk(scores, k, dim=1).values[:, -1:]
            r, c = torch.nonzero(scores >= kth, as_tuple=True)
            vals = scores[r, c].cpu().numpy()
            r, c = r.cpu().numpy(), c.cpu().numpy()
            record.score_s[j] += clock() - t0
            finite = vals > -np.inf
            r, c, vals = r[finite], c[finite], vals[finite]
            order = np.lexsort((c, -vals, r))
            r, c = r[order], c[order]
            within = np.arange(r.size) - np.searchsorted(r, r)
            ok = within < k
            out[b0 + r[ok], within[ok]] = c[ok]
        return out

    # -- learning ----------------------------------------------------------------------------

    def _learn_step(self, j: int) -> None:
        if j < self.fused_until:
            return  # learned with its prediction, in a run of one-event steps (_score_step)
        stream, record = self.stream, self.record
        s, t = self.bounds[j], self.bounds[j + 1]
        n_users, n_items = self.n_users_before[j + 1], self.n_items_before[j + 1]
        if n_users > self.mapped_u or n_items > self.mapped_i:
            self._map_new(n_users, n_items)
        if t - s == 1:  # one event: one-element copies of the tables' entries
            user, item = stream.users[s], stream.items[s]
            users = self.table_u[user:user + 1].copy()
            items = self.table_i[item:item + 1].copy()
        else:
            users, items = stream.users[s:t], stream.items[s:t]
            users = users.astype(np.int64) if self.identity_u else self.table_u[users]
            items = items.astype(np.int64) if self.identity_i else self.table_i[items]
        batch = Batch(
            users=users,
            items=items,
            ratings=None if stream.ratings is None else stream.ratings[s:t],
            weights=None if stream.weights is None else stream.weights[s:t],
            timestamps=None if stream.timestamps is None else stream.timestamps[s:t],
            frame=stream.frame.iloc[s:t] if stream.has_extra_columns else None,
        )
        t0 = time.perf_counter()
        self.model.learn_encoded(batch)
        record.update_s[j] = time.perf_counter() - t0

    # -- the loop ----------------------------------------------------------------------------

    def run(self, bar: Any = None) -> ReplayRecord:
        stream, record = self.stream, self.record
        # per-step sizes as Python ints: read once per step, cheaper than numpy scalars
        small = stream.n_steps <= 2_000_000
        self.bounds = stream.bounds.tolist() if small else stream.bounds
        self.n_users_before = (stream.n_users_before.tolist() if small else
                               stream.n_users_before)
        self.n_items_before = (stream.n_items_before.tolist() if small else
                               stream.n_items_before)
        self.rank_s = record.extra.get("rank_s", 0.0)
        every = self.config.checkpoint_every if self.config.checkpoint_dir else 0
        self._t0 = time.perf_counter() - record.wall_s
        cpu0 = time.process_time()
        # small steps report, check the budget and sample memory in batches of steps
        flush = max(1, min(2048, every or 2048, 4096 // max(1, stream.n_scored
                                                              // max(stream.n_steps, 1))))
        if self.config.time_budget_s is not None:
            flush = min(flush, 256)
        pending = 0
        for j in range(record.steps_done, stream.n_steps):
            self._score_step(j)
            self._learn_step(j)
            if self.groups:
                self._serve(self.bounds[j + 1])
            if self.rate_check:
                self.rates, self.rate_check = self._predict_ratings(), False
            record.steps_done = j + 1
            pending += 1
            if pending >= flush or j + 1 == stream.n_steps:
                if bar is not None:
                    bar.update(int(stream.bounds[j + 1] - stream.bounds[j + 1 - pending]))
                pending = 0
                self._check_budget()
                self._sample_memory()
            if every and record.steps_done % every == 0:
                self.checkpoint()
        record.wall_s = time.perf_counter() - self._t0
        record.extra["rank_s"] = self.rank_s
        record.extra["cpu_s"] = record.extra.get("cpu_s", 0.0) + time.process_time() - cpu0
        self._sample_memory()
        peak = _peak_rss_mb()  # the true peak, between the samples too
        if peak is not None and not record.resumed_from:
            self.mem_peak = max(self.mem_peak, peak)
        record.peak_mem_mb = self.mem_peak - self.mem_base
        try:
            counter = _ByteCounter()
            pickle.dump(self.model, counter, protocol=pickle.HIGHEST_PROTOCOL)
            record.model_mb = counter.n / 2**20
        except Exception as exc:  # a size is not worth failing a finished replay for
            record.extra["model_mb_error"] = f"{type(exc).__name__}: {exc}"
        record.extra["identity_items"] = self.identity_i
        return record

    def _diverged(self, j: int, what: str) -> None:
        s, t = int(self.stream.bounds[j]), int(self.stream.bounds[j + 1])
        raise ModelDiverged(
            f"model {self.name!r} diverged: {what} when step {j} (events {s}-{t - 1}) was "
            f"scored, after learning the events before it", step=j)

    def _check_budget(self) -> None:
        budget = self.config.time_budget_s
        if budget is not None and time.perf_counter() - self._t0 > budget:
            raise TimeoutError(
                f"model {self.name!r} went over its time budget of {budget:g} s after "
                f"{self.record.steps_done} of {self.stream.n_steps} steps"
            )

    def _sample_memory(self) -> None:
        self.mem_peak = max(self.mem_peak, _rss_mb())

    # -- checkpoints -------------------------------------------------------------------------

    def _paths(self) -> tuple[Path, str]:
        folder = Path(self.config.checkpoint_dir)
        return folder, _safe_name(self.name)

    def checkpoint(self) -> None:
        """Save the model and the replay state in one file, in the model files' format
        (arrays and JSON under a SHA-256 checksum), replaced atomically."""
        folder, stem = self._paths()
        folder.mkdir(parents=True, exist_ok=True)
        self.record.extra["rank_s"] = self.rank_s
        meta = {
            "version": _CHECKPOINT_VERSION,
            "name": self.name,
            "model_class": self.identity[0], "model_params": self.identity[1],
            "stream": self.stream.fingerprint,
            "config": self.config.key(),
        }
        replay = {
            "table_u": self.table_u, "table_i": self.table_i,
            "mapped_u": self.mapped_u, "mapped_i": self.mapped_i,
            "rates": self.rates, "rate_check": self.rate_check,
            "identity_u": self.identity_u, "identity_i": self.identity_i,
            "record": {f.name: getattr(self.record, f.name)
                       for f in dataclasses.fields(ReplayRecord)},
            "elapsed": time.perf_counter() - self._t0,
            "mem_peak": self.mem_peak - self.mem_base,
        }
        header = {"format": FORMAT_VERSION, "versions": library_versions()}
        write_container(folder / f"{stem}.state", CHECKPOINT_MAGIC, header,
                        {"meta": meta, "replay": replay, "model": model_content(self.model)},
                        persisted_names(type(self.model)))
        for old in folder.glob(f"{stem}.step*.model"):  # an earlier version's model files
            old.unlink(missing_ok=True)

    def try_resume(self) -> bool:
        """Continue from this model's checkpoint if there is one for this stream and protocol."""
        state = read_checkpoint(self.name, self.stream, self.config, self.identity,
                                model_class=type(self.model))
        if state is None:
            return False
        self.model = state["model"]
        self.table_u, self.table_i = state["table_u"], state["table_i"]
        self.mapped_u, self.mapped_i = state["mapped_u"], state["mapped_i"]
        self.identity_u, self.identity_i = state["identity_u"], state["identity_i"]
        self.rates, self.rate_check = state["rates"], state["rate_check"]
        self.record = ReplayRecord(**state["record"])
        self.sample = self.record.scored
        self.record.resumed_from = self.record.steps_done
        if self.gone_i is not None:
            self._gone_until(int(self.stream.bounds[self.record.steps_done]))
        self.record.wall_s = state["elapsed"]
        self.mem_base = _rss_mb() - state["mem_peak"]
        self.mem_peak = _rss_mb()
        return True


class ModelDiverged(RuntimeError):
    """A model's scores or predicted ratings became non-finite (NaN; infinite ratings or
    factor vectors): its replay stops, reported with status ``"diverged"`` and the 0-based
    ``step`` whose scoring found it (the model as it was after learning the steps before).

    The check reads only what the replay computes anyway: predicted ratings, the factor
    vectors of a step, the score rows whose top-K lists come out short (NaN is never
    recommended), and one-event rows; no scan of the model."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.step))


class CheckpointError(ValueError):
    """A checkpoint file that cannot be resumed from: damaged (truncated, a changed byte),
    written by another version, or for another model, stream or protocol. The message names
    the file."""


def read_checkpoint(name: str, stream: Stream, config: ReplayConfig,
                    model: IncrementalRecommender | tuple | None = None, *,
                    model_class: type | None = None) -> dict[str, Any] | None:
    """The checkpoint state of model ``name`` under ``config.checkpoint_dir`` (None if none),
    its model rebuilt as a ``model_class`` when one is given; a :class:`CheckpointError` if
    the file is damaged or was written for another model name, stream or protocol, or (when
    ``model`` is given) for a model of another class or with other parameters.

    The file is checked whole (its SHA-256) before anything is read from it, and it is read
    under the model files' allow-list: a crafted one runs no code."""
    path = Path(config.checkpoint_dir) / f"{_safe_name(name)}.state"
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        if fh.read(1) == b"\x80":
            raise CheckpointError(
                f"checkpoint {path} was written by an earlier recinc-plugins as a pickle, "
                "which this version does not load (it could run code); remove it or use "
                "another checkpoint_dir")
    _, header, payload = read_container(path, CHECKPOINT_MAGIC, error=CheckpointError)
    content = header.get("content")
    if not isinstance(content, dict) or not isinstance(content.get("s"), dict) \
            or not {"meta", "replay", "model"} <= set(content["s"]):
        raise CheckpointError(f"checkpoint {path} is corrupt: it holds no replay state")
    extra = {} if model_class is None else persisted_classes(model_class)
    reader = ContentReader(str(path), header, payload, trusted=False, extra=extra,
                           error=CheckpointError)
    try:
        meta = reader.read(content["s"]["meta"])
        _check_checkpoint(path, meta, name, stream, config, model)
        if model_class is None:
            return meta
        state = {**meta, **reader.read(content["s"]["replay"])}
        if not isinstance(meta.get("model_class"), str) or meta["model_class"] != \
                f"{model_class.__module__}.{model_class.__qualname__}":
            raise CheckpointError(f"checkpoint {path} of model {name!r} was written for a "
                                  f"{meta.get('model_class')}, not a {model_class.__name__}")
        state["model"] = build_model(str(path), model_class, reader.read(content["s"]["model"]),
                                     header.get("versions"), error=CheckpointError)
    finally:
        reader.close()
    return state


def _check_checkpoint(path: Path, meta: Any, name: str, stream: Stream, config: ReplayConfig,
                      model: IncrementalRecommender | tuple | None) -> None:
    if not isinstance(meta, dict) or meta.get("version") != _CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} was written by another version of "
                              "recinc-plugins; remove it or use another checkpoint_dir")
    if meta.get("stream") != stream.fingerprint or meta.get("config") != config.key():
        raise CheckpointError(
            f"checkpoint {path} was written for another stream or protocol; remove it or use "
            "another checkpoint_dir"
        )
    if meta.get("name") != name:
        raise CheckpointError(f"checkpoint {path} was written for model {meta.get('name')!r}, "
                              f"not {name!r}; remove it or use another checkpoint_dir")
    if model is not None:
        cls, params = model if isinstance(model, tuple) else _model_identity(model)
        if meta.get("model_class") != cls:
            raise CheckpointError(f"checkpoint {path} of model {name!r} was written for a "
                                  f"{meta.get('model_class')}, not a {cls}; remove it or use "
                                  "another checkpoint_dir")
        old = meta.get("model_params")
        old = old if isinstance(old, dict) else {}
        diff = [f"{key}: {old.get(key, '<unset>')} -> {params.get(key, '<unset>')}"
                for key in sorted(set(old) | set(params)) if old.get(key) != params.get(key)]
        if diff:
            raise CheckpointError(f"checkpoint {path} of model {name!r} was written with other "
                                  f"parameters ({'; '.join(diff)}); remove it or use another "
                                  "checkpoint_dir")


def replay(name: str, model: IncrementalRecommender, stream: Stream,
           config: ReplayConfig) -> ReplayRecord:
    """Replay ``stream`` through ``model`` (trained in place) and return its record."""
    if not isinstance(model, IncrementalRecommender):
        raise TypeError(f"model {name!r} is a {type(model).__name__}, not an "
                        "IncrementalRecommender")
    if not model.capabilities.implicit and not stream.has_ratings:
        # what fit/partial_fit would say: the encoded path the replay learns through does not
        # validate the interactions itself
        raise ValueError(
            f"{type(model).__name__} learns from explicit ratings, but the interactions have "
            f"no 'rating' column (columns: {list(stream.frame.columns)})"
        )
    state = _Replay(name, model, stream, config)
    resumed = bool(config.checkpoint_dir) and config.resume and state.try_resume()
    if not resumed:
        state.start()
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=stream.n_scored, initial=int(stream.bounds[state.record.steps_done])
                   - stream.n_warmup, desc=name, unit="ev", unit_scale=True,
                   position=config.progress_position, leave=True, mininterval=0.5,
                   dynamic_ncols=True)
    threads = replay_threads(stream, config)
    try:
        with limit_threads(threads):
            record = state.run(bar)
        record.extra["threads"] = threads
    finally:
        if bar is not None:
            bar.close()
    if config.checkpoint_dir:
        state.checkpoint()
    return record
