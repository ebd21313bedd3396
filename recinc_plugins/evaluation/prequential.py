"""The prequential replay of one model over a Stream: score each step, then learn it.

This is the harness's hot loop. It talks to a model through the base class's encoded fast path
(``_score_users``, ``_fallback_scores``, ``_score_pairs``, ``_fallback_pairs`` and
``_partial_fit_encoded``), translating the stream's codes into the model's own indices with
tables filled only when new ids appear, so no DataFrame is built per step.
"""

from __future__ import annotations

import hashlib
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

from ..base import Batch, IncrementalRecommender, top_k
from ..sparse import concat_ranges
from .stream import Stream

__all__ = ["ReplayConfig", "ReplayRecord", "replay"]

_CHECKPOINT_VERSION = 2
_BLOCK_CELLS = 4_000_000  # scores held at once when a step has many users (32 MB of float64)


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

    def key(self) -> tuple:
        """What a checkpoint must agree on to be resumed."""
        return (self.ks, self.exclude_seen, self.ranking, self.rating, self.clip,
                self.eval_fraction, self.eval_seed)

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


def _rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


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
    """The mutable state of one replay; checkpointable between steps."""

    def __init__(self, name: str, model: IncrementalRecommender, stream: Stream,
                 config: ReplayConfig) -> None:
        self.name = name
        self.model = model
        self.stream = stream
        self.config = config
        self.identity = _model_identity(model)  # as given: what a resume must agree on
        n_scored = stream.n_scored
        self.table_u = np.full(stream.n_users, -1, dtype=np.int64)
        self.table_i = np.full(stream.n_items, -1, dtype=np.int64)
        self.mapped_u = 0
        self.mapped_i = 0
        # the model's indices equal the stream's codes (the usual case): no translation needed
        self.identity_u = True
        self.identity_i = True
        self.record = ReplayRecord(
            name=name,
            rank=np.full(n_scored, np.inf),
            pred=np.full(n_scored, np.nan),
            recommended=np.zeros((len(config.ks), stream.n_items), dtype=bool),
            score_s=np.zeros(stream.n_steps),
            update_s=np.zeros(stream.n_steps),
            scored_users=np.zeros(stream.n_steps, dtype=np.int64),
        )
        self.theta = -np.inf  # last top-K threshold: a cheap first guess for the next one
        self.mem_base = _rss_mb()
        self.mem_peak = self.mem_base

    # -- id translation ----------------------------------------------------------------------

    def _map_new(self, n_users: int, n_items: int) -> None:
        """Give the model the ids first seen before ``n_users``/``n_items`` (stream codes)."""
        model, stream = self.model, self.stream
        if n_users > self.mapped_u:
            new = model.user_index_.add(stream.user_ids[self.mapped_u:n_users])
            self.table_u[self.mapped_u:n_users] = new
            if self.identity_u and not np.array_equal(new, np.arange(self.mapped_u, n_users)):
                self.identity_u = False
            self.mapped_u = n_users
        if n_items > self.mapped_i:
            new = model.item_index_.add(stream.item_ids[self.mapped_i:n_items])
            self.table_i[self.mapped_i:n_items] = new
            if self.identity_i and not np.array_equal(
                    new, np.arange(self.mapped_i, n_items)):
                self.identity_i = False
            self.mapped_i = n_items

    # -- warm-up -----------------------------------------------------------------------------

    def start(self) -> None:
        stream, model = self.stream, self.model
        t0 = time.perf_counter()
        if stream.n_warmup:
            model.fit(stream.warmup_frame())
        else:
            model._reset()
        self.record.fit_s = time.perf_counter() - t0
        # the model encoded the warm-up itself: read its indices for the stream's codes (add,
        # not lookup, in case a model's fit left some id out)
        n_u = int(stream.users[: stream.n_warmup].max(initial=-1)) + 1
        n_i = int(stream.items[: stream.n_warmup].max(initial=-1)) + 1
        self.table_u[:n_u] = model.user_index_.add(stream.user_ids[:n_u])
        self.table_i[:n_i] = model.item_index_.add(stream.item_ids[:n_i])
        self.mapped_u, self.mapped_i = n_u, n_i
        # whether a model's scores are ratings is settled by its first learned events: after
        # the warm-up, or after the first step when there is none
        self.rates = self._predict_ratings()
        self.rate_check = not self.rates and not model.is_fitted
        self.identity_u = bool(np.array_equal(self.table_u[:n_u], np.arange(n_u)))
        self.identity_i = bool(np.array_equal(self.table_i[:n_i], np.arange(n_i)))

    # -- scoring -----------------------------------------------------------------------------

    def _gather(self, rows: np.ndarray, n_items: int) -> np.ndarray:
        """Model score rows -> candidate columns (stream item codes ``0..n_items-1``)."""
        if self.identity_i:
            return np.array(rows[:, :n_items], dtype=np.float64)
        return np.asarray(rows, dtype=np.float64)[:, self.table_i[:n_items]]

    def _predict_ratings(self) -> bool:
        rating = self.config.rating
        if rating == "never" or not self.stream.has_ratings:
            return False
        return rating == "always" or bool(self.model._predicts_ratings())

    def _rate(self, users: np.ndarray, items: np.ndarray, out: np.ndarray) -> None:
        model = self.model
        mu, mi = self.table_u[users], self.table_i[items]
        known = (mu >= 0) & (mi >= 0)
        if known.all():
            pred = np.asarray(model._score_pairs(mu, mi), dtype=np.float64)
        else:
            pred = np.empty(users.size)
            if known.any():
                pred[known] = model._score_pairs(mu[known], mi[known])
            pred[~known] = model._fallback_pairs(mu[~known], mi[~known])
        if self.config.clip is not None:
            pred = np.clip(pred, self.config.clip[0], self.config.clip[1])
        out[:] = pred

    def _score_step(self, j: int) -> None:
        """Rank (and rate) every event of step ``j`` against the model as it is now."""
        stream, config, model, record = self.stream, self.config, self.model, self.record
        s, t = int(stream.bounds[j]), int(stream.bounds[j + 1])
        off = stream.n_warmup
        users, items = stream.users[s:t], stream.items[s:t]
        n_items = int(stream.n_items_before[j])
        n_users = int(stream.n_users_before[j])
        if self.rates:
            t0 = time.perf_counter()
            self._rate(users, items, record.pred[s - off:t - off])
            record.score_s[j] += time.perf_counter() - t0
            record.predicts_ratings = True
            if not config.ranking:
                record.scored_users[j] += users.size
        if not config.ranking or n_items == 0:
            return
        uniq, inverse = np.unique(users, return_inverse=True)
        inverse = inverse.reshape(-1)
        if config.exclude_seen:
            user_ptr, user_items, n_before = stream.history
            # every event of a user in this step has the same history before the step
            any_event = np.zeros(uniq.size, dtype=np.int64)
            any_event[inverse] = np.arange(users.size)
            history = n_before[s - off + any_event]
        rank = np.full(users.size, np.inf)
        # users in blocks, so a big step never holds a users x items matrix larger than this
        block = max(1, _BLOCK_CELLS // n_items)
        for b0 in range(0, uniq.size, block):
            rows = uniq[b0:b0 + block]
            known = rows < n_users
            t0 = time.perf_counter()
            scores = np.empty((rows.size, n_items))
            if known.any():
                scores[known] = self._gather(model._score_users(self.table_u[rows[known]]),
                                             n_items)
            if not known.all():
                scores[~known] = self._gather(model._fallback_scores(int((~known).sum())),
                                              n_items)
            record.score_s[j] += time.perf_counter() - t0
            record.scored_users[j] += rows.size
            np.nan_to_num(scores, copy=False, nan=-np.inf)
            if config.exclude_seen:
                counts = history[b0:b0 + block]
                masked = np.repeat(np.arange(rows.size), counts)
                scores[masked, user_items[concat_ranges(user_ptr[rows], counts)]] = -np.inf
            # the top-max(K) lists (ties to the item seen first, the lower code) give both the
            # ranks that matter and the coverage; a rank past max(K) only ever counts as a miss
            idx, _ = top_k(scores, max(config.ks))
            for r, k in enumerate(config.ks):
                top = idx[:, :k]
                record.recommended[r, top[top >= 0]] = True
            ev = np.flatnonzero((inverse >= b0) & (inverse < b0 + block))
            match = idx[inverse[ev] - b0] == items[ev, None]
            rank[ev] = np.where(match.any(axis=1), match.argmax(axis=1), np.inf)
        if config.exclude_seen:
            # a repeat's item was masked, so it is never found: a miss by construction
            rank[stream.repeat[s - off:t - off]] = np.inf
        record.rank[s - off:t - off] = rank

    # -- learning ----------------------------------------------------------------------------

    def _learn_step(self, j: int) -> None:
        stream, record = self.stream, self.record
        s, t = int(stream.bounds[j]), int(stream.bounds[j + 1])
        self._map_new(int(stream.n_users_before[j + 1]), int(stream.n_items_before[j + 1]))
        batch = Batch(
            users=self.table_u[stream.users[s:t]],
            items=self.table_i[stream.items[s:t]],
            ratings=None if stream.ratings is None else stream.ratings[s:t],
            weights=None if stream.weights is None else stream.weights[s:t],
            timestamps=None if stream.timestamps is None else stream.timestamps[s:t],
            frame=stream.frame.iloc[s:t] if stream.has_extra_columns else None,
        )
        t0 = time.perf_counter()
        self.model._partial_fit_encoded(batch)
        record.update_s[j] = time.perf_counter() - t0

    # -- the loop ----------------------------------------------------------------------------

    def run(self, bar: Any = None) -> ReplayRecord:
        stream, record = self.stream, self.record
        every = self.config.checkpoint_every if self.config.checkpoint_dir else 0
        self._t0 = time.perf_counter() - record.wall_s
        cpu0 = time.process_time()
        if np.all(np.diff(stream.bounds) == 1) and self.config.ranking:
            self._run_single(bar, every)
        else:
            for j in range(record.steps_done, stream.n_steps):
                self._score_step(j)
                self._learn_step(j)
                if self.rate_check:
                    self.rates, self.rate_check = self._predict_ratings(), False
                record.steps_done = j + 1
                self._check_budget()
                if bar is not None:
                    bar.update(int(stream.bounds[j + 1] - stream.bounds[j]))
                if every and record.steps_done % every == 0:
                    self._sample_memory()
                    self.checkpoint()
                elif j % 64 == 0:
                    self._sample_memory()
        record.wall_s = time.perf_counter() - self._t0
        record.extra["cpu_s"] = record.extra.get("cpu_s", 0.0) + time.process_time() - cpu0
        self._sample_memory()
        record.peak_mem_mb = self.mem_peak - self.mem_base
        try:
            size = len(pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL))
            record.model_mb = size / 2**20
        except Exception as exc:  # a size is not worth failing a finished replay for
            record.extra["model_mb_error"] = f"{type(exc).__name__}: {exc}"
        record.extra["identity_items"] = self.identity_i
        return record

    def _check_budget(self) -> None:
        budget = self.config.time_budget_s
        if budget is not None and time.perf_counter() - self._t0 > budget:
            raise TimeoutError(
                f"model {self.name!r} went over its time budget of {budget:g} s after "
                f"{self.record.steps_done} of {self.stream.n_steps} steps"
            )

    def _sample_memory(self) -> None:
        self.mem_peak = max(self.mem_peak, _rss_mb())

    def _run_single(self, bar: Any, every: int) -> None:
        """The one-event-per-step loop: scalars and small arrays only, every step ~ tens of us.

        Same protocol as ``_score_step``/``_learn_step`` (the tests check both agree).
        """
        stream, config, model, record = self.stream, self.config, self.model, self.record
        off = stream.n_warmup
        users, items = stream.users, stream.items
        users_l, items_l = users.tolist(), items.tolist()
        n_items_before = stream.n_items_before.tolist()
        user_ptr, user_items, n_before = stream.history
        ptr_l, n_before_l = user_ptr.tolist(), n_before.tolist()
        repeat = stream.repeat.tolist() if config.exclude_seen else None
        ratings, weights, stamps = stream.ratings, stream.weights, stream.timestamps
        frame = stream.frame if stream.has_extra_columns else None
        table_u, table_i = self.table_u, self.table_i
        rank_out, pred_out = record.rank, record.pred
        score_s, update_s, scored_users = record.score_s, record.update_s, record.scored_users
        recommended = record.recommended
        ks = config.ks
        kmax = max(ks)
        multi_k = len(ks) > 1
        exclude = config.exclude_seen
        identity_u, identity_i = self.identity_u, self.identity_i
        mapped_u = self.mapped_u
        cover = self._cover_one
        rec0 = recommended[0]
        cap = max(16 * kmax, 512)
        rate = self._predict_ratings
        rates, rate_check = self.rates, self.rate_check
        clock = time.perf_counter
        score_users, fallback = model._score_users, model._fallback_scores
        learn = model._partial_fit_encoded
        neg_inf = -np.inf
        pending = 0
        last_checkpoint = record.steps_done
        flush = min(2048, every) if every else 2048
        if config.time_budget_s is not None:
            flush = min(flush, 256)
        for j in range(record.steps_done, stream.n_steps):
            e = off + j
            u, i = users_l[e], items_l[e]
            n_items = n_items_before[j]
            if rates:
                t0 = clock()
                self._rate(users[e:e + 1], items[e:e + 1], pred_out[j:j + 1])
                score_s[j] += clock() - t0
                record.predicts_ratings = True
            if n_items:
                t0 = clock()
                row = score_users(table_u[u:u + 1]) if u < mapped_u else fallback(1)
                t1 = clock()
                if rates:
                    score_s[j] += t1 - t0
                else:
                    score_s[j] = t1 - t0
                scored_users[j] = 1
                if identity_i:
                    scores = np.array(row[0, :n_items], dtype=np.float64)
                else:
                    scores = np.asarray(row[0], dtype=np.float64)[table_i[:n_items]]
                if exclude:
                    c = n_before_l[j]
                    if c:
                        p = ptr_l[u]
                        scores[user_items[p:p + c]] = neg_inf
                # a threshold at or below this row's max(K)-th score: the last row's, which
                # usually leaves a few dozen candidates. Everything in the top-max(K) lists is
                # among them, so a target below it is a miss, and when every candidate is
                # already covered the lists add nothing to the coverage.
                theta = self.theta
                cand = (scores >= theta).nonzero()[0]
                k_eff = kmax if kmax < n_items else n_items
                if not multi_k and k_eff <= cand.size <= cap:
                    if not rec0[cand].all():
                        vals = scores[cand]
                        part = vals.copy()
                        part.partition(cand.size - k_eff)
                        kth = part[cand.size - k_eff]
                        if neg_inf < kth:  # finite (NaN and -inf go the general way)
                            sel = (vals >= kth).nonzero()[0]
                            if sel.size != k_eff:  # ties at the k-th score: lowest codes win
                                better = (vals > kth).nonzero()[0]
                                tied = (vals == kth).nonzero()[0][: k_eff - better.size]
                                sel = np.concatenate((better, tied))
                            rec0[cand[sel]] = True
                            self.theta = kth
                        else:
                            cover(scores, n_items, kmax, multi_k, ks, recommended)
                else:
                    _, theta = cover(scores, n_items, kmax, multi_k, ks, recommended)
                if i < n_items and not (exclude and repeat[j]):
                    target = scores[i]
                    if target >= theta and target != neg_inf:  # (False for NaN: a miss)
                        rank = (np.count_nonzero(scores > target)
                                + np.count_nonzero(scores[:i] == target))
                        if rank < kmax:
                            rank_out[j] = rank
            # learn the step
            if u >= mapped_u or i >= self.mapped_i:
                self._map_new(max(u + 1, mapped_u), max(i + 1, self.mapped_i))
                identity_u, identity_i = self.identity_u, self.identity_i
                mapped_u = self.mapped_u
            batch = Batch(
                users=users[e:e + 1] if identity_u else table_u[users[e:e + 1]],
                items=items[e:e + 1] if identity_i else table_i[items[e:e + 1]],
                ratings=None if ratings is None else ratings[e:e + 1],
                weights=None if weights is None else weights[e:e + 1],
                timestamps=None if stamps is None else stamps[e:e + 1],
                frame=None if frame is None else frame.iloc[e:e + 1],
            )
            t0 = clock()
            learn(batch)
            update_s[j] = clock() - t0
            if rate_check:
                rates = self.rates = rate()
                rate_check = self.rate_check = False
            record.steps_done = j + 1
            pending += 1
            if pending >= flush:
                if bar is not None:
                    bar.update(pending)
                pending = 0
                self._check_budget()
                self._sample_memory()
                if every and record.steps_done - last_checkpoint >= every:
                    self.checkpoint()
                    last_checkpoint = record.steps_done
        if bar is not None and pending:
            bar.update(pending)

    def _cover_one(self, scores: np.ndarray, n: int, kmax: int, multi_k: bool,
                   ks: tuple[int, ...], recommended: np.ndarray) -> tuple[np.ndarray, float]:
        """Mark one score row's top-K items (ties to the lower code, -inf never); return the
        top-max(K) codes and the max(K)-th score. NaN scores are turned into -inf in place."""
        k = min(kmax, n)
        # the last row's threshold usually leaves a few dozen candidates, and partitioning
        # those is far cheaper than partitioning the whole row
        above = scores >= self.theta
        n_above = np.count_nonzero(above)
        if k <= n_above <= max(16 * kmax, 512):
            cand = above.nonzero()[0]
            vals = scores[cand]
        else:
            # NaN ranks as -inf; np.partition would put it last (above every number), so a
            # few NaN scores would push the K-th score, and the threshold, too high
            nan = np.isnan(scores)
            if nan.any():
                scores[nan] = -np.inf
            cand = None
            vals = scores
        m = vals.size
        kth = np.partition(vals, m - k)[m - k]
        self.theta = kth
        if kth == -np.inf:
            chosen = (vals > kth).nonzero()[0]
        else:
            at_least = vals >= kth
            if np.count_nonzero(at_least) == k:
                chosen = at_least.nonzero()[0]
            else:  # more ties at the k-th score than slots: the lowest codes win
                better = (vals > kth).nonzero()[0]
                tied = (vals == kth).nonzero()[0][: k - better.size]
                chosen = np.concatenate([better, tied])
        if multi_k:
            chosen = chosen[np.lexsort((chosen, -vals[chosen]))]
        if cand is not None:
            chosen = cand[chosen]
        if multi_k:
            for r, kk in enumerate(ks):
                recommended[r, chosen[:kk]] = True
        else:
            recommended[0, chosen] = True
        return chosen, kth

    # -- checkpoints -------------------------------------------------------------------------

    def _paths(self) -> tuple[Path, str]:
        folder = Path(self.config.checkpoint_dir)
        return folder, _safe_name(self.name)

    def checkpoint(self) -> None:
        """Save the model and the replay state; the state file is replaced last, atomically."""
        folder, stem = self._paths()
        folder.mkdir(parents=True, exist_ok=True)
        step = self.record.steps_done
        model_file = f"{stem}.step{step}.model"
        self.model.save(folder / model_file)
        state = {
            "version": _CHECKPOINT_VERSION,
            "name": self.name,
            "model_class": self.identity[0], "model_params": self.identity[1],
            "stream": self.stream.fingerprint,
            "config": self.config.key(),
            "model_file": model_file,
            "table_u": self.table_u, "table_i": self.table_i,
            "mapped_u": self.mapped_u, "mapped_i": self.mapped_i,
            "rates": self.rates, "rate_check": self.rate_check,
            "identity_u": self.identity_u, "identity_i": self.identity_i, "theta": self.theta,
            "record": self.record, "elapsed": time.perf_counter() - self._t0,
            "mem_peak": self.mem_peak - self.mem_base,
        }
        tmp = folder / f"{stem}.state.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / f"{stem}.state")
        for old in folder.glob(f"{stem}.step*.model"):
            if old.name != model_file:
                old.unlink(missing_ok=True)

    def try_resume(self) -> bool:
        """Continue from this model's checkpoint if there is one for this stream and protocol."""
        folder, _ = self._paths()
        state = read_checkpoint(self.name, self.stream, self.config, self.identity)
        if state is None:
            return False
        self.model = IncrementalRecommender.load(folder / state["model_file"])
        self.table_u, self.table_i = state["table_u"], state["table_i"]
        self.mapped_u, self.mapped_i = state["mapped_u"], state["mapped_i"]
        self.identity_u, self.identity_i = state["identity_u"], state["identity_i"]
        self.theta = state["theta"]
        self.rates, self.rate_check = state["rates"], state["rate_check"]
        self.record = state["record"]
        self.record.resumed_from = self.record.steps_done
        self.record.wall_s = state["elapsed"]
        self.mem_base = _rss_mb() - state["mem_peak"]
        self.mem_peak = _rss_mb()
        return True


def read_checkpoint(name: str, stream: Stream, config: ReplayConfig,
                    model: IncrementalRecommender | tuple | None = None
                    ) -> dict[str, Any] | None:
    """The checkpoint state of model ``name`` under ``config.checkpoint_dir`` (None if none);
    a ValueError if it was written for another model name, stream or protocol, or (when
    ``model`` is given) for a model of another class or with other parameters."""
    path = Path(config.checkpoint_dir) / f"{_safe_name(name)}.state"
    if not path.exists():
        return None
    with open(path, "rb") as fh:
        state = pickle.load(fh)
    if state.get("version") != _CHECKPOINT_VERSION or state["stream"] != stream.fingerprint \
            or state["config"] != config.key():
        raise ValueError(
            f"checkpoint {path} was written for another stream or protocol; remove it or use "
            "another checkpoint_dir"
        )
    if state.get("name") != name:
        raise ValueError(f"checkpoint {path} was written for model {state.get('name')!r}, not "
                         f"{name!r}; remove it or use another checkpoint_dir")
    if model is not None:
        cls, params = model if isinstance(model, tuple) else _model_identity(model)
        if state["model_class"] != cls:
            raise ValueError(f"checkpoint {path} of model {name!r} was written for a "
                             f"{state['model_class']}, not a {cls}; remove it or use another "
                             "checkpoint_dir")
        old = state["model_params"]
        diff = [f"{key}: {old.get(key, '<unset>')} -> {params.get(key, '<unset>')}"
                for key in sorted(set(old) | set(params)) if old.get(key) != params.get(key)]
        if diff:
            raise ValueError(f"checkpoint {path} of model {name!r} was written with other "
                             f"parameters ({'; '.join(diff)}); remove it or use another "
                             "checkpoint_dir")
    return state


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
    try:
        record = state.run(bar)
    finally:
        if bar is not None:
            bar.close()
    if config.checkpoint_dir:
        state.checkpoint()
    return record
