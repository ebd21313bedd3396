"""One budget for the threads a model's own work may use: BLAS, OpenMP and torch.

Small per-step solves collapse when their library spins up every core on a machine that has
other work: implicit's ALS at one event per step ran 10x slower with default threads than with
one while a second replay ran beside it, for the same numbers. The harness limits the threads
around each replay (see ``ReplayConfig.threads``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["cores", "limit"]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def limit(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` BLAS and OpenMP threads (threadpoolctl) and ``n``
    torch threads where torch is loaded; everything is restored after.

    The libraries are scanned anew on each call (a few milliseconds): one loaded since the
    last call would otherwise escape the limit. Call it around a replay, not a step.
    """
    from threadpoolctl import ThreadpoolController

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        with ThreadpoolController().limit(limits=n):
            if torch is not None:
                torch.set_num_threads(n)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)
