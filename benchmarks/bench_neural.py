"""Speed and memory of NeuralRecommender: events/s and bytes per million ids of capacity.

Run::

    RECINC_DATA_HOME=/path/to/data python benchmarks/bench_neural.py [--events 20000]

Replays the first ``--events`` events of MovieLens 100K (a synthetic stream of the same shape
where it is absent) in timestamp order, as the harness does: each step's users are scored over
the catalogue (one matrix product), then the step is learned. Prints, for one event per step and
1,000-event steps:

- events/s of the model's own work (``score_block`` + ``learn_encoded``), with the
  split between scoring and learning, and for one event per step also with the numpy path of
  small CPU steps switched off (torch for everything);
- the same learning work written the usual PyTorch way -- ``nn.Embedding(sparse=True)``
  tables, autograd, ``torch.optim.SparseAdam`` -- as the native reference, in the model's
  chunks of ``batch_size`` (one update per chunk, as the model makes), and the ratio;
- bytes per million users and per million items of embedding capacity (weights and optimiser
  state), measured on an arena grown to 100,000 ids and scaled.

Threads: one torch thread unless ``--threads`` says otherwise (the machine is shared).
``--device cuda`` runs the model and the autograd reference on the GPU (timings then include
waiting for the GPU to finish each run).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch

from recinc_plugins.base import Batch
from recinc_plugins.data import load_dataset, synthetic_stream
from recinc_plugins.neural import NeuralRecommender
from recinc_plugins.neural.embeddings import EmbeddingArena


def load(n_events: int) -> tuple[pd.DataFrame, str]:
    try:
        frame = load_dataset("ml-100k", download=False)
        name = "ml-100k"
    except (FileNotFoundError, OSError, ValueError):
        frame = synthetic_stream(n_events=n_events, n_users=943, n_items=1682, seed=0)
        name = "synthetic (ml-100k not found)"
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    return frame.iloc[order[:n_events]].reset_index(drop=True), name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def replay(model: NeuralRecommender, frame: pd.DataFrame, step: int) -> dict[str, float]:
    """Score-then-learn over ``frame``; the model's time only (ids encoded up front)."""
    users = pd.factorize(frame["user"])[0].astype(np.int64)
    items = pd.factorize(frame["item"])[0].astype(np.int64)
    model._reset()
    t_score = t_learn = 0.0
    for s in range(0, len(frame), step):
        u, i = users[s:s + step], items[s:s + step]
        t0 = time.perf_counter()
        known = np.unique(u[u < model.n_users])
        if known.size and model.n_items:
            model.score_block(known)
        t1 = time.perf_counter()
        model.user_index_.add(u)
        model.item_index_.add(i)
        model.learn_encoded(Batch(users=u, items=i))
        _sync(model.device_)
        t_score += t1 - t0
        t_learn += time.perf_counter() - t1
    n = len(frame)
    return {"events_per_s": n / (t_score + t_learn), "score_us": 1e6 * t_score / n,
            "learn_us": 1e6 * t_learn / n}


class AutogradReference(torch.nn.Module):
    """The same model and step written with nn.Embedding(sparse=True), autograd, SparseAdam."""

    def __init__(self, n_users: int, n_items: int, dim: int, history: int,
                 device: torch.device) -> None:
        super().__init__()
        self.users = torch.nn.Embedding(n_users, dim, sparse=True)
        self.items = torch.nn.Embedding(n_items + 1, dim, sparse=True, padding_idx=n_items)
        self.hist = torch.nn.Embedding(n_items + 1, dim, sparse=True, padding_idx=n_items)
        self.bias = torch.nn.Embedding(n_items + 1, 1, sparse=True, padding_idx=n_items)
        self.to(device)
        self.device = device
        self.opt = torch.optim.SparseAdam(list(self.parameters()), lr=0.01)
        self.history = np.full((n_users, history), n_items)
        self.count = np.zeros(n_users, dtype=np.int64)
        self.n_items = n_items

    def learn(self, u: np.ndarray, i: np.ndarray, neg: np.ndarray, n_new: int) -> None:
        ut, it, nt, ht = (torch.from_numpy(a).to(self.device)
                          for a in (u, i, neg, self.history[u]))
        z = self.users(ut) + self.hist(ht).mean(1)
        pos = (z * self.items(it)).sum(1) + self.bias(it)[:, 0]
        negs = torch.bmm(self.items(nt), z.unsqueeze(2)).squeeze(2) + self.bias(nt)[..., 0]
        loss = torch.nn.functional.softplus(negs - pos.unsqueeze(1)).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        length = self.history.shape[1]
        for a, b in zip(u[:n_new], i[:n_new], strict=True):
            self.history[a, self.count[a] % length] = b
            self.count[a] += 1


def reference(frame: pd.DataFrame, step: int, model: NeuralRecommender) -> float:
    """events/s of the autograd reference learning the same events, replay and negatives."""
    users = pd.factorize(frame["user"])[0].astype(np.int64)
    items = pd.factorize(frame["item"])[0].astype(np.int64)
    ref = AutogradReference(int(users.max()) + 1, int(items.max()) + 1, model.n_factors,
                            model.history, model.device_)
    rng = np.random.default_rng(0)
    size = model.batch_size_  # a step in the model's chunks: one update per chunk, as it does
    t0 = time.perf_counter()
    for s in range(0, len(frame), step):
        for c in range(s, min(s + step, len(frame)), size):
            end = min(c + size, s + step, len(frame))
            u, i = users[c:end], items[c:end]
            if c:  # the same replay sample size and negatives as the model
                pick = rng.integers(0, c, size=u.size * model.n_replay)
                u, i = np.concatenate([u, users[pick]]), np.concatenate([i, items[pick]])
            neg = rng.integers(0, int(items[:end].max()) + 1, size=(u.size, model.n_negatives))
            ref.learn(u, i, neg, end - c)
    _sync(model.device_)
    return len(frame) / (time.perf_counter() - t0)


def bytes_per_million(model: NeuralRecommender) -> tuple[float, float]:
    dim = model.n_factors + 1
    regions = ("items", "history", "users") if model.history else ("items", "users")
    arena = EmbeddingArena(dim, regions, 0.1, torch.device("cpu"))
    rng = np.random.default_rng(0)
    arena.grow({"users": 100_000}, rng)
    per_user = arena.nbytes / arena.capacity["users"]
    arena = EmbeddingArena(dim, regions, 0.1, torch.device("cpu"))
    arena.grow({"items": 100_000, "history": 100_000}, rng)
    per_item = arena.nbytes / arena.capacity["items"]
    return per_user * 1e6, per_item * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame, name = load(args.events)
    print(f"{name}: first {len(frame):,} events, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores, device {args.device}")
    model = NeuralRecommender(device=args.device, seed=0)
    for step in (1, 1000):
        ours = replay(model, frame, step)
        ref = reference(frame, step, model)
        ours_learn = 1e6 / ours["learn_us"]
        print(f"step {step:>5}: {ours['events_per_s']:>9,.0f} events/s (score "
              f"{ours['score_us']:.0f} us + learn {ours['learn_us']:.0f} us per event); "
              f"learning alone {ours_learn:,.0f}/s vs autograd+SparseAdam {ref:,.0f}/s "
              f"= {ours_learn / ref:.1f}x")
    torch_only = NeuralRecommender(device=args.device, seed=0)
    torch_only._numpy_max_rows = torch_only._numpy_max_users = 0  # no numpy path for small steps
    ours = replay(torch_only, frame, 1)
    print(f"step     1, torch path only: {ours['events_per_s']:>9,.0f} events/s (score "
          f"{ours['score_us']:.0f} us + learn {ours['learn_us']:.0f} us per event)")
    per_user, per_item = bytes_per_million(model)
    print(f"capacity (n_factors={model.n_factors}, history={model.history}): "
          f"{per_user / 2**20:,.0f} MiB per million users, "
          f"{per_item / 2**20:,.0f} MiB per million items (weights + optimiser state)")


if __name__ == "__main__":
    main()
