"""First-fit allocation of byte ranges in the staging area.

A transfer stages all of its blocks as one contiguous run, laid out so that
each layer's keys (and values) are one ``[n, block_size, heads, dim]``
tensor: the sender fills it with one ``index_select`` per layer and the
receiver drains it with one ``index_copy_``, instead of ``2 * layers * n``
small copies. Runs are freed out of order (the receiver acknowledges
whenever it gets round to a transfer), so free space is a sorted list of
holes, merged with its neighbours on free::

    staging: [ run a ][ hole ][ run c ][      hole      ]
    free(c)  [ run a ][ hole           +            hole ]   one hole again
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

DEFAULT_ALIGNMENT = 256  # keeps every staged tensor aligned for vector loads, whatever its dtype


class ExtentAllocator:
    """Hands out ``[offset, offset + nbytes)`` ranges of a fixed capacity."""

    def __init__(self, capacity: int, alignment: int = DEFAULT_ALIGNMENT) -> None:
        if capacity <= 0 or alignment <= 0:
            raise ValueError("capacity and alignment must be positive")
        self.alignment = alignment
        self.capacity = capacity - capacity % alignment
        self._holes: list[tuple[int, int]] = [(0, self.capacity)] if self.capacity else []  # (offset, size)
        self._used: dict[int, int] = {}  # offset -> size

    @property
    def num_free_bytes(self) -> int:
        return sum(size for _, size in self._holes)

    @property
    def num_used_bytes(self) -> int:
        return self.capacity - self.num_free_bytes

    def rounded(self, nbytes: int) -> int:
        """What a request of ``nbytes`` actually takes (at least one aligned unit)."""
        return max(self.alignment, -(-nbytes // self.alignment) * self.alignment)

    def allocate(self, nbytes: int) -> int | None:
        """Offset of a new run of ``nbytes``; None when no hole is large enough."""
        size = self.rounded(nbytes)
        for i, (offset, hole) in enumerate(self._holes):
            if hole >= size:
                if hole == size:
                    del self._holes[i]
                else:
                    self._holes[i] = (offset + size, hole - size)
                self._used[offset] = size
                return offset
        return None

    def free(self, offset: int) -> None:
        size = self._used.pop(offset)  # KeyError: not a run this allocator handed out
        i = bisect.bisect_left(self._holes, (offset, 0))
        if i < len(self._holes) and offset + size == self._holes[i][0]:  # merge with the hole after
            size += self._holes.pop(i)[1]
        if i > 0 and self._holes[i - 1][0] + self._holes[i - 1][1] == offset:  # and the one before
            offset, size = self._holes[i - 1][0], self._holes[i - 1][1] + size
            self._holes[i - 1] = (offset, size)
            return
        self._holes.insert(i, (offset, size))


def reserve_run(
    extents: ExtentAllocator,
    nbytes: int,
    room: threading.Condition,
    timeout_s: float,
    check_open: Callable[[], None],
    num_pending: int,
    full_error: type[Exception],
) -> int:
    """A run of ``nbytes``, waiting up to ``timeout_s`` on ``room`` (held) for receivers to free space.

    Shared by every channel that stages before sending: back-pressure is the
    same whether the staging area is shared memory or a private buffer.
    ``full_error`` is raised when the run can never fit or the wait runs out.
    """
    if extents.rounded(nbytes) > extents.capacity:
        raise full_error(
            f"a transfer of {nbytes} bytes exceeds the whole staging area ({extents.capacity} bytes); "
            "raise kv_transfer staging_mb or send fewer blocks at a time"
        )
    deadline = time.monotonic() + timeout_s
    while (offset := extents.allocate(nbytes)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise full_error(
                f"staging area full: {extents.num_used_bytes} of {extents.capacity} bytes wait for "
                f"receivers to accept ({num_pending} transfers pending); need {nbytes}"
            )
        room.wait(remaining)
        check_open()
    return offset
