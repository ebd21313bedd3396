"""One growable parameter arena holding every embedding table, learned by row-wise updates."""

from __future__ import annotations

import numpy as np

from .._optional import require

torch = require("torch", "torch")

__all__ = ["EmbeddingArena"]


class EmbeddingArena:
    """Named embedding tables stored as row ranges of one float32 ``rows x dim`` tensor.

    Row 0 is a padding row that stays zero; each table (``region``) is a contiguous range
    after it, in the order given, so a table can be read as one slice (the item table, for
    scoring the catalogue in one matrix product). Keeping every table in one tensor lets a
    training step gather all the rows it needs with one index, and update them with one
    optimiser step, whatever mix of users, items and history items it touches: on a CPU the
    cost of a one-event step is dominated by the number of tensor operations, not their size.

    Growth: a region's capacity doubles when it runs out, so adding ids one at a time copies
    each row O(1) times amortised, and existing rows keep their values. New rows are drawn from
    ``normal(0, init_std)`` by the caller's numpy generator when capacity is allocated (the last
    column, a bias, starts at zero), so values do not depend on the device and a saved arena
    resumes exactly.

    Updates (:meth:`step`) touch only the given rows, with plain SGD, row-wise Adagrad (one
    accumulator per row, the sum of the row's mean squared gradient, as in FBGEMM's row-wise
    Adagrad) or row-wise RMSprop (the same accumulator, decaying): the optimiser state is one
    float per row, not one per weight. A row touched several times in a step gets one update
    of its summed gradient, so a popular item drawn as a negative many times in a large batch
    takes one bounded Adagrad step rather than one per occurrence.
    """

    def __init__(self, dim: int, regions: tuple[str, ...], init_std: float,
                 device: torch.device, optimizer: str = "adagrad") -> None:
        self.dim = int(dim)
        self.init_std = float(init_std)
        self.optimizer = optimizer
        self.beta = 0.99
        self.names = tuple(regions)
        self.capacity = dict.fromkeys(self.names, 0)
        self.size = dict.fromkeys(self.names, 0)
        self.offset = {name: 1 for name in self.names}
        self.weight = torch.zeros((1, self.dim), dtype=torch.float32, device=device)
        self.accum = torch.zeros(1, dtype=torch.float32, device=device)

    @property
    def nbytes(self) -> int:
        """Bytes held by the weights and the optimiser state (allocated capacity)."""
        return 4 * (self.weight.nelement() + self.accum.nelement())

    def region(self, name: str) -> torch.Tensor:
        """The live rows of one table (a view)."""
        start = self.offset[name]
        return self.weight[start:start + self.size[name]]

    def grow(self, sizes: dict[str, int], rng: np.random.Generator) -> None:
        """Make the first ``sizes[name]`` rows of each named table live (never shrinks)."""
        new_cap = dict(self.capacity)
        for name, n in sizes.items():
            if n > new_cap[name]:
                new_cap[name] = max(int(n), 2 * new_cap[name], 16)
            self.size[name] = max(self.size[name], int(n))
        if new_cap == self.capacity:
            return
        device = self.weight.device
        blocks_w, blocks_a, offset, start = [self.weight[:1]], [self.accum[:1]], {}, 1
        for name in self.names:
            old_start, old_cap, cap = self.offset[name], self.capacity[name], new_cap[name]
            blocks_w.append(self.weight[old_start:old_start + old_cap])
            blocks_a.append(self.accum[old_start:old_start + old_cap])
            if cap > old_cap:
                fresh = rng.normal(0.0, self.init_std, size=(cap - old_cap, self.dim))
                fresh[:, -1] = 0.0
                blocks_w.append(torch.from_numpy(fresh.astype(np.float32)).to(device))
                blocks_a.append(torch.zeros(cap - old_cap, dtype=torch.float32, device=device))
            offset[name] = start
            start += cap
        self.weight = torch.cat(blocks_w)
        self.accum = torch.cat(blocks_a)
        self.offset, self.capacity = offset, new_cap

    def step(self, rows: torch.Tensor, grads: torch.Tensor, lr: float) -> None:
        """Apply ``grads`` to ``rows``, which must be distinct (sum repeated rows first)."""
        if self.optimizer == "sgd":
            self.weight.index_add_(0, rows, grads, alpha=-lr)
            return
        square = grads.square().mean(dim=1)
        if self.optimizer == "rmsprop":
            acc = self.accum[rows].mul_(self.beta).add_(square, alpha=1 - self.beta)
        else:
            acc = self.accum[rows].add_(square)
        self.accum[rows] = acc
        self.weight.index_add_(0, rows, grads * acc.add(1e-8).rsqrt_().mul_(-lr).unsqueeze(1))

    def step_numpy(self, rows: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """:meth:`step` on a CPU arena with numpy arrays (views of the same storage)."""
        weight = self.weight.numpy()
        if self.optimizer == "sgd":
            weight[rows] -= np.float32(lr) * grads
            return
        accum = self.accum.numpy()
        square = np.square(grads).mean(axis=1)
        if self.optimizer == "rmsprop":
            acc = accum[rows] * np.float32(self.beta) + np.float32(1 - self.beta) * square
        else:
            acc = accum[rows] + square
        accum[rows] = acc
        weight[rows] += grads * (np.float32(-lr) / np.sqrt(acc + np.float32(1e-8)))[:, None]

    def clear(self, rows: np.ndarray) -> None:
        """Zero the arena rows ``rows`` (absolute indices) and their optimiser state: what
        ``forget`` leaves of a forgotten user or item (its slot stays, holding nothing)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        rows = rows[rows > 0]  # the padding row is zero already
        if rows.size:
            index = torch.from_numpy(rows).to(self.weight.device)
            self.weight[index] = 0.0
            self.accum[index] = 0.0

    def to(self, device: torch.device) -> None:
        self.weight = self.weight.to(device)
        self.accum = self.accum.to(device)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["weight"] = self.weight.detach().cpu()
        state["accum"] = self.accum.detach().cpu()
        return state
