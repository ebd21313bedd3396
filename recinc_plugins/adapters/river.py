"""River's recommenders (``river.reco``) behind the incremental interface.

River learns one event at a time, so ``partial_fit`` feeds ``learn_one`` event by event in stream
order and the wrapped model ends up exactly where River's own loop would leave it. Scoring does
not call ``predict_one``, which would insert unseen ids into the model: a few pairs are scored
from River's own dicts with River's arithmetic, and blocks of users (``recommend``, large
``score`` calls) from arrays mirroring the biases and latent vectors. River's dicts stay the
source of truth; the arrays are brought up to date for the users and items learned since, when
a vectorised score next reads them, so learning an event costs no more than ``learn_one``.
``forget`` deletes the ids' entries from every dict inside the River model (optimiser state
included) and their ratings from its global mean; what they taught the rest stays
(approximate, docs/river.md).
"""

from __future__ import annotations

import collections
import copy
import warnings
from typing import Any, ClassVar

import numpy as np

from .._optional import require
from ..base import Batch, Capabilities, IncrementalRecommender
from ..context import context_for
from ..forget import Removed
from ..growth import grown_view
from ..ids import _first_of_each, _one_id
from ..params import check_int

__all__ = ["RiverBaseline", "RiverBiasedMF", "RiverFunkMF", "RiverRanker"]

#: up to this many pairs, scores are computed pair by pair from River's dicts (the harness's
#: one-event steps); numpy calls on arrays this small cost more than the arithmetic
_FEW_PAIRS = 8
#: a score call with at most this many pairs keeps the values it draws for unseen ids as
#: River's next draws (a larger one rewinds the generator instead), which bounds what is kept
_FEW_AHEAD = 64


class RiverRanker(IncrementalRecommender):
    """Any ``river.reco`` Ranker as an incremental recommender.

    ``partial_fit`` calls the River model's ``learn_one(user, item, y)`` for every event in
    order, so after the same events the wrapped model (``model_``) is identical to one trained by
    River's own loop. For :class:`river.reco.Baseline`, :class:`river.reco.BiasedMF` and
    :class:`river.reco.FunkMF`, scores are computed from arrays mirroring the model's biases and
    latent vectors, with the same numbers as ``predict_one``; any other Ranker is scored with
    ``predict_one`` one pair at a time (a warning says so, and River then inserts unseen ids).

    A pair with an id the model has not learned is scored as ``predict_one`` would score it,
    without inserting the id: the bias and latent vector River would draw for it are River's
    next draws, read ahead from the model's own initialisers and kept for River (or, for a large
    call, drawn and the generator rewound), so whatever River draws next, for this id or
    another, is what it would have drawn had nothing been scored. Within one ``score`` call,
    ids are drawn in the order River would draw them.

    Parameters
    ----------
    model
        A fresh ``river.reco`` Ranker (it is deep-copied on ``fit``, so the object passed in is
        never trained).

    Attributes
    ----------
    model_
        The wrapped River model, trained on every event learned so far.
    vectorised_
        True when scores come from the mirrored arrays, False when from ``predict_one``.

    Examples
    --------
    >>> import pandas as pd
    >>> from river import reco
    >>> from recinc_plugins.adapters.river import RiverRanker
    >>> events = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"],
    ...                        "rating": [4.0, 2.0, 5.0]})
    >>> model = RiverRanker(reco.Baseline()).fit(events)
    >>> model.score("b", ["x", "y"]).round(4)
    array([3.72  , 3.6733])
    """

    capabilities = Capabilities(explicit=True, implicit=False, update="per-event")
    extra = "river"

    # -- parameters and validation -------------------------------------------------------------

    def __init__(self, model: Any = None) -> None:
        self.model = model

    def _check_params(self) -> None:
        reco = _river().reco
        if not isinstance(self.model, reco.base.Ranker):
            raise TypeError(
                "model must be a river.reco Ranker such as river.reco.BiasedMF(), got "
                f"{type(self.model).__name__}"
            )

    # -- growth --------------------------------------------------------------------------------

    def _init_model(self) -> None:
        self.model_ = self._make_model()
        self.kind_ = _model_kind(self.model_)
        self.vectorised_ = self.kind_ is not None
        if self.vectorised_:
            _draw_ahead(self.model_)
        else:
            warnings.warn(
                f"{type(self.model_).__name__} is not a reco.Baseline, BiasedMF or FunkMF, so "
                "its state cannot be read: it is scored with predict_one one pair at a time, "
                "which inserts unseen ids into the model",
                UserWarning,
                stacklevel=3,
            )
        n_factors = getattr(self.model_, "n_factors", 0) if self.kind_ != "baseline" else 0
        self.user_bias_ = np.zeros(0)
        self.item_bias_ = np.zeros(0)
        self.user_latent_ = np.zeros((0, n_factors))
        self.item_latent_ = np.zeros((0, n_factors))
        self.user_learned_ = np.zeros(0, dtype=bool)
        self.item_learned_ = np.zeros(0, dtype=bool)
        # the ids as Python objects, for River's dicts: indexing a list costs far less per
        # event than a numpy lookup, which matters when every step is one event
        self._user_keys: list = []
        self._item_keys: list = []
        # users and items learned since the arrays above were last brought up to date
        self._stale_users: set = set()
        self._stale_items: set = set()

    def _grow(self, n_users: int, n_items: int) -> None:
        # views of buffers with spare room: one new id per event costs amortised O(1)
        self.user_bias_ = grown_view(self.user_bias_, n_users)
        self.item_bias_ = grown_view(self.item_bias_, n_items)
        self.user_latent_ = grown_view(self.user_latent_, n_users)
        self.item_latent_ = grown_view(self.item_latent_, n_items)
        self.user_learned_ = grown_view(self.user_learned_, n_users)
        self.item_learned_ = grown_view(self.item_learned_, n_items)
        self._user_keys.extend(self.user_index_.ids[len(self._user_keys):n_users].tolist())
        self._item_keys.extend(self.item_index_.ids[len(self._item_keys):n_items].tolist())

    # -- learning ------------------------------------------------------------------------------

    def _partial_fit(self, batch: Batch) -> None:
        learn = self.model_.learn_one
        user_keys, item_keys = self._user_keys, self._item_keys
        users, items = batch.users.tolist(), batch.items.tolist()
        if len(users) == 1:  # a one-event step: what learn_one costs, and little more
            u, i = users[0], items[0]
            learn(user_keys[u], item_keys[i], batch.values.item())
            self._stale_users.add(u)
            self._stale_items.add(i)
            return
        for u, i, y in zip(users, items, batch.values.tolist(), strict=True):
            learn(user_keys[u], item_keys[i], y)
        # River's dicts are the model: the arrays catch up when a vectorised score reads them
        self._stale_users.update(users)
        self._stale_items.update(items)

    def predict_then_learn(self, interactions: Any) -> np.ndarray:
        """Predict each event with the model as it stands, then learn it; one event at a time.

        This is River's own progressive-validation loop (``predict_one`` then ``learn_one``
        per event), run on the wrapped model without per-event calls into this interface: the
        predictions and the final model are those of River's loop, at its speed. Predictions
        are not clipped.
        """
        frame = self._validate(interactions)
        self._ensure_state()
        batch = self._encode(frame)
        self._ingest(batch)
        return self._predict_and_learn(batch)

    def score_then_learn_encoded(self, batch: Batch) -> np.ndarray | None:
        """River's own loop on an encoded batch (the harness's fast path for one-event steps,
        :meth:`IncrementalRecommender.score_then_learn_encoded`): ``predict_one`` then
        ``learn_one`` per event. ``predict_one`` gives what ``score_encoded`` gives, an id not
        learned yet included (River's next draw either way), so a replay through it has the
        numbers of one through ``score_encoded`` and ``learn_encoded``. None for a Ranker whose
        state cannot be read (``score_encoded`` answers its unknown ids with the cold-start
        fallback, not with ``predict_one``)."""
        if not hasattr(self, "user_index_"):
            self._reset()
        if not self.vectorised_:
            return None
        self._check_and_prepare(batch, *self._grown)
        self._ingest(batch)
        return self._predict_and_learn(batch)

    def _predict_and_learn(self, batch: Batch) -> np.ndarray:
        """``predict_one`` then ``learn_one`` for each event of a batch already ingested."""
        if not len(batch):
            return np.empty(0)
        predict, learn = self.model_.predict_one, self.model_.learn_one
        user_keys, item_keys = self._user_keys, self._item_keys
        users, items = batch.users.tolist(), batch.items.tolist()
        out = []
        append = out.append
        # predict_one inserts an unseen id with the draws learn_one would make next, and the
        # event is learned at once, so the model ends where learn_one alone would leave it
        for u, i, y in zip(users, items, batch.values.tolist(), strict=True):
            user, item = user_keys[u], item_keys[i]
            append(predict(user, item))
            learn(user, item, y)
        self._stale_users.update(users)
        self._stale_items.update(items)
        return np.asarray(out, dtype=np.float64)

    def _sync_arrays(self) -> None:
        """Copy the state of the users and items learned since the last call from River's
        dicts into the arrays (and mark them learned)."""
        if not self._stale_users and not self._stale_items:
            return
        model, kind = self.model_, self.kind_
        for stale, keys, learned, bias, latent, biases, latents in (
            (self._stale_users, self._user_keys, self.user_learned_, self.user_bias_,
             self.user_latent_, getattr(model, "u_biases", None),
             getattr(model, "u_latents", None)),
            (self._stale_items, self._item_keys, self.item_learned_, self.item_bias_,
             self.item_latent_, getattr(model, "i_biases", None),
             getattr(model, "i_latents", None)),
        ):
            if not stale:
                continue
            index = np.fromiter(stale, dtype=np.int64, count=len(stale))
            stale.clear()
            learned[index] = True
            if kind is None:
                continue
            ids = [keys[n] for n in index.tolist()]
            if kind != "funk_mf":
                bias[index] = [biases[key] for key in ids]
            if kind != "baseline":
                latent[index] = [latents[key] for key in ids]

    # -- forgetting ----------------------------------------------------------------------------

    @property
    def forgets_exactly(self) -> bool:  # type: ignore[override]
        # only a Ranker whose state cannot be read is retrained (exact); the others keep what
        # the forgotten ratings taught the rest of the model
        return not getattr(self, "vectorised_", True)

    def _forget(self, removed: Removed, *, epochs: int = 0) -> None:
        """Delete the forgotten ids' entries everywhere inside the River model, side by side
        (every dict under its ``u_*`` attributes loses the users, under its ``i_*`` ones the
        items: biases, latent vectors, the optimisers' state), take their ratings out of its
        global mean and their steps out of its optimisers' step counts, and clear their rows
        in the adapter's arrays and keys. What the forgotten ratings taught the other users
        and items stays (approximate); ``epochs`` passes re-train the rows they touched on
        their kept pairs (:meth:`_retrain_rows`). A Ranker this adapter cannot read is
        retrained from the kept events instead."""
        check_int("epochs", epochs, minimum=0)
        if not self.vectorised_:
            self._retrain_kept()
            return
        model = self.model_
        users, items = removed.users.tolist(), removed.items.tolist()
        user_keys = [self._user_keys[u] for u in users]
        item_keys = [self._item_keys[i] for i in items]
        for name, value in vars(model).items():
            if name.startswith("u_"):
                _drop_keys(value, user_keys, set())
            elif name.startswith("i_"):
                _drop_keys(value, item_keys, set())
        n_events = round(float(removed.counts.sum()))
        mean = getattr(model, "global_mean", None)
        if mean is not None:
            _take_out_of_mean(mean, float(removed.counts.sum()), float(removed.values.sum()))
        for optimizer in _optimizers(model):
            optimizer.n_iterations = max(0, optimizer.n_iterations - n_events)
        for keys, stale, index, bias, latent, learned in (
                (self._user_keys, self._stale_users, users, self.user_bias_, self.user_latent_,
                 self.user_learned_),
                (self._item_keys, self._stale_items, items, self.item_bias_, self.item_latent_,
                 self.item_learned_)):
            for n in index:
                keys[n] = None  # never an id (IdIndex refuses None): no live key maps here
            stale.difference_update(index)
            bias[index] = 0.0
            latent[index] = 0.0
            learned[index] = False
        if epochs:
            self._retrain_rows(np.setdiff1d(removed.pair_users, removed.users),
                               np.setdiff1d(removed.pair_items, removed.items), epochs)

    def _retrain_rows(self, users: np.ndarray, items: np.ndarray, epochs: int) -> None:
        """``epochs`` passes of River's own update over the kept pairs of the touched users
        (those who rated a forgotten item) and items (rated by a forgotten user), each pair
        once with its mean rating, updating only the touched side (its optimisers included):
        River keeps no history, so the pairs come from the shared state, in index order."""
        model, kind = self.model_, self.kind_
        counts = self.seen_.tocsr()
        values = self.pair_values_.tocsr() if self.pair_values_ is not None else counts
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        cols = counts.indices.astype(np.int64)
        means = np.asarray(values[rows, cols]).ravel() / counts.data
        clamp = _river().utils.math.clamp
        steps = {id(opt): opt.n_iterations for opt in _optimizers(model)}
        for side, touched in (("u", users), ("i", items)):
            if not touched.size:
                continue
            mine, theirs = (rows, cols) if side == "u" else (cols, rows)
            sel = np.flatnonzero(np.isin(mine, touched))
            own_keys = self._user_keys if side == "u" else self._item_keys
            other_keys = self._item_keys if side == "u" else self._user_keys
            pairs = [(own_keys[a], other_keys[b], y) for a, b, y in
                     zip(mine[sel].tolist(), theirs[sel].tolist(), means[sel].tolist(),
                         strict=True)]
            for _ in range(epochs):
                for own, other, y in pairs:
                    user, item = (own, other) if side == "u" else (other, own)
                    y_pred = self._predict_one(user, item)
                    if y_pred is None:
                        continue
                    g = clamp(model.loss.gradient(y, y_pred), minimum=-model.clip_gradient,
                              maximum=model.clip_gradient)
                    _side_step(model, kind, side, own, other, g)
            (self._stale_users if side == "u" else self._stale_items).update(
                touched.tolist())
        for optimizer in _optimizers(model):  # the step counts stay those of the events
            optimizer.n_iterations = steps.get(id(optimizer), optimizer.n_iterations)

    # -- scoring -------------------------------------------------------------------------------

    def _global_mean(self) -> float:
        return self.model_.global_mean.get() if self.kind_ != "funk_mf" else 0.0

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        if not self.vectorised_:
            item_ids = self.item_index_.ids.tolist()
            return np.array([
                [self.model_.predict_one(u, i) for i in item_ids]
                for u in self.user_index_.ids_of(users).tolist()
            ], dtype=np.float64).reshape(users.size, len(item_ids))
        self._sync_arrays()
        if self.kind_ == "funk_mf":
            scores = self.user_latent_[users] @ self.item_latent_.T
        else:
            scores = (self._global_mean() + self.user_bias_[users])[:, None] + self.item_bias_
            if self.kind_ == "biased_mf":
                scores += self.user_latent_[users] @ self.item_latent_.T
        # items indexed but not learned yet would need draws per pair: leave them out
        if not self.item_learned_.all():
            scores[:, ~self.item_learned_] = np.nan
        return scores

    def _score_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if not self.vectorised_:
            return self._exact_pairs(self.user_index_.ids_of(users).tolist(),
                                     self.item_index_.ids_of(items).tolist())
        if users.size > _FEW_PAIRS:
            self._sync_arrays()
        if users.size <= _FEW_PAIRS or not (self.user_learned_[users]
                                            & self.item_learned_[items]).all():
            return self._predict(*self._ids_of(users.tolist(), items.tolist()))[0]
        if self.kind_ == "funk_mf":
            return np.einsum("ij,ij->i", self.user_latent_[users], self.item_latent_[items])
        out = self._global_mean() + self.user_bias_[users] + self.item_bias_[items]
        if self.kind_ == "biased_mf":
            out += np.einsum("ij,ij->i", self.user_latent_[users], self.item_latent_[items])
        return out

    def _fallback_pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._exact_pairs(*self._ids_of(users.tolist(), items.tolist()))

    def _ids_of(self, users: list, items: list) -> tuple[list, list]:
        """The ids of dense indices as River's dicts key them; an index of -1 is an id the
        caller did not name, and each one is a distinct unseen id."""
        user_keys, item_keys = self._user_keys, self._item_keys
        return ([user_keys[u] if u >= 0 else _Unseen() for u in users],
                [item_keys[i] if i >= 0 else _Unseen() for i in items])

    def score_encoded(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """One predicted rating per pair of dense indices (-1: an id the caller did not name),
        equal to River's ``predict_one``; a few pairs are read from River's dicts directly."""
        if not self.vectorised_ or len(users) > _FEW_PAIRS:
            self._sync_size()  # ids added with add_ids since the model last learned
            return super().score_encoded(users, items)
        users, items = np.asarray(users).tolist(), np.asarray(items).tolist()
        if len(users) == 1:  # a one-event step of a replay: no numpy call but the array returned
            u, i = users[0], items[0]
            if 0 <= u < len(self._user_keys) and 0 <= i < len(self._item_keys):
                y = self._predict_one(self._user_keys[u], self._item_keys[i])
                if y is not None:
                    return np.array([y], dtype=np.float64)
        try:
            user_ids, item_ids = self._ids_of(users, items)
        except IndexError:  # ids given by add_ids since the model last learned get keys first
            self._sync_size()
            user_ids, item_ids = self._ids_of(users, items)
        return self._predict(user_ids, item_ids)[0]

    def score(self, users: Any, items: Any, *, context: Any = None,
              return_cold: bool = False) -> Any:
        """One predicted rating per ``(user, item)`` pair, equal to River's ``predict_one``.

        Unlike ``predict_one``, scoring never inserts an unseen user or item into the model.
        ``return_cold=True`` also returns a boolean array flagging pairs with an id the model
        has not learned. River's models do not use a ``context`` (it is checked, then
        ignored: ``IncrementalRecommender.score``).
        """
        user_ids, item_ids, u, i = self._lookup_pairs(users, items)
        if context is not None:
            first, _ = _first_of_each(user_ids)  # each distinct user once
            context_for(self, user_ids[first], context, single=_one_id(users))  # checked, unused
        self._sync_size()  # ids added to the index from outside get their rows first
        if self.vectorised_ and u.size <= _FEW_PAIRS:
            user_keys, item_keys = self._user_keys, self._item_keys
            # a known id as River's dicts key it, an unknown one as the caller gave it
            out, cold_at = self._predict(
                [user_keys[n] if n >= 0 else key
                 for n, key in zip(u.tolist(), user_ids.tolist(), strict=True)],
                [item_keys[n] if n >= 0 else key
                 for n, key in zip(i.tolist(), item_ids.tolist(), strict=True)])
            if not return_cold:
                return out
            cold = np.zeros(u.size, dtype=bool)
            cold[cold_at] = True
            return out, cold
        self._sync_arrays()
        cold = (u < 0) | (i < 0)
        cold[~cold] = ~(self.user_learned_[u[~cold]] & self.item_learned_[i[~cold]])
        out = np.empty(u.size, dtype=np.float64)
        if (~cold).any():
            out[~cold] = self._score_pairs(u[~cold], i[~cold])
        if cold.any():
            # learned pairs draw nothing, so the cold ones alone, in the caller's order, make
            # the draws River would make
            out[cold] = self._exact_pairs(user_ids[cold].tolist(), item_ids[cold].tolist())
        return (out, cold) if return_cold else out

    def _predict(self, users: list, items: list) -> tuple[np.ndarray, list[int]]:
        """``_predict_one`` for each pair of ids; and the positions of the pairs with an id
        River has not learned, which ``_exact_pairs`` scores with the draws River would make.
        """
        scores = np.empty(len(users), dtype=np.float64)
        cold: list[int] = []
        predict_one = self._predict_one
        for n in range(len(users)):
            y = predict_one(users[n], items[n])
            if y is None:
                cold.append(n)
            else:
                scores[n] = y
        if cold:
            # learned pairs draw nothing, so the cold ones alone, in the caller's order, make
            # the draws River would make
            scores[cold] = self._exact_pairs([users[n] for n in cold], [items[n] for n in cold])
        return scores, cold

    def _predict_one(self, user: Any, item: Any) -> Any:
        """River's ``predict_one(user, item)`` read from its dicts with its arithmetic (bit for
        bit), without touching the model; None when River has not learned one of the ids.
        For the three readable model kinds."""
        # dict.get, not [], which would insert a missing id (River's dicts are defaultdicts)
        model, kind = self.model_, self.kind_
        if kind == "biased_mf":
            ub, ib = model.u_biases.get(user), model.i_biases.get(item)
            ul, il = model.u_latents.get(user), model.i_latents.get(item)
            if ub is not None and ib is not None and ul is not None and il is not None:
                y = model.global_mean.get()  # the order of BiasedMF.predict_one
                y += ub
                y += ib
                y += np.dot(ul, il)
                return y
        elif kind == "baseline":
            ub, ib = model.u_biases.get(user), model.i_biases.get(item)
            if ub is not None and ib is not None:
                return model.global_mean.get() + ub + ib
        else:
            ul, il = model.u_latents.get(user), model.i_latents.get(item)
            if ul is not None and il is not None:
                return np.dot(ul, il)
        return None

    def _exact_pairs(self, users: list, items: list) -> np.ndarray:
        """``predict_one`` for each pair in order, without touching the model's state: the
        value River would draw for an unseen id is read from the initialiser's lookahead
        (:class:`_Lookahead`, drawn there if need be), or drawn and the generator rewound."""
        model = self.model_
        if not self.vectorised_:
            return np.array([model.predict_one(u, i) for u, i in zip(users, items, strict=True)],
                            dtype=np.float64)
        kind = self.kind_
        dicts = ([model.u_biases, model.i_biases] if kind != "funk_mf" else []) + (
            [model.u_latents, model.i_latents] if kind != "baseline" else [])
        drawn: list[dict] = [{} for _ in dicts]
        taken: dict[int, int] = {}  # per lookahead: how many of River's next draws are used
        keep = len(users) <= _FEW_AHEAD
        factories: list = []
        saved: list = []  # (generator, state) to put back once the peek is done

        def draw(slot: int) -> Any:
            factory = dicts[slot].default_factory
            if isinstance(factory, _Lookahead):
                n = taken.get(id(factory), 0)
                taken[id(factory)] = n + 1
                if n < len(factory.ahead) or keep:
                    return factory.peek(n)
            elif _is_constant(factory):
                return factory()
            if not factories:
                originals = [_inner(d.default_factory) for d in dicts]
                rngs = _generators(originals)
                if rngs is not None:
                    # draw with the model's own initialisers (past their lookahead), then
                    # rewind their generators: the draws River will make later are these ones
                    saved.extend((rng, rng.get_state()) for rng in rngs)
                    factories.extend(originals)
                else:
                    # one deepcopy of all the factories keeps an initialiser they share
                    # shared, so the copies draw the sequence the model itself would draw
                    factories.extend(copy.deepcopy(originals))
            return factories[slot]()

        def get(slot: int, key: Any) -> Any:
            table = dicts[slot]
            if key in table:
                return table[key]
            cache = drawn[slot]
            if key not in cache:
                cache[key] = draw(slot)
            return cache[key]

        mean = self._global_mean()
        out = np.empty(len(users), dtype=np.float64)
        try:
            for n, (user, item) in enumerate(zip(users, items, strict=True)):
                if kind == "baseline":
                    out[n] = mean + get(0, user) + get(1, item)
                elif kind == "funk_mf":
                    out[n] = np.dot(get(0, user), get(1, item)).item()
                else:  # the order of BiasedMF.predict_one, which is also the order of its draws
                    y = mean
                    y += get(0, user)
                    y += get(1, item)
                    y += np.dot(get(2, user), get(3, item))
                    out[n] = y.item() if hasattr(y, "item") else y
        finally:
            for rng, state in saved:
                rng.set_state(state)
        return out

    # -- persistence ---------------------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        self._sync_arrays()  # a saved model's arrays are complete
        return super()._get_state()

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        # files written before the arrays were brought up to date lazily have nothing pending
        self.__dict__.setdefault("_stale_users", set())
        self.__dict__.setdefault("_stale_items", set())

    # -- the wrapped model ---------------------------------------------------------------------

    def _make_model(self) -> Any:
        return copy.deepcopy(self.model)


class _NamedRiver(RiverRanker):
    """A River reco model built from the adapter's own parameters, which carry River's names."""

    _river_class: ClassVar[str]

    def _check_params(self) -> None:
        if "n_factors" in self._param_names():
            check_int("n_factors", self.n_factors)

    def _make_model(self) -> Any:
        # optimisers and initialisers are copied, so every fit starts from the same state
        cls = getattr(_river().reco, self._river_class)
        return cls(**copy.deepcopy(self.get_params()))


class RiverBaseline(_NamedRiver):
    """River's ``reco.Baseline`` (global mean plus user and item biases), learned per event.

    Parameters are those of :class:`river.reco.Baseline`, passed through unchanged; the
    optimiser and initialiser are copied for each ``fit``, so refits are reproducible.

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.adapters.river import RiverBaseline
    >>> events = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"],
    ...                        "rating": [4.0, 2.0, 5.0]})
    >>> RiverBaseline().fit(events).recommend("b", k=1).items
    array([['y']], dtype=object)
    """

    _river_class = "Baseline"

    def __init__(self, optimizer: Any = None, loss: Any = None, l2: float = 0.0,
                 initializer: Any = None, clip_gradient: float = 1e12,
                 seed: int | None = None) -> None:
        self.optimizer = optimizer
        self.loss = loss
        self.l2 = l2
        self.initializer = initializer
        self.clip_gradient = clip_gradient
        self.seed = seed


class RiverBiasedMF(_NamedRiver):
    """River's ``reco.BiasedMF`` learned per event, with vectorised scoring and top-k.

    Parameters are those of :class:`river.reco.BiasedMF`, passed through unchanged; optimisers
    and initialisers are copied for each ``fit``, so refits are reproducible.

    Examples
    --------
    River's own docstring example, through the adapter, gives River's number:

    >>> import pandas as pd
    >>> from river import optim
    >>> from recinc_plugins.adapters.river import RiverBiasedMF
    >>> events = pd.DataFrame({
    ...     "user": ["Alice"] * 5 + ["Bob"] * 4,
    ...     "item": ["Superman", "Terminator", "Star Wars", "Notting Hill", "Harry Potter",
    ...              "Superman", "Terminator", "Star Wars", "Notting Hill"],
    ...     "rating": [8, 9, 8, 2, 5, 8, 9, 8, 2]})
    >>> model = RiverBiasedMF(
    ...     n_factors=10, bias_optimizer=optim.SGD(0.025), latent_optimizer=optim.SGD(0.025),
    ...     latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=71))
    >>> model = model.fit(events)
    >>> print(f"{model.score('Bob', 'Harry Potter')[0]:.6f}")
    6.489026
    >>> native = model.model_  # River's own model, trained by learn_one on the same events
    >>> bool(model.score("Bob", "Harry Potter")[0] == native.predict_one("Bob", "Harry Potter"))
    True
    """

    _river_class = "BiasedMF"

    def __init__(self, n_factors: int = 10, bias_optimizer: Any = None,
                 latent_optimizer: Any = None, loss: Any = None, l2_bias: float = 0.0,
                 l2_latent: float = 0.0, weight_initializer: Any = None,
                 latent_initializer: Any = None, clip_gradient: float = 1e12,
                 seed: int | None = None) -> None:
        self.n_factors = n_factors
        self.bias_optimizer = bias_optimizer
        self.latent_optimizer = latent_optimizer
        self.loss = loss
        self.l2_bias = l2_bias
        self.l2_latent = l2_latent
        self.weight_initializer = weight_initializer
        self.latent_initializer = latent_initializer
        self.clip_gradient = clip_gradient
        self.seed = seed


class RiverFunkMF(_NamedRiver):
    """River's ``reco.FunkMF`` (latent factors only) learned per event, vectorised scoring.

    Parameters are those of :class:`river.reco.FunkMF`, passed through unchanged, with one
    exception: ``optimizer=None`` (the default) is ``optim.SGD(0.02)`` where River's FunkMF
    takes ``optim.SGD(0.1)``. With no bias terms, the latent vectors alone must reach the
    ratings, and at River's step they overshoot on ratings from 1 to 5: River's own loop turns
    NaN after 1,534 events of MovieLens 100K. 0.02 stays finite there and on ratings up to
    three times larger (docs/river.md has the numbers). Pass ``optimizer=optim.SGD(0.1)`` for
    River's default; any optimizer given is River's, untouched.

    Examples
    --------
    >>> import pandas as pd
    >>> from river import optim
    >>> from recinc_plugins.adapters.river import RiverFunkMF
    >>> events = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"],
    ...                        "rating": [5.0, 1.0, 4.0]})
    >>> model = RiverFunkMF(n_factors=4, seed=1).fit(events)
    >>> model.model_.u_optimizer.learning_rate
    0.02
    >>> RiverFunkMF(optimizer=optim.SGD(0.1)).fit(events).model_.u_optimizer.learning_rate
    0.1
    """

    _river_class = "FunkMF"
    #: the SGD step of ``optimizer=None``: River's FunkMF default (0.1) diverges on 1-5 ratings
    default_learning_rate: ClassVar[float] = 0.02

    def __init__(self, n_factors: int = 10, optimizer: Any = None, loss: Any = None,
                 l2: float = 0.0, initializer: Any = None, clip_gradient: float = 1e12,
                 seed: int | None = None) -> None:
        self.n_factors = n_factors
        self.optimizer = optimizer
        self.loss = loss
        self.l2 = l2
        self.initializer = initializer
        self.clip_gradient = clip_gradient
        self.seed = seed

    def _make_model(self) -> Any:
        river = _river()
        params = copy.deepcopy(self.get_params())
        if params["optimizer"] is None:
            params["optimizer"] = river.optim.SGD(self.default_learning_rate)
        return river.reco.FunkMF(**params)


class _Unseen:
    """Stands for an id the model has never seen and the caller did not name (index -1)."""

    __slots__ = ()


class _Lookahead:
    """A River initialiser that first hands out the values drawn ahead of River.

    Scoring an id River has not learned needs the value River would draw for it, without
    inserting it. Drawing that value and rewinding the generator means copying the generator's
    state twice (about 50 us with NumPy's RandomState). Instead, the value is drawn once and
    kept here, and River's next draw from this initialiser takes it rather than drawing again:
    River's k-th draw is the k-th value of the initialiser's sequence either way, whoever draws
    first (the adapter's learning, River's own ``predict_one``/``learn_one`` on ``model_``).
    Installed as the ``default_factory`` of River's dicts, only where each generator is drawn
    by one initialiser (:func:`_draw_ahead`).
    """

    __slots__ = ("ahead", "init")

    def __init__(self, init: Any) -> None:
        self.init = init
        self.ahead: collections.deque = collections.deque()

    def __call__(self) -> Any:
        return self.ahead.popleft() if self.ahead else self.init()

    def peek(self, n: int) -> Any:
        """The value River's ``n``-th draw from now will take (0: the next one)."""
        while len(self.ahead) <= n:
            self.ahead.append(self.init())
        return self.ahead[n]


# -- the wrapped model -------------------------------------------------------------------------


def _river() -> Any:
    require("river", "river")
    import river.reco

    return river


def _model_kind(model: Any) -> str | None:
    """Which River model equation ``model`` follows, or None when its state cannot be read.

    The check is on the exact class: a subclass may override ``predict_one``.
    """
    reco = _river().reco
    return {
        reco.Baseline: "baseline",
        reco.BiasedMF: "biased_mf",
        reco.FunkMF: "funk_mf",
    }.get(type(model))


def _draw_ahead(model: Any) -> None:
    """Wrap the random initialisers of ``model``'s dicts in :class:`_Lookahead`, where that is
    exact: each generator drawn by one initialiser (dicts sharing it share the wrapper)."""
    dicts = [getattr(model, name) for name in ("u_biases", "i_biases", "u_latents", "i_latents")
             if hasattr(model, name)]
    factories = list({id(d.default_factory): d.default_factory for d in dicts}.values())
    rngs = _generators(factories)
    random = [f for f in factories if not _is_constant(f)]
    if rngs is None or len(rngs) != len(random):
        return  # an initialiser this cannot read, or two sharing a generator: rewind instead
    wrappers = {id(f): _Lookahead(f) for f in random}
    for table in dicts:
        wrapper = wrappers.get(id(table.default_factory))
        if wrapper is not None:
            table.default_factory = wrapper


def _drop_keys(obj: Any, keys: list, seen: set) -> None:
    """Delete ``keys`` from every dict in ``obj``: a dict itself (its values are weights, not
    searched), or the dicts among the attributes of a River object (an optimiser, its
    wrapped optimiser, scheduler), lists and tuples, recursively."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, dict) or isinstance(obj, _river().utils.VectorDict):
        for key in keys:
            obj.pop(key, None)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _drop_keys(value, keys, seen)
    elif isinstance(obj, _river().base.Base):
        for value in vars(obj).values():
            _drop_keys(value, keys, seen)


def _optimizers(model: Any) -> list:
    """The optimisers the model steps on every event (under its ``u_*`` and ``i_*``
    attributes), and those they wrap."""
    optim = require("river.optim", "river")
    found: dict[int, Any] = {}
    pending = [v for k, v in vars(model).items() if k.startswith(("u_", "i_"))]
    while pending:
        obj = pending.pop()
        if isinstance(obj, optim.base.Optimizer) and id(obj) not in found:
            found[id(obj)] = obj
            pending.extend(vars(obj).values())
    return list(found.values())


def _take_out_of_mean(mean: Any, n: float, total: float) -> None:
    """Remove ``n`` observations summing to ``total`` from a River ``stats.Mean``."""
    left = mean.n - n
    if left <= 0:
        mean.n, mean._mean = 0.0, 0.0
    else:
        mean._mean = (mean._mean * mean.n - total) / left
        mean.n = left


def _side_step(model: Any, kind: str, side: str, own: Any, other: Any, g: float) -> None:
    """River's ``learn_one`` step for one side of a pair (``side``: "u" or "i"; ``own`` its
    id, ``other`` the other side's, held fixed), given the loss gradient ``g``."""
    if kind == "baseline":
        biases = getattr(model, f"{side}_biases")
        optimizer = getattr(model, f"{side}_optimizer")
        setattr(model, f"{side}_biases",
                optimizer.step(biases, {own: g + model.l2 * biases[own]}))
        return
    latents = getattr(model, f"{side}_latents")
    other_latents = model.i_latents if side == "u" else model.u_latents
    if kind == "funk_mf":
        optimizer, l2 = getattr(model, f"{side}_optimizer"), model.l2
    else:
        biases = getattr(model, f"{side}_biases")
        setattr(model, f"{side}_biases", getattr(model, f"{side}_bias_optimizer").step(
            biases, {own: g + model.l2_bias * biases[own]}))
        optimizer, l2 = getattr(model, f"{side}_latent_optimizer"), model.l2_latent
    setattr(model, f"{side}_latents", optimizer.step(
        latents, {own: g * other_latents[other] + l2 * latents[own]}))


def _inner(factory: Any) -> Any:
    return factory.init if isinstance(factory, _Lookahead) else factory


def _is_constant(factory: Any) -> bool:
    optim = require("river.optim", "river")
    return isinstance(getattr(factory, "func", factory), optim.initializers.Constant)


def _generators(factories: list) -> list | None:
    """The RandomState generators behind River's initialiser factories, or None when one of
    them draws from something this cannot rewind (then the caller copies them instead)."""
    optim = require("river.optim", "river")
    rngs: list = []
    for factory in factories:
        init = getattr(factory, "func", factory)  # River wraps initialisers in partial()
        if _is_constant(factory):
            continue
        rng = getattr(init, "_rng", None)
        if not isinstance(init, optim.initializers.Normal) or not isinstance(
                rng, np.random.RandomState):
            return None
        if all(rng is not seen for seen in rngs):
            rngs.append(rng)
    return rngs
