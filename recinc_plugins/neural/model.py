"""NeuralRecommender: a two-tower PyTorch recommender that learns online from a stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .._optional import require
from ..base import Batch, Capabilities, IncrementalRecommender, Newcomer
from ..context import Context, score_with_context
from ..eventlog import EventLog
from ..forget import ForgetReport, Removed
from ..growth import grown
from ..params import check_choice, check_int, check_number, check_seed
from .embeddings import EmbeddingArena
from .replay import ReplayBuffer

torch = require("torch", "torch")

__all__ = ["NeuralRecommender"]

_LOSSES = ("bpr", "bce", "mse")
_RATING_LOSSES = ("mse",)
_NEGATIVES = ("uniform", "popularity", "in-batch")
_REPLAY = ("reservoir", "recent")
#: events per chunk when ``forget`` re-trains the rows it touched (shuffled kept events)
_RELEARN_BATCH = 256
_OPTIMIZERS = ("auto", "adagrad", "rmsprop", "sgd")
# defaults tuned on the first 30,000 events of MovieLens 100K (benchmarks/bench_neural.py)
_DEFAULT_LR = {"adagrad": 0.1, "rmsprop": 0.005, "sgd": 0.05}
_CALIBRATIONS = ("median",)
_CAL_BINS = 1000  # calibration bins each side of zero; predictions beyond share the last one
_GOLDEN = np.uint64(11400714819323198485)  # 2**64 / golden ratio: Fibonacci hashing


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function of a float32 array, without overflow warnings."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32, copy=False)


@dataclass(eq=False, repr=False)  # the constructor only; equality and repr are the base's
class NeuralRecommender(IncrementalRecommender):
    """PyTorch two-tower recommender trained online, with replay and sampled negatives.

    The user tower is the user's own embedding plus the pooled embeddings of the user's most
    recent ``history`` items (a separate item table, as in SVD++/FISM), so a user's latest
    events move their recommendations at once, before their own row has learned much. The item
    tower is an embedding and a bias. A score is one dot product, so the whole catalogue is
    scored by one matrix product. Every table lives in one growable arena
    (:class:`~recinc_plugins.neural.embeddings.EmbeddingArena`) whose capacity doubles, and each
    step updates only the rows it touched (row-wise Adagrad or SGD, gradients written out by
    hand: no autograd graph, no dense optimiser step over whole tables).

    Each ``partial_fit`` splits the new events into chunks of ``batch_size``; each chunk is
    trained ``n_passes`` times together with ``n_replay`` events per new event drawn from a
    replay buffer of earlier events, then added to the buffer and to the users' histories.

    Parameters
    ----------
    n_factors
        Embedding dimension.
    loss
        ``"bpr"`` (pairwise, for ranking), ``"bce"`` (pointwise logistic, for ranking),
        or ``"mse"`` (squared error on the ``rating`` column: scores are then predicted ratings,
        global mean + user bias + item bias + dot product). Ranking losses treat every event
        as a positive, weighted by its ``weight`` when given; ratings do not weight them.
    history
        How many of a user's most recent items feed the user tower (0: the user's own
        embedding only).
    history_decay
        Weight of a history item per step of age (1: all equal), in (0, 1].
    n_negatives
        Sampled negatives per positive for the ranking losses.
    negatives
        How negatives are drawn: ``"uniform"`` over the known items, ``"popularity"`` (items of
        replayed events, so in proportion to their frequency), or ``"in-batch"`` (the other
        positives of the training batch).
    replay_size
        Capacity of the replay buffer (events).
    n_replay
        Replayed events per new event in each step (0: train on the new events only).
    replay
        ``"reservoir"`` (a uniform sample of the whole stream: nothing is forgotten) or
        ``"recent"`` (the last ``replay_size`` events: follows drift faster).
    n_passes
        Gradient steps per chunk of new events.
    forget_passes
        What ``forget`` re-trains after zeroing the forgotten users' and items' rows: this many
        passes, in a seeded random order, over the kept events of the rows the forgotten
        events touched (the items of forgotten users, the users of forgotten items); 0: none.
        The measured gap to a model retrained without the events is in ``docs/neural.md``.
    batch_size
        Chunk size that a large ``partial_fit`` is split into (the harness's 1-event steps are
        single chunks). Each chunk is one gradient step, so a user with many events in a step
        moves once per chunk. None: 4 for the ranking losses (chosen on the first half of
        ml-100k and the synthetic stream; 256 until 2026-11), which learns a step's bursts
        almost as one-event steps do, at about 3x the cost of 256 for a large ``fit``; 256
        for ``loss="mse"``, whose error did not change with it (``docs/neural.md``).
    learning_rate
        Step size; None picks the default of the optimiser (0.1 for Adagrad, 0.005 for
        RMSprop, 0.05 for SGD).
    optimizer
        ``"adagrad"`` (row-wise: one accumulator per row), ``"rmsprop"`` (row-wise, decaying
        accumulator), ``"sgd"``, or ``"auto"``: SGD for ``loss="mse"``, Adagrad otherwise.
        With SGD and ``loss="mse"`` a row's step is bounded by its curvature on the step's
        events, so ratings that arrive user by user do not make it diverge (``_curvature``).
    reg
        L2 penalty on the rows a step touches; None: 0.05 for ``"mse"``, 1e-4 otherwise.
    bias_learning_rate, bias_reg
        Step size and L2 penalty of the bias column (user and item biases); None: the same as
        ``learning_rate_`` and ``reg_``. With Adagrad or RMSprop the bias column's step is
        scaled by ``bias_learning_rate / learning_rate``.
    calibration
        ``"median"`` (``loss="mse"`` only): predicted ratings are moved by a learned offset per
        bin of ``calibration_width`` of the prediction, each learned online by median
        regression (a step of ``calibration_rate`` towards every rating, made on the model's
        prediction before the event is learned), so ``score`` estimates the median rating,
        which minimises absolute error, rather than the mean (lower MAE, higher RMSE).
        ``recommend`` still ranks by the uncalibrated prediction. None: no calibration.
    calibration_rate, calibration_width
        The offsets' step per event and the bin width (rating units).
    init_std
        Standard deviation of the initial embeddings (biases start at zero).
    hash_buckets
        If given, users and items are hashed into this many rows each (the hashing trick), so
        the tables stay a fixed size whatever the id space; colliding ids share a row. The id
        maps and the seen-items matrix of the base class still grow with the ids.
    cold_start
        How unknown users are answered (flagged ``cold``): ``"newcomer"`` (what new users
        picked first lately), ``"popularity"`` or ``Newcomer(...)``; see ``docs/interface.md``.
    device
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    num_threads
        If given, ``torch.set_num_threads(num_threads)`` is called when the model is built (a
        process-wide torch setting).
    seed
        Seed of the model's generator (initial embeddings, negatives, replay sampling); on a
        CPU the same seed and events give bit-identical models. (On a CPU, small steps run
        the same math on numpy views of the tensors, faster than torch's per-operation
        dispatch; they agree with the torch path to float32 rounding, not bit for bit.)

    Attributes
    ----------
    arena_ : EmbeddingArena
        The tables (``items``, ``history``, ``users``) and the optimiser state.
    hist_ : numpy.ndarray
        Each user's ring of recent items (item index + 1; 0 is empty).
    buffer_ : ReplayBuffer
        The replay buffer.
    log_ : EventLog
        Every learned event's user and item in order (8 bytes an event): ``kept_events``
        gives them in that order, so ``forget(exact=True)`` refits on the kept stream as it
        came.
    optimizer_, learning_rate_, reg_
        The settings in use once ``"auto"``/None are resolved.
    batch_size_
        The chunk size in use (``batch_size`` resolved; a property).
    last_loss_ : float
        Mean training loss of the last step (before its update).
    calibration_ : numpy.ndarray
        The calibration offsets, one per bin (zero where unused).

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.neural import NeuralRecommender
    >>> events = pd.DataFrame({
    ...     "user": ["ann", "ann", "bob", "bob", "cat", "cat", "dan"],
    ...     "item": ["jazz", "blues", "metal", "punk", "jazz", "blues", "jazz"],
    ... })
    >>> model = NeuralRecommender(n_factors=8, device="cpu", seed=0).fit(events)
    >>> model.partial_fit(pd.DataFrame({"user": ["eve"], "item": ["metal"]}))
    NeuralRecommender(n_factors=8, device='cpu', seed=0)
    >>> recs = model.recommend(["dan", "eve", "new"], k=1)
    >>> recs.cold.tolist()
    [False, False, True]
    >>> model.score("dan", ["blues", "punk"]).shape
    (2,)
    """

    capabilities = Capabilities(explicit=True, implicit=True, update="per-event", context=True)
    extra = "torch"
    # on a CPU, training steps touching at most this many rows, and scoring of at most
    # _numpy_max_users users, run on numpy views of the same tensors (0: always torch)
    _numpy_max_rows = 2048
    _numpy_max_users = 32

    #: parameters saved under an earlier name (``load`` maps them)
    _renamed_params: ClassVar[dict[str, str]] = {"fallback": "cold_start"}
    persisted_types: ClassVar[tuple[type, ...]] = (EventLog,)

    # -- parameters and validation -------------------------------------------------------------

    # The constructor is the dataclass's: every parameter below stored under its own name,
    # no other work (scikit-learn's convention, so get_params, clone and repr read this list).
    # SequentialRecommender inherits the list, adds its own and retunes n_negatives' default.
    n_factors: int = 64
    loss: str = "bpr"
    history: int = 20
    history_decay: float = 0.8
    n_negatives: int = 16
    negatives: str = "uniform"
    replay_size: int = 20_000
    n_replay: int = 4
    replay: str = "reservoir"
    n_passes: int = 1
    forget_passes: int = 1
    batch_size: int | None = None
    learning_rate: float | None = None
    optimizer: str = "auto"
    reg: float | None = None
    bias_learning_rate: float | None = None
    bias_reg: float | None = None
    calibration: str | None = None
    calibration_rate: float = 0.003
    calibration_width: float = 0.1
    init_std: float = 0.1
    hash_buckets: int | None = None
    cold_start: str | Newcomer = "newcomer"
    device: str = "auto"
    num_threads: int | None = None
    seed: int | None = None

    def _check_params(self) -> None:
        for name, minimum in (("n_factors", 1), ("history", 0), ("n_negatives", 1),
                              ("replay_size", 0), ("n_replay", 0), ("n_passes", 1),
                              ("forget_passes", 0)):
            check_int(name, getattr(self, name), minimum)
        check_int("batch_size", self.batch_size, 1, optional=True)
        for name, strict in (("learning_rate", True), ("reg", False),
                             ("bias_learning_rate", True), ("bias_reg", False)):
            check_number(name, getattr(self, name), strict=strict, optional=True)
        check_number("history_decay", self.history_decay, strict=True)
        if self.history_decay > 1:
            raise ValueError(f"history_decay must be in (0, 1], got {self.history_decay!r}")
        check_number("init_std", self.init_std)
        check_number("calibration_rate", self.calibration_rate, strict=True)
        check_number("calibration_width", self.calibration_width, strict=True)
        if self.calibration is not None:
            check_choice("calibration", self.calibration, _CALIBRATIONS)
            if self.loss not in _RATING_LOSSES:
                raise ValueError(f"calibration={self.calibration!r} calibrates predicted "
                                 f"ratings: it needs a rating loss, not loss={self.loss!r}")
        check_choice("loss", self.loss, _LOSSES)
        check_choice("negatives", self.negatives, _NEGATIVES)
        check_choice("replay", self.replay, _REPLAY)
        check_choice("optimizer", self.optimizer, _OPTIMIZERS)
        # resolved settings: plain SGD suits regression (Adagrad's shrinking steps slow the
        # bias terms), row-wise Adagrad suits sampled ranking losses
        self.optimizer_ = self.optimizer
        if self.optimizer == "auto":
            self.optimizer_ = "sgd" if self.loss in _RATING_LOSSES else "adagrad"
        self.learning_rate_ = float(self.learning_rate if self.learning_rate is not None
                                    else _DEFAULT_LR[self.optimizer_])
        self.reg_ = float(self.reg if self.reg is not None
                          else (0.05 if self.loss in _RATING_LOSSES else 1e-4))
        self.bias_learning_rate_ = float(self.bias_learning_rate
                                         if self.bias_learning_rate is not None
                                         else self.learning_rate_)
        self.bias_reg_ = float(self.bias_reg if self.bias_reg is not None else self.reg_)
        check_int("hash_buckets", self.hash_buckets, optional=True)
        check_int("num_threads", self.num_threads, optional=True)
        check_seed("seed", self.seed)
        self._resolve_device()

    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device must be 'auto', 'cpu' or a torch device such as 'cuda:0', "
                f"got {self.device!r}"
            ) from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available here")
        return device

    # -- growth --------------------------------------------------------------------------------

    def _init_model(self) -> None:
        if self.num_threads is not None:
            torch.set_num_threads(int(self.num_threads))
        self.device_ = self._resolve_device()
        self.on_cpu_ = self.device_.type == "cpu"
        self.rng_ = np.random.default_rng(self.seed)
        # the last column is a bias: a score is the dot product of [z, 1] and [q, b], so the
        # whole catalogue is scored by one matrix product
        regions = ("items", "history", "users") if self.history else ("items", "users")
        self.arena_ = EmbeddingArena(int(self.n_factors) + 1, regions, float(self.init_std),
                                     self.device_, self.optimizer_)
        self.hist_ = np.zeros((0, max(int(self.history), 1)), dtype=np.int64)
        self._decay_table = float(self.history_decay) ** np.arange(max(int(self.history), 1))
        self.hist_count_ = np.zeros(0, dtype=np.int64)
        self.buffer_ = ReplayBuffer(int(self.replay_size), self.replay)
        self.last_loss_ = float("nan")
        self.calibration_ = np.zeros(2 * _CAL_BINS + 1, dtype=np.float64)
        self._live = None  # the items not forgotten, once some are (``_live_items``)
        # the events in the order learned, for ``forget(exact=True)`` (``kept_events``)
        self.log_: EventLog | None = EventLog()

    def _rows(self, region: str, idx: np.ndarray) -> np.ndarray:
        """Arena rows of dense indices: offset + the index itself, or its hash bucket."""
        if self.hash_buckets is not None:
            hashed = (idx.astype(np.uint64) * _GOLDEN) >> np.uint64(32)
            idx = (hashed % np.uint64(self.hash_buckets)).astype(np.int64)
        return idx + self.arena_.offset[region]

    def _hist_rows(self, users: np.ndarray, exclude: np.ndarray | None = None):
        """Arena rows of each user's recent items (the padding row 0 where there is none) and
        their pooling weights ``history_decay ** age / sqrt(count)`` (SVD++/FISM pooling,
        tilted towards the latest items); ``exclude`` leaves each event's own item out."""
        hist = self.hist_[users]  # item index + 1; 0 is empty
        mask = hist > 0
        if exclude is not None:
            mask &= hist != (exclude + 1)[:, None]
        count = mask.sum(axis=1, keepdims=True)
        weights = mask / np.sqrt(np.maximum(count, 1))
        if self.history_decay != 1.0:
            length = hist.shape[1]
            age = (self.hist_count_[users][:, None] - 1 - np.arange(length)) % length
            weights = weights * self._decay_table[age]
        weights = weights.astype(np.float32)
        rows = np.where(mask, self._rows("history", hist - 1), 0)
        return rows, weights

    def _grow(self, n_users: int, n_items: int) -> None:
        if self.hash_buckets is not None:
            n_users = min(n_users, 1) * int(self.hash_buckets)
            n_items = min(n_items, 1) * int(self.hash_buckets)
        sizes = {"users": n_users, "items": n_items}
        if self.history:
            sizes["history"] = n_items
        self.arena_.grow(sizes, self.rng_)
        self.hist_ = grown(self.hist_, self.n_users, spare=True)
        self.hist_count_ = grown(self.hist_count_, self.n_users, spare=True)
        self._live = None

    # -- learning ------------------------------------------------------------------------------

    def _validate(self, interactions: Any) -> pd.DataFrame:
        frame = super()._validate(interactions)
        if self.loss in _RATING_LOSSES and "rating" not in frame.columns:
            raise ValueError(
                f"loss={self.loss!r} learns ratings, but the interactions have no 'rating' column "
                f"(columns: {list(frame.columns)}); use loss='bpr' or 'bce' for implicit feedback"
            )
        return frame

    @property
    def batch_size_(self) -> int:
        """The chunk size in use: ``batch_size``, or for None 4 with the ranking losses and
        256 with ``"mse"``. Derived from the parameters each time, so ``set_params`` and
        files written before ``batch_size`` could be None follow it."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return 256 if self.loss in _RATING_LOSSES else 4

    def _partial_fit(self, batch: Batch) -> None:
        if self.loss in _RATING_LOSSES:
            if batch.ratings is None:
                raise ValueError(f"loss={self.loss!r} learns ratings, but the batch has none")
            values = batch.ratings.astype(np.float32)
        elif batch.weights is not None:
            values = batch.weights.astype(np.float32)
        else:
            values = np.ones(len(batch), dtype=np.float32)
        if self.log_ is not None:
            self.log_.add(batch.users, batch.items)
        size = self.batch_size_
        for start in range(0, len(batch), size):
            users = batch.users[start:start + size]
            items = batch.items[start:start + size]
            vals = values[start:start + size]
            seqs = self._sequences(users, items)
            if self.calibration is not None:
                self._learn_calibration(users, items, vals)
            for _ in range(int(self.n_passes)):
                u, i, v, q = users, items, vals, seqs
                if self.n_replay and len(self.buffer_):
                    pick = self.buffer_.sample(users.size * int(self.n_replay), self.rng_)
                    u = np.concatenate([users, self.buffer_.users[pick]])
                    i = np.concatenate([items, self.buffer_.items[pick]])
                    v = np.concatenate([vals, self.buffer_.values[pick]])
                    if seqs is not None:
                        q = np.concatenate([seqs, self.buffer_.seqs[pick]])
                self.last_loss_ = self._train_step(u, i, v, q, users.size)
            self.buffer_.add(users, items, vals, self.rng_, seqs)
            self._remember(users, items)

    def _sequences(self, users: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """Each event's recent items as they were when it happened, kept with the event in the
        replay buffer (:class:`~recinc_plugins.neural.SequentialRecommender`); None here: this
        model trains every event with its user's recent items as they are now."""
        return None

    def _calibration_bins(self, pred: np.ndarray) -> np.ndarray:
        bins = np.floor(pred / float(self.calibration_width))
        return (np.clip(np.nan_to_num(bins), -_CAL_BINS, _CAL_BINS) + _CAL_BINS).astype(np.int64)

    def _calibrate(self, pred: np.ndarray) -> np.ndarray:
        """Predicted ratings moved by the learned offset of their bin (``calibration``)."""
        if self.calibration is None:
            return pred
        return pred + self.calibration_[self._calibration_bins(pred)]

    def _learn_calibration(self, users: np.ndarray, items: np.ndarray,
                           ratings: np.ndarray) -> None:
        """One online median-regression step per event on the offset of the bin of the model's
        prediction for it (made before the event is learned): the offset moves by
        ``calibration_rate`` towards the rating, so it converges to the median of the rating
        minus the prediction among events predicted in that bin."""
        raw = self._raw_pairs(users, items)
        bins = self._calibration_bins(raw)
        step = float(self.calibration_rate) * np.sign(ratings - (raw + self.calibration_[bins]))
        np.add.at(self.calibration_, bins, step)

    def _remember(self, users: np.ndarray, items: np.ndarray) -> None:
        """Append the events to each user's ring of recent items."""
        length = self.hist_.shape[1]
        if users.size == 1:
            u = int(users[0])
            if self.history:
                self.hist_[u, self.hist_count_[u] % length] = items[0] + 1
            self.hist_count_[u] += 1
        else:
            order = np.argsort(users, kind="stable")
            us, its = users[order], items[order]
            uniq, first, counts = np.unique(us, return_index=True, return_counts=True)
            rank = np.arange(us.size) - np.repeat(first, counts)
            if self.history:
                keep = rank >= np.repeat(counts, counts) - length  # only the last ones remain
                pos = (self.hist_count_[us] + rank) % length
                self.hist_[us[keep], pos[keep]] = its[keep] + 1
            self.hist_count_[uniq] += counts

    def _negatives(self, items: np.ndarray) -> np.ndarray:
        n, k = items.size, int(self.n_negatives)
        if self.negatives == "popularity" and len(self.buffer_):
            return self.buffer_.items[self.buffer_.sample(n * k, self.rng_)].reshape(n, k)
        if self.negatives == "in-batch" and n > 1:
            return items[self.rng_.integers(0, n, size=(n, k))]
        live = self._live_items()
        if live is not None:  # never a forgotten item
            return live[self.rng_.integers(0, live.size, size=(n, k))]
        return self.rng_.integers(0, self.n_items, size=(n, k))

    def _live_items(self) -> np.ndarray | None:
        """The indices of the items not forgotten, or None while no item is (cached until the
        items grow or some are forgotten)."""
        cached = self.__dict__.get("_live")
        n = self.n_items
        if cached is None or cached[0] != n:
            dead = self.item_index_._dead
            live = None if dead is None or not dead[:n].any() else np.flatnonzero(~dead[:n])
            cached = self._live = (n, live)
        return cached[1]

    def _uses_numpy(self, size: int, limit: int) -> bool:
        """Whether work of ``size`` (rows of a step, users scored) takes the numpy path: on a
        CPU, small steps (the harness's one-event steps) are a few dozen tiny array operations,
        where numpy's per-operation cost is a fraction of torch's dispatch; same arithmetic."""
        return self.on_cpu_ and size <= limit

    def _train_step(self, users: np.ndarray, items: np.ndarray, values: np.ndarray,
                    seqs: np.ndarray | None = None, n_new: int | None = None) -> float:
        """One row-wise gradient step on the events; returns their mean loss before it.

        ``seqs`` are the events' recent items (``_sequences``; None: the users' current ones,
        each event's own item left out) and ``n_new`` how many of the events are new (they
        lead; the rest are replayed): the pooling hooks may treat the two apart."""
        arena = self.arena_
        ranking = self.loss not in _RATING_LOSSES
        # every row the step reads, in one index: [item, negatives...] per event, then users,
        # then the users' history items
        if ranking:
            item_idx = np.concatenate([items[:, None], self._negatives(items)], axis=1)
        else:
            item_idx = items[:, None]
        parts = [self._rows("items", item_idx.reshape(-1)), self._rows("users", users)]
        h_w = None
        if self.history:
            h_rows, h_w = self._hist_rows(users, items) if seqs is None else \
                self._pool_rows(seqs)
            parts.append(h_rows.reshape(-1))
        rows = np.concatenate(parts)
        n_new = users.size if n_new is None else n_new
        if not self._uses_numpy(rows.size, self._numpy_max_rows):
            return self._train_step_torch(rows, item_idx.shape[1], h_w, values, n_new)
        n, n_cand, width = users.size, item_idx.shape[1], arena.dim
        weight = arena.weight.numpy()  # a view: updates below write the tensor's storage
        emb = weight[rows]
        n_q = n * n_cand
        q = emb[:n_q].reshape(n, n_cand, width)
        zb = emb[n_q:n_q + n]
        if h_w is not None:
            y = emb[n_q + n:].reshape(n, -1, width)
            pooled, cache = self._pool_numpy(y, h_w, n_new)
            z = zb + pooled
        else:
            z = zb.copy()
        z[:, -1] = 1.0
        s = np.matmul(q, z[:, :, None])[:, :, 0]
        if self.loss == "bpr":
            x = s[:, :1] - s[:, 1:]
            loss = float(np.logaddexp(0.0, -x).mean())
            c = np.empty_like(s)
            c[:, 1:] = _sigmoid(-x) * (values / np.float32(n_cand - 1))[:, None]
            c[:, 0] = -c[:, 1:].sum(axis=1)
        elif self.loss == "bce":
            loss = float(np.logaddexp(0.0, -s[:, 0]).mean() + np.logaddexp(0.0, s[:, 1:]).mean())
            c = _sigmoid(s)
            c[:, 0] -= 1.0
            c[:, 1:] /= np.float32(n_cand - 1)
            c *= values[:, None]
        else:
            c = s + (zb[:, -1:] + np.float32(self.global_mean_)) - values[:, None]
            loss = float(np.square(c).mean())
        dz = np.matmul(c[:, None, :], q)[:, 0]
        dz[:, -1] = 0.0 if ranking else c[:, 0]
        grads = [(c[:, :, None] * z[:, None, :]).reshape(n_q, width), dz]
        if h_w is not None:
            dz_y = dz.copy()
            dz_y[:, -1] = 0.0  # history rows carry no bias
            grads.append(self._pool_backward_numpy(dz_y, y, h_w, cache).reshape(-1, width))
        grads = np.concatenate(grads)
        curv = None if ranking or self.optimizer_ != "sgd" else self._curvature(grads, c[:, 0])
        self._regularise(grads, emb)
        # sum the gradients of repeated rows; the padding row (0) has none. np.add.at is slow
        # on the rows of a matrix, so it only adds the repeats onto the first occurrences
        keep = np.flatnonzero(rows)
        rows, grads = rows[keep], grads[keep]
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        repeat = np.concatenate([[False], ordered[1:] == ordered[:-1]])
        if curv is not None:
            curv = curv[keep]
        if not repeat.any():
            uniq, summed = rows, grads
        else:
            first = ~repeat
            uniq = ordered[first]
            summed = grads[order[first]]
            group = np.cumsum(first) - 1
            again = np.flatnonzero(repeat)
            np.add.at(summed, group[again], grads[order[again]])
            if curv is not None:
                curv = np.bincount(group, weights=curv[order], minlength=uniq.size)
        if curv is not None and curv.max() > 1.0:  # (at one event per step, almost never)
            summed *= (1.0 / np.maximum(curv, 1.0)).astype(np.float32)[:, None]
        self._scale_bias(summed)
        arena.step_numpy(uniq, summed, self.learning_rate_)
        return loss

    # the user tower's pooling of the recent items' rows ``y`` (rows x positions x width) with
    # the weights ``h_w`` of ``_hist_rows``; a sequential model replaces these four

    def _pool_numpy(self, y: np.ndarray, h_w: np.ndarray, n_new: int) -> tuple[np.ndarray, Any]:
        """The pooled recent items (rows x width) and what the backward pass needs."""
        return np.matmul(h_w[:, None, :], y)[:, 0], None

    def _pool_backward_numpy(self, dz: np.ndarray, y: np.ndarray, h_w: np.ndarray,
                             cache: Any) -> np.ndarray:
        """The gradients of the rows ``y`` given those of the pooled vectors ``dz``."""
        return h_w[:, :, None] * dz[:, None, :]

    def _pool_torch(self, y: torch.Tensor, h_w: torch.Tensor, n_new: int
                    ) -> tuple[torch.Tensor, Any]:
        return torch.bmm(h_w.unsqueeze(1), y).squeeze(1), None

    def _pool_backward_torch(self, dz: torch.Tensor, y: torch.Tensor, h_w: torch.Tensor,
                             cache: Any, out: torch.Tensor) -> None:
        """:meth:`_pool_backward_numpy` written into ``out``."""
        torch.mul(h_w.unsqueeze(2), dz.unsqueeze(1), out=out)

    def _regularise(self, grads, emb) -> None:
        """Add the L2 penalty (``bias_reg`` on the bias column) to the gradients in place."""
        if self.reg_ and self.bias_reg_ == self.reg_:
            if isinstance(grads, torch.Tensor):
                grads.add_(emb, alpha=self.reg_)
            else:
                grads += np.float32(self.reg_) * emb
        elif self.reg_ or self.bias_reg_:
            grads[:, :-1] += float(self.reg_) * emb[:, :-1]
            grads[:, -1] += float(self.bias_reg_) * emb[:, -1]

    def _scale_bias(self, grads) -> None:
        """Scale the bias column so that it moves with ``bias_learning_rate``."""
        if self.bias_learning_rate_ != self.learning_rate_:
            grads[:, -1] *= self.bias_learning_rate_ / self.learning_rate_

    def _curvature(self, grads, errors):
        """Each gradient row's share of the step-scaled curvature of its arena row, for the
        squared loss under SGD: ``lr |x|^2 + (bias_lr - lr) x_b^2 + max(lr reg, bias_lr
        bias_reg)``, where ``x`` is the derivative of the event's predicted rating by the row
        (its gradient divided by the event's error: an event without error adds its penalty
        only) and ``x_b`` its bias entry. ``grads`` are in :meth:`_train_step`'s layout (the
        events' items, their users, then each event's history rows), before the penalty.

        Summed over a row's uses in a step, this bounds the largest eigenvalue of the
        step-scaled Hessian of the step's loss along that row; the train step scales the
        row's summed gradient down to make it at most 1, so a row never moves past the point
        where it alone would fit the step's events (the normalised-LMS bound). Plain SGD
        moves a row by the gradients of all the events that use it at once: without the
        bound, a user whose ratings arrive together (a stream sorted by user, or one rating
        session in time order: the first 256 events of ml-100k come from 6 users)
        overshoots and diverges to NaN. At one event per step it almost never binds."""
        lr, bias_lr = self.learning_rate_, self.bias_learning_rate_
        floor = max(lr * self.reg_, bias_lr * self.bias_reg_)
        n = errors.shape[0]
        # lr / error^2 (an event without error has a zero gradient: 0 / tiny = 0)
        if isinstance(grads, torch.Tensor):
            inv = errors.square().clamp_min_(1e-30).reciprocal_().mul_(lr)
            scaled = grads.square().sum(dim=1)
        else:
            inv = np.float32(lr) / np.maximum(np.square(errors), np.float32(1e-30))
            scaled = np.einsum("ij,ij->i", grads, grads)
        if bias_lr != lr:
            scaled += (bias_lr / lr - 1.0) * grads[:, -1] ** 2
        scaled[:n] *= inv  # the events' items
        scaled[n:2 * n] *= inv  # their users
        if scaled.shape[0] > 2 * n:  # their history rows
            scaled[2 * n:].reshape(n, -1)[:] *= inv[:, None]
        scaled += floor
        return scaled

    def _train_step_torch(self, rows: np.ndarray, n_cand: int, h_w: np.ndarray | None,
                          values: np.ndarray, n_new: int) -> float:
        """The torch version of :meth:`_train_step` (any device, any step size)."""
        dev, arena = self.device_, self.arena_
        width = arena.dim
        ranking = self.loss not in _RATING_LOSSES
        n = values.size
        uniq, inverse = _unique_inverse(rows)
        emb = arena.weight[torch.from_numpy(rows).to(dev)]
        n_q = n * n_cand
        q = emb[:n_q].view(n, n_cand, width)
        zb = emb[n_q:n_q + n]
        if h_w is not None:
            w = torch.from_numpy(h_w).to(dev)
            y = emb[n_q + n:].view(n, -1, width)
            pooled, cache = self._pool_torch(y, w, n_new)
            z = zb + pooled
        else:
            z = zb.clone()
        z[:, -1] = 1.0  # [z, 1] . [q, b] = z.q + b
        s = torch.bmm(q, z.unsqueeze(2)).squeeze(2)
        vals = torch.from_numpy(values).to(dev)
        c = torch.empty_like(s)  # d loss / d score
        if self.loss == "bpr":
            x = s[:, :1] - s[:, 1:]
            loss = float(torch.nn.functional.softplus(-x).mean())
            torch.mul(torch.sigmoid(-x), (vals / (n_cand - 1)).unsqueeze(1), out=c[:, 1:])
            torch.sum(c[:, 1:], dim=1, out=c[:, 0]).neg_()
        elif self.loss == "bce":
            loss = float(torch.nn.functional.softplus(-s[:, 0]).mean()
                         + torch.nn.functional.softplus(s[:, 1:]).mean())
            torch.sigmoid(s, out=c)
            c[:, 0] -= 1.0
            c[:, 1:] /= n_cand - 1
            c *= vals.unsqueeze(1)
        else:
            torch.sub(s[:, 0] + zb[:, -1] + self.global_mean_, vals, out=c[:, 0])
            loss = float(c.square().mean())
        dz = torch.bmm(c.unsqueeze(1), q).squeeze(1)
        dz[:, -1] = 0.0 if ranking else c[:, 0]
        # the gradients of every row read, written in place into one buffer (no concatenation)
        grads = torch.empty((rows.size, width), dtype=emb.dtype, device=dev)
        torch.mul(c.unsqueeze(2), z.unsqueeze(1), out=grads[:n_q].view(n, n_cand, width))
        grads[n_q:n_q + n] = dz
        if h_w is not None:
            g_hist = grads[n_q + n:].view(n, -1, width)
            self._pool_backward_torch(dz, y, w, cache, g_hist)
            g_hist[:, :, -1] = 0.0  # history rows carry no bias
        curv = None if ranking or self.optimizer_ != "sgd" else self._curvature(grads, c[:, 0])
        self._regularise(grads, emb)
        inverse = torch.from_numpy(inverse).to(dev)
        summed = torch.zeros((uniq.size, width), dtype=grads.dtype, device=dev)
        summed.index_add_(0, inverse, grads)
        if curv is not None:
            total = torch.zeros(uniq.size, dtype=curv.dtype, device=dev)
            total.index_add_(0, inverse, curv)
            summed *= total.clamp_(min=1.0).reciprocal_().unsqueeze(1)
        self._scale_bias(summed)
        arena.step(torch.from_numpy(uniq).to(dev), summed, self.learning_rate_)
        return loss

    # -- forgetting ----------------------------------------------------------------------------

    def forget(self, users: Any = None, items: Any = None, *, exact: bool = False,
               missing: str = "raise") -> ForgetReport:
        """:meth:`Forgetting.forget <recinc_plugins.forget.Forgetting.forget>`, with
        ``forget_passes`` read now (``set_params`` may have changed it) and checked before
        anything changes."""
        check_int("forget_passes", self.forget_passes, 0)
        return super().forget(users, items, exact=exact, missing=missing)

    def _forget(self, removed: Removed) -> None:
        """Approximate removal: the forgotten users' and items' rows (user, item and history
        tables) and their optimiser state zeroed, their events out of the replay buffer and
        the forgotten items out of every user's recent items, then ``forget_passes`` passes
        over the kept events of the rows the forgotten events touched."""
        gone_user = np.zeros(len(self.user_index_), dtype=bool)
        gone_user[removed.users] = True
        gone_item = np.zeros(len(self.item_index_), dtype=bool)
        gone_item[removed.items] = True
        self._live = None
        if self.log_ is not None:
            self.log_.drop(removed.users, removed.items, gone_user.size, gone_item.size)
        self.buffer_.drop(gone_user, gone_item, round(float(removed.counts.sum())))
        self._forget_recent(removed, gone_user, gone_item)
        cleared = [self._rows("users", removed.users), self._rows("items", removed.items)]
        if self.history:
            cleared.append(self._rows("history", removed.items))
        cleared = np.concatenate(cleared)
        self.arena_.clear(cleared)
        self.last_loss_ = float("nan")
        self._relearn(removed, gone_user, gone_item, cleared)

    def kept_events(self) -> pd.DataFrame:
        """The kept events in the order learned (the log), so that ``forget(exact=True)``
        refits on the kept stream as it came: the model a fit on it in that order gives.
        A file from before the log was kept gives them by index, as
        :meth:`Forgetting.kept_events <recinc_plugins.forget.Forgetting.kept_events>` does."""
        if getattr(self, "log_", None) is None:
            return super().kept_events()
        return self.log_.frame(self)

    def _forget_recent(self, removed: Removed, gone_user: np.ndarray,
                       gone_item: np.ndarray) -> None:
        """The rings of recent items of every user who lost events, for their new event
        counts: the forgotten users' emptied, the others' rebuilt from their kept events in
        the log (as a model that never learned the forgotten ones has them), or, without a
        log, rewritten without the forgotten items (the later ones keep their order and ages;
        none older comes back)."""
        lost = np.union1d(removed.pair_users, removed.users)
        recent = None
        if self.history and lost.size and self.log_ is None:
            recent = self._recent_items(lost)
        np.subtract.at(self.hist_count_, removed.pair_users,
                       np.rint(removed.counts).astype(np.int64))
        self.hist_count_[removed.users] = 0
        np.maximum(self.hist_count_, 0, out=self.hist_count_)
        if not self.history or not lost.size:
            return
        self.hist_[lost] = 0
        length = self.hist_.shape[1]
        if recent is None:  # from the log, whose forgotten events are gone already
            owners, items = self.log_.sequences(lost, gone_user.size)
            if not owners.size:
                return
            ends = np.flatnonzero(np.r_[owners[1:] != owners[:-1], True]) + 1
            take = np.minimum(np.diff(np.r_[0, ends]), length)
            age = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
            users = np.repeat(owners[ends - 1], take)
            # the latest first: age 0 is the user's last event
            picked = items[np.repeat(ends, take) - 1 - age]
            slots = (self.hist_count_[users] - 1 - age) % length
            self.hist_[users, slots] = picked + 1
            return
        marked = np.concatenate([[False], gone_item])
        keep = (recent > 0) & ~gone_user[lost][:, None]
        keep[keep] = ~marked[recent[keep]]
        order = np.argsort(~keep, axis=1, kind="stable")  # the kept ones first, in order
        items = np.take_along_axis(recent, order, axis=1)
        keep = np.take_along_axis(keep, order, axis=1)
        slots = (self.hist_count_[lost][:, None] - 1 - np.arange(length)[None, :]) % length
        row, age = np.nonzero(keep)
        self.hist_[lost[row], slots[row, age]] = items[row, age]

    def _relearn(self, removed: Removed, gone_user: np.ndarray, gone_item: np.ndarray,
                 cleared: np.ndarray) -> None:
        """``forget_passes`` passes over the kept events of the users and items the
        forgotten events touched (and, with ``hash_buckets``, of the ids sharing a cleared
        row), shuffled by the model's generator, in chunks of ``_RELEARN_BATCH`` events (the
        events are shuffled, so a chunk is not one user's burst: ``batch_size``'s 4 cost 5.5x
        the time for the same recall), without replay; the attention of a sequential model
        does not learn from them."""
        passes = int(self.forget_passes)
        users = np.unique(removed.pair_users)
        users = users[~gone_user[users]]
        items = np.unique(removed.pair_items)
        items = items[~gone_item[items]]
        if self.hash_buckets is not None:  # ids that shared a cleared row
            live_users = np.flatnonzero(~gone_user)
            live_items = np.flatnonzero(~gone_item)
            shared = np.isin(self._rows("items", live_items), cleared)
            if self.history:
                shared |= np.isin(self._rows("history", live_items), cleared)
            users = np.union1d(users, live_users[np.isin(self._rows("users", live_users),
                                                         cleared)])
            items = np.union1d(items, live_items[shared])
        if passes == 0 or (users.size == 0 and items.size == 0):
            return
        seen = self.seen_.tocsr()
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        cols = seen.indices.astype(np.int64)
        wanted_user = np.zeros(seen.shape[0], dtype=bool)
        wanted_user[users] = True
        wanted_item = np.zeros(seen.shape[1], dtype=bool)
        wanted_item[items] = True
        pick = np.flatnonzero(wanted_user[rows] | wanted_item[cols])
        rows, cols = rows[pick], cols[pick]
        counts = np.rint(seen.data[pick]).astype(np.int64)
        rating = self.loss in _RATING_LOSSES
        strengths = getattr(self, "pair_values_", None)
        if rating and strengths is None:
            return  # (a file from before the ratings per pair were kept)
        if strengths is not None and (rating or not self.n_ratings_):
            values = np.asarray(strengths.tocsr()[rows, cols]).ravel() / np.maximum(counts, 1)
        else:
            values = np.ones(rows.size)
        users = np.repeat(rows, counts)
        items = np.repeat(cols, counts)
        values = np.repeat(values, counts).astype(np.float32)
        size = _RELEARN_BATCH
        for _ in range(passes):
            order = self.rng_.permutation(users.size)
            for start in range(0, users.size, size):
                take = order[start:start + size]
                self.last_loss_ = self._train_step(users[take], items[take], values[take],
                                                   None, 0)

    # -- scoring -------------------------------------------------------------------------------

    def predicts_ratings(self) -> bool:
        return self.loss in _RATING_LOSSES and self.n_ratings_ > 0

    def _user_vectors(self, users: np.ndarray) -> torch.Tensor:
        """The user tower ``[z, b_u]``: the user's row plus the pooled recent items."""
        users = np.asarray(users, dtype=np.int64)
        zb = self.arena_.weight[torch.from_numpy(self._rows("users", users)).to(self.device_)]
        if not self.history:
            return zb
        h_rows, h_w = self._hist_rows(users)
        y = self.arena_.weight[torch.from_numpy(h_rows).to(self.device_)]
        return zb + self._pool_torch(y, torch.from_numpy(h_w).to(self.device_), 0)[0]

    def _item_table(self, items: np.ndarray | None = None) -> torch.Tensor:
        if items is None and self.hash_buckets is None:
            return self.arena_.region("items")[: self.n_items]
        if items is None:
            items = np.arange(self.n_items)
        rows = self._rows("items", np.asarray(items, dtype=np.int64))
        return self.arena_.weight[torch.from_numpy(rows).to(self.device_)]

    def _user_vectors_numpy(self, users: np.ndarray) -> np.ndarray:
        """:meth:`_user_vectors` on numpy views of a CPU arena."""
        users = np.asarray(users, dtype=np.int64)
        weight = self.arena_.weight.numpy()
        zb = weight[self._rows("users", users)]
        if not self.history:
            return zb
        h_rows, h_w = self._hist_rows(users)
        return zb + self._pool_numpy(weight[h_rows], h_w, 0)[0]

    def _item_table_numpy(self) -> np.ndarray:
        if self.hash_buckets is None:
            start = self.arena_.offset["items"]
            return self.arena_.weight.numpy()[start:start + self.n_items]
        return self.arena_.weight.numpy()[self._rows("items", np.arange(self.n_items))]

    @torch.no_grad()
    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if self._uses_numpy(np.size(users), self._numpy_max_users):
            return self._score_vectors_numpy(self._user_vectors_numpy(users))
        return self._score_vectors(self._user_vectors(users))

    def _score_vectors_numpy(self, zb: np.ndarray) -> np.ndarray:
        """Scores of the catalogue for user towers ``[z, b_u]`` (overwritten)."""
        bias = zb[:, -1:] + np.float32(self.global_mean_) \
            if self.loss in _RATING_LOSSES else None
        zb[:, -1] = 1.0
        scores = zb @ self._item_table_numpy().T
        if bias is not None:
            scores += bias
        return scores

    def _score_vectors(self, zb: torch.Tensor) -> np.ndarray:
        """:meth:`_score_vectors_numpy` for a tensor, on the model's device."""
        bias = zb[:, -1:] + self.global_mean_ if self.loss in _RATING_LOSSES else None
        zb[:, -1] = 1.0
        scores = zb @ self._item_table().T
        if bias is not None:
            scores += bias
        return scores.cpu().numpy()

    @torch.no_grad()
    def _score_in_context(self, users: np.ndarray, context: Context) -> np.ndarray:
        """Scores with each row's context appended to its user's recent items, as if
        ``_remember`` had seen them (nothing is learned or changed); a user of -1 has a zero
        user row and only the context. A known user without context is scored exactly as by
        ``_score_users``, an unknown one by the cold-start fallback; with ``history=0`` the
        context has nowhere to go and is ignored."""
        users = np.asarray(users, dtype=np.int64)
        if len(context) != users.size:
            raise ValueError(f"the context has {len(context)} rows for {users.size} users")
        return score_with_context(self, users, context, self.context_rows(users, context),
                                  self._score_context_rows)

    #: the context enters as recent items, whatever their ratings (``loss="mse"`` included)
    context_reads_ratings = False

    def context_rows(self, users: np.ndarray, context: Context) -> np.ndarray:
        if not self.history:  # the context has nowhere to go
            return np.zeros(np.asarray(users).size, dtype=bool)
        return super().context_rows(users, context)

    def _score_context_rows(self, users: np.ndarray, context: Context) -> np.ndarray:
        h_rows, h_w = self._context_hist_rows(users, context)
        user_rows = np.where(users >= 0, self._rows("users", np.maximum(users, 0)), 0)
        if self._uses_numpy(users.size, self._numpy_max_users):
            weight = self.arena_.weight.numpy()
            zb = weight[user_rows] + self._pool_numpy(weight[h_rows], h_w, 0)[0]
            return self._score_vectors_numpy(zb)
        dev = self.device_
        zb = self.arena_.weight[torch.from_numpy(user_rows).to(dev)]
        y = self.arena_.weight[torch.from_numpy(h_rows).to(dev)]
        return self._score_vectors(zb + self._pool_torch(y, torch.from_numpy(h_w).to(dev), 0)[0])

    def _recent_items(self, users: np.ndarray, context: Context | None = None) -> np.ndarray:
        """Each row's last ``history`` items, latest first (column = age; item index + 1, 0
        where there is none): its user's learned recent items followed by its context items,
        what the ring would hold after ``_remember`` of the context (-1: no learned items)."""
        length = self.hist_.shape[1]
        ages = np.arange(length)
        n_ctx = np.zeros(users.size, dtype=np.int64)
        out = np.zeros((users.size, length), dtype=np.int64)
        if context is not None:
            n_ctx = np.minimum(context.lengths, length)
            latest = context.ptr[1:, None] - 1 - ages[None, :]
            from_ctx = ages[None, :] < n_ctx[:, None]
            out[from_ctx] = context.items[latest[from_ctx]] + 1
        known = users >= 0
        if not known.any():
            return out
        count = np.where(known, self.hist_count_[np.maximum(users, 0)], 0)
        learned_age = ages[None, :] - n_ctx[:, None]
        from_hist = (learned_age >= 0) & (learned_age < np.minimum(count, length)[:, None])
        slot = (count[:, None] - 1 - learned_age) % length
        out[from_hist] = self.hist_[np.maximum(users, 0)[:, None], slot][from_hist]
        return out

    def _context_hist_rows(self, users: np.ndarray, context: Context):
        """:meth:`_hist_rows` of the users' recent items followed by their context."""
        return self._pool_rows(self._recent_items(users, context))

    def _pool_rows(self, recent: np.ndarray):
        """:meth:`_hist_rows` of recent items given latest first (item index + 1, 0: none)."""
        mask = recent > 0
        weights = mask / np.sqrt(np.maximum(mask.sum(axis=1, keepdims=True), 1))
        if self.history_decay != 1.0:
            weights = weights * self._decay_table[None, :]
        rows = np.where(mask, self._rows("history", recent - 1), 0)
        return rows, weights.astype(np.float32)

    @torch.no_grad()
    def _fallback_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Ratings for pairs with an unknown user or item: the global mean plus the learned
        bias of whichever side is known (as biased MF predicts); popularity when ranking."""
        if not self.predicts_ratings():
            return super()._fallback_pairs(users, items)
        out = np.full(users.size, self.global_mean_)
        for region, idx in (("users", users), ("items", items)):
            known = idx >= 0
            if known.any():
                rows = torch.from_numpy(self._rows(region, idx[known])).to(self.device_)
                out[known] += self.arena_.weight[rows, -1].cpu().numpy()
        return self._calibrate(out)

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.loss in _RATING_LOSSES:
            return self._calibrate(self._raw_pairs(users, items))
        return self._raw_pairs(users, items)

    @torch.no_grad()
    def _raw_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of pairs of known users and items (uncalibrated predicted ratings)."""
        if self._uses_numpy(np.size(users), self._numpy_max_rows):
            zb = self._user_vectors_numpy(users)
            bias = zb[:, -1] + np.float32(self.global_mean_) \
                if self.loss in _RATING_LOSSES else 0.0
            zb[:, -1] = 1.0
            q = self.arena_.weight.numpy()[self._rows("items", np.asarray(items, np.int64))]
            return ((zb * q).sum(1) + bias).astype(np.float64)
        zb = self._user_vectors(users)
        bias = zb[:, -1] + self.global_mean_ if self.loss in _RATING_LOSSES else 0.0
        zb[:, -1] = 1.0
        scores = (zb * self._item_table(items)).sum(1) + bias
        return scores.cpu().numpy().astype(np.float64)

    # -- persistence ---------------------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        state = super()._get_state()
        state.pop("_live", None)  # a cache
        return state

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        if "arena_" in state and "log_" not in state:  # a file from before the log was kept
            self.log_ = None
        if hasattr(self, "device_"):
            self.device_ = self._resolve_device()
            self.on_cpu_ = self.device_.type == "cpu"
            self.arena_.to(self.device_)


def _unique_inverse(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, return_inverse=True)`` for non-negative ints; without a sort when
    their range is small next to their count (a dense marker table instead), same result."""
    top = int(rows.max()) + 1 if rows.size else 0
    if rows.size == 0 or top > 4 * rows.size:
        return np.unique(rows, return_inverse=True)
    present = np.zeros(top, dtype=bool)
    present[rows] = True
    uniq = np.flatnonzero(present)
    position = np.empty(top, dtype=np.int64)
    position[uniq] = np.arange(uniq.size)
    return uniq, position[rows]
