"""Waiting on a channel's condition with an optional deadline, the one loop both channels need twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_until(
    cond: threading.Condition,
    ready: Callable[[], bool],
    deadline: float | None,
    check: Callable[[], None] | None = None,
) -> bool:
    """Wait on ``cond`` (held) until ``ready()``; False once ``deadline`` (``time.monotonic``; None: never) passes.

    ``check`` runs before every wait so that a wake-up meant for closing
    (the channel notifies every condition as it closes) raises instead of
    waiting again; the deadline is re-read after each wake-up because
    notifications for other waiters wake this one too.
    """
    while not ready():
        if check is not None:
            check()
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        cond.wait(remaining)
    return True
