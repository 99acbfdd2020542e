"""Lower the OS priority of torch's OpenMP workers while serving, so the HTTP thread is never starved.

The HTTP thread holds the GIL while it turns engine outputs into frames.
On a machine with as many OpenMP threads as cores, a worker spinning at a
barrier could take the core of the HTTP thread mid-frame; the engine thread
then waited for the GIL while its worker spun: a priority inversion that
cost 15-25 % of served throughput on 2 cores (16 users: 442 -> 518-569
tok/s once the worker ran at nice +10; 1 user: 127 -> 134-138). A worker
at a lower priority yields its core to the HTTP thread at once and gets it
back as soon as the frames are written. Raising a thread's nice value needs
no privilege; on systems without per-thread priorities this does nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

WORKER_NICE_INCREMENT = 10


def lower_native_worker_priority(increment: int = WORKER_NICE_INCREMENT) -> dict[int, int]:
    """Renice every thread of this process that Python did not start (torch's OpenMP pool).

    Returns each lowered thread's previous nice value, for :func:`restore_priority`.
    """
    if not sys.platform.startswith("linux"):
        return {}
    python_threads = {thread.native_id for thread in threading.enumerate()}
    previous: dict[int, int] = {}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        if tid in python_threads:
            continue
        try:
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, nice + increment)
        except OSError:  # the thread ended meanwhile, or the platform refuses: serving works either way
            continue
        previous[tid] = nice
    logger.info("lowered the priority of %d native worker thread(s) by nice %+d", len(previous), increment)
    return previous


def restore_priority(previous: dict[int, int]) -> None:
    """Undo :func:`lower_native_worker_priority` (a process that serves, then goes on computing)."""
    for tid, nice in previous.items():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # lowering back up needs a privilege some systems withhold; the thread may be gone
            continue
