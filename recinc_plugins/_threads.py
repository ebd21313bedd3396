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
from typing import Any

__all__ = ["cores", "limit"]

_CONTROLLER: list[Any] = []


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _controller() -> Any:
    # scanning the loaded libraries costs milliseconds: once per process, not per replay
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


@contextlib.contextmanager
def limit(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` BLAS and OpenMP threads (threadpoolctl) and ``n``
    torch threads where torch is loaded; everything is restored after."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        with _controller().limit(limits=n):
            if torch is not None:
                torch.set_num_threads(n)
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)
