"""SequentialRecommender: the neural model trained on each event's own past, with attention."""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np

from .._optional import require
from ..context import Context
from ..forget import Removed
from ..params import check_bool, check_int, check_number
from ..sparse import concat_ranges
from .model import NeuralRecommender
from .replay import ReplayBuffer

torch = require("torch", "torch")

__all__ = ["SequentialRecommender"]


@dataclass(eq=False, repr=False)
class SequentialRecommender(NeuralRecommender):
    """The neural two-tower model made sequential: each event is learned from the items its
    user had just before it, and the recent items are pooled by self-attention.

    :class:`~recinc_plugins.neural.NeuralRecommender` trains a replayed event with its user's
    recent items as they are *now*, which include items that came after it. This model keeps
    every event's own past with it in the replay buffer (its user's last ``history`` items
    when it happened, those earlier in the same ``partial_fit`` chunk included), so every
    training example asks the question scoring asks: what comes next after these items?

    The recent items (latest first, the learned ones followed by any context) are pooled by
    one attention head whose query is the latest item, over logits ``log(history_decay **
    age) + b_age + (W_q y_0) . (W_k y_a) / sqrt(d)``, and the result is scaled to the total
    pooling weight of the two-tower model; with ``b`` and the projections at zero it *is* the
    two-tower model's pooling, the prior it starts from. The age biases ``b`` and the
    projections are learned (Adam, ``attention_learning_rate``) from the new events of each
    step only: replayed events train the embeddings through the attention but do not move it
    (learned from the replays too, it weighed the last item or two ever more and recall fell,
    ``docs/neural.md``). Scores stay one dot product per item, so the catalogue is scored by
    one matrix product, and a user the model never learned is scored from its context alone.

    Parameters
    ----------
    n_factors, loss, history, ..., seed
        :class:`~recinc_plugins.neural.NeuralRecommender`'s, in the same order, with the same
        meanings and defaults (one definition: this class inherits its fields), except
        ``history``, which must be at least 1, ``n_negatives``, tuned to 32, and
        ``batch_size``, 256 (the two-tower model's 4 lowered this one's recall with fresh
        context on the first half of ml-100k: 0.154 against 0.164).
    attention
        Learn the attention (True), or keep the fixed recency pooling of the two-tower model
        (False: the sequential training alone). Keyword only, as is the next one.
    attention_learning_rate
        Adam's step size for the attention's weights.

    Attributes
    ----------
    attention_ : DenseParams
        The attention's weights (``w_q``, ``w_k``, ``age_bias``) and their Adam state.
    buffer_ : ReplayBuffer
        The replay buffer, with each event's recent items (``buffer_.seqs``).

    Examples
    --------
    >>> import pandas as pd
    >>> from recinc_plugins.context import Context
    >>> from recinc_plugins.neural import SequentialRecommender
    >>> events = pd.DataFrame({
    ...     "user": ["ann", "ann", "ann", "bob", "bob", "cat"],
    ...     "item": ["intro", "verse", "chorus", "intro", "verse", "intro"],
    ... })
    >>> model = SequentialRecommender(n_factors=8, device="cpu", seed=0).fit(events)
    >>> model.recommend(["cat"], k=2).items.shape
    (1, 2)
    >>> verse = model.item_index_.lookup(["verse"])
    >>> model.score_block([-1], Context.from_lists([verse])).shape  # someone new, just heard it
    (1, 3)
    """

    # NeuralRecommender's parameters (its dataclass fields), two defaults retuned, then the
    # attention's (keyword only: they come after the inherited ones)
    n_negatives: int = 32
    batch_size: int | None = 256
    _: KW_ONLY
    attention: bool = True
    attention_learning_rate: float = 3e-4

    def _check_params(self) -> None:
        super()._check_params()
        check_int("history", self.history, 1)
        check_bool("attention", self.attention)
        check_number("attention_learning_rate", self.attention_learning_rate, strict=True)

    def _init_model(self) -> None:
        super()._init_model()
        self.buffer_ = ReplayBuffer(int(self.replay_size), self.replay, width=int(self.history))
        width = self.arena_.dim
        scale = 0.1 / math.sqrt(width)  # content logits start near zero: at the prior
        self.attention_ = DenseParams(
            {"w_q": (width, width), "w_k": (width, width), "age_bias": (int(self.history),)},
            {"w_q": scale, "w_k": scale, "age_bias": 0.0}, self.rng_, self.device_)

    # -- learning ------------------------------------------------------------------------------

    def _sequences(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Each event's recent items before it, latest first: its user's learned ones, then
        the user's earlier events in this chunk (``_recent_items`` with them as context)."""
        if users.size == 1:
            return self._recent_items(users).astype(np.int32)
        n, length = users.size, int(self.history)
        order = np.argsort(users, kind="stable")
        ordered = users[order]
        first = np.concatenate([[True], ordered[1:] != ordered[:-1]])
        before = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
        take = np.minimum(before, length)
        idx = concat_ranges(np.arange(n) - take, take)
        context = Context(np.concatenate([[0], np.cumsum(take)]).astype(np.int64),
                          items[order][idx], np.ones(idx.size))
        out = np.empty((n, length), dtype=np.int32)
        out[order] = self._recent_items(ordered, context)
        return out

    def _hist_rows(self, users: np.ndarray, exclude: np.ndarray | None = None):
        """The users' recent items latest first (the attention's query is the latest); never
        asked to leave an item out, since every event trains with its own past."""
        return self._pool_rows(self._recent_items(users))

    # -- the attention pooling (the hooks of NeuralRecommender's user tower) --------------------
    # y: the recent items' rows (rows x ages x width), h_w: their two-tower pooling weights
    # (history_decay ** age / sqrt(count), 0 where there is no item)

    def _pool_numpy(self, y: np.ndarray, h_w: np.ndarray, n_new: int) -> tuple[np.ndarray, Any]:
        if not self.attention:
            return super()._pool_numpy(y, h_w, n_new)
        w = self.attention_.arrays()
        present = h_w > 0
        total = h_w.sum(axis=1, keepdims=True)
        q = y[:, 0] @ w["w_q"]
        k = y @ w["w_k"]
        logits = np.matmul(k, q[:, :, None])[:, :, 0] * np.float32(1 / math.sqrt(y.shape[2]))
        with np.errstate(divide="ignore"):
            logits += np.log(h_w) + w["age_bias"]
        logits = np.where(present, logits, np.float32(-1e30))
        att = np.exp(logits - logits.max(axis=1, keepdims=True)) * present
        att /= np.maximum(att.sum(axis=1, keepdims=True), np.float32(1e-30))
        pooled = np.matmul(att[:, None, :], y)[:, 0] * total
        return pooled, (att, total, q, k, n_new)

    def _pool_backward_numpy(self, dz: np.ndarray, y: np.ndarray, h_w: np.ndarray,
                             cache: Any) -> np.ndarray:
        if not self.attention:
            return super()._pool_backward_numpy(dz, y, h_w, cache)
        dy, grads = self._attention_backward_numpy(dz, y, cache)
        if cache[-1]:  # new events: the attention learns
            self.attention_.step_numpy(self.attention_.flatten(grads),
                                       float(self.attention_learning_rate))
        return dy

    def _attention_backward_numpy(self, dz: np.ndarray, y: np.ndarray, cache: Any
                                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The gradients of the rows ``y`` and, from the new events (the first ``n_new``
        rows) only, of the attention's weights, given those of the pooled vectors."""
        att, total, q, k, n_new = cache
        w = self.attention_.arrays()
        width = y.shape[2]
        d_mix = dz * total
        dy = att[:, :, None] * d_mix[:, None, :]
        a, y_new, d_new = att[:n_new], y[:n_new], d_mix[:n_new]
        d_att = np.matmul(y_new, d_new[:, :, None])[:, :, 0]
        d_logits = a * (d_att - (a * d_att).sum(axis=1, keepdims=True))
        d_content = d_logits * np.float32(1 / math.sqrt(width))
        dq = np.matmul(d_content[:, None, :], k[:n_new])[:, 0]
        dk = d_content[:, :, None] * q[:n_new, None, :]
        dy[:n_new, 0] += dq @ w["w_q"].T
        dy[:n_new] += dk @ w["w_k"].T
        dy[:, :, -1] = 0.0  # history rows carry no bias
        grads = {"w_q": y_new[:, 0].T @ dq,
                 "w_k": y_new.reshape(-1, width).T @ dk.reshape(-1, width),
                 "age_bias": d_logits.sum(axis=0)}
        return dy, grads

    def _pool_torch(self, y: torch.Tensor, h_w: torch.Tensor, n_new: int
                    ) -> tuple[torch.Tensor, Any]:
        if not self.attention:
            return super()._pool_torch(y, h_w, n_new)
        w = self.attention_.views()
        present = h_w > 0
        total = h_w.sum(dim=1, keepdim=True)
        q = y[:, 0] @ w["w_q"]
        k = y @ w["w_k"]
        logits = torch.bmm(k, q.unsqueeze(2)).squeeze(2) / math.sqrt(y.shape[2])
        logits = logits + torch.log(h_w) + w["age_bias"]
        logits = logits.masked_fill(~present, -1e30)
        att = torch.softmax(logits, dim=1) * present
        att = att / att.sum(dim=1, keepdim=True).clamp_min(1e-30)
        pooled = torch.bmm(att.unsqueeze(1), y).squeeze(1) * total
        return pooled, (att, total, q, k, n_new)

    def _pool_backward_torch(self, dz: torch.Tensor, y: torch.Tensor, h_w: torch.Tensor,
                             cache: Any, out: torch.Tensor) -> None:
        if not self.attention:
            super()._pool_backward_torch(dz, y, h_w, cache, out)
            return
        grads = self._attention_backward_torch(dz, y, cache, out)
        if cache[-1]:
            self.attention_.step(self.attention_.flatten(grads),
                                 float(self.attention_learning_rate))

    def _attention_backward_torch(self, dz: torch.Tensor, y: torch.Tensor, cache: Any,
                                  out: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`_attention_backward_numpy`, the rows' gradients written into ``out``."""
        att, total, q, k, n_new = cache
        w = self.attention_.views()
        width = y.shape[2]
        d_mix = dz * total
        torch.mul(att.unsqueeze(2), d_mix.unsqueeze(1), out=out)
        a, y_new, d_new = att[:n_new], y[:n_new], d_mix[:n_new]
        d_att = torch.bmm(y_new, d_new.unsqueeze(2)).squeeze(2)
        d_logits = a * (d_att - (a * d_att).sum(dim=1, keepdim=True))
        d_content = d_logits / math.sqrt(width)
        dq = torch.bmm(d_content.unsqueeze(1), k[:n_new]).squeeze(1)
        dk = d_content.unsqueeze(2) * q[:n_new].unsqueeze(1)
        out[:n_new, 0] += dq @ w["w_q"].T
        out[:n_new] += dk @ w["w_k"].T
        out[:, :, -1] = 0.0  # history rows carry no bias
        return {"w_q": y_new[:, 0].T @ dq,
                "w_k": y_new.reshape(-1, width).T @ dk.reshape(-1, width),
                "age_bias": d_logits.sum(dim=0)}

    # -- forgetting ----------------------------------------------------------------------------

    def _forget(self, removed: Removed) -> None:
        """:meth:`NeuralRecommender._forget` (the replay buffer's recent items lose the
        forgotten items too), and the attention's Adam moments start again: they are running
        means of the last steps' gradients, which may hold the forgotten events'."""
        super()._forget(removed)
        self.attention_.reset_moments()

    # -- persistence ---------------------------------------------------------------------------

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        if hasattr(self, "attention_"):
            self.attention_.to(self.device_)


class DenseParams:
    """Small dense weights as views of one flat float32 tensor, with Adam's state: a step is a
    handful of operations whatever the number of weights. Drawn from the model's seeded numpy
    generator, so they do not depend on the device."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], scales: dict[str, float],
                 rng: np.random.Generator, device: torch.device) -> None:
        self.shapes = dict(shapes)
        parts = [rng.normal(0.0, scales[name], size=shape).ravel() if scales[name]
                 else np.zeros(math.prod(shape)) for name, shape in self.shapes.items()]
        self.flat = torch.from_numpy(np.concatenate(parts).astype(np.float32)).to(device)
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.t = 0

    def views(self) -> dict[str, torch.Tensor]:
        """Each weight as a view of the flat tensor."""
        out, start = {}, 0
        for name, shape in self.shapes.items():
            size = math.prod(shape)
            out[name] = self.flat[start:start + size].view(shape)
            start += size
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """:meth:`views` as numpy views of a CPU tensor (kept: steps update them in place)."""
        cached = self.__dict__.get("_arrays")
        if cached is None or cached[0] is not self.flat:
            cached = self._arrays = (self.flat, {k: v.numpy() for k, v in self.views().items()})
        return cached[1]

    def flatten(self, grads: dict[str, Any]) -> Any:
        """The gradients of the weights (numpy arrays or tensors, by name) as one flat one."""
        parts = [grads[name].reshape(-1) for name in self.shapes]
        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)

    def step(self, grad: torch.Tensor, lr: float) -> None:
        """One Adam step (bias-corrected; betas 0.9, 0.999)."""
        self.t += 1
        self.m.mul_(0.9).add_(grad, alpha=0.1)
        self.v.mul_(0.999).addcmul_(grad, grad, value=0.001)
        denom = (self.v / (1 - 0.999 ** self.t)).sqrt_().add_(1e-8)
        self.flat.addcdiv_(self.m, denom, value=-lr / (1 - 0.9 ** self.t))

    def step_numpy(self, grad: np.ndarray, lr: float) -> None:
        """:meth:`step` on numpy views of CPU tensors (the same arithmetic)."""
        self.t += 1
        flat, m, v = self.flat.numpy(), self.m.numpy(), self.v.numpy()
        m *= np.float32(0.9)
        m += np.float32(0.1) * grad
        v *= np.float32(0.999)
        v += np.float32(0.001) * np.square(grad)
        denom = np.sqrt(v / np.float32(1 - 0.999 ** self.t)) + np.float32(1e-8)
        flat -= np.float32(lr / (1 - 0.9 ** self.t)) * m / denom

    def reset_moments(self) -> None:
        """Forget Adam's state (the next step is a first step again); the weights stay."""
        self.m.zero_()
        self.v.zero_()
        self.t = 0

    def to(self, device: torch.device) -> None:
        self.flat, self.m, self.v = self.flat.to(device), self.m.to(device), self.v.to(device)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_arrays", None)
        for key in ("flat", "m", "v"):
            state[key] = state[key].detach().cpu()
        return state
