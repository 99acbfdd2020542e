"""Completion handles: what ``migrate`` returns, to wait on or poll.

Both kinds satisfy :class:`sagellm.core.protocols.CompletionHandle`
(``done()``, ``wait(timeout)``) and add what a tiered pool's callers need:
the destination ids at once (the pool allocates them when the migration
is submitted) and a :class:`MigrationResult` once the data has landed.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

from sagellm.core.types import BlockId, BlockMove
from sagellm.kv_pool.block_copier import CopyTiming


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """A finished migration: every move with its destination id, and the copy timings per direction."""

    moves: tuple[BlockMove, ...] = ()
    timings: tuple[CopyTiming, ...] = ()

    @property
    def dst_block_ids(self) -> list[BlockId]:
        """Destination ids in plan order (the pool's choice where the plan left them None)."""
        return [move.dst_block_id for move in self.moves if move.dst_block_id is not None]

    @property
    def num_bytes(self) -> int:
        return sum(timing.num_bytes for timing in self.timings)


class CompletedHandle:
    """Already done: ``wait`` returns at once (an empty plan, or work that finished synchronously)."""

    __slots__ = ("_result",)

    def __init__(self, result: MigrationResult | None = None) -> None:
        self._result = result or MigrationResult()

    @property
    def moves(self) -> tuple[BlockMove, ...]:
        return self._result.moves

    @property
    def dst_block_ids(self) -> list[BlockId]:
        return self._result.dst_block_ids

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None

    def result(self, timeout: float | None = None) -> MigrationResult:
        return self._result


class MigrationHandle:
    """A migration running on the pool's workers.

    ``dst_block_ids`` is known at once, so callers can update their block
    tables without blocking; the blocks' *data* is valid only after
    ``wait()`` (or ``done()`` returned True). ``wait(timeout)`` returns when
    the migration finished or the timeout passed (check ``done()``), and
    re-raises the error if the copy failed — the pool has then already
    given the sources back and freed the destinations.
    """

    __slots__ = ("_future", "moves")

    def __init__(self, moves: tuple[BlockMove, ...], future: concurrent.futures.Future[MigrationResult]) -> None:
        self.moves = moves
        self._future = future

    @property
    def dst_block_ids(self) -> list[BlockId]:
        return [move.dst_block_id for move in self.moves if move.dst_block_id is not None]

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        concurrent.futures.wait([self._future], timeout=timeout)
        if self._future.done():
            self._future.result()  # re-raise a failed copy

    def result(self, timeout: float | None = None) -> MigrationResult:
        """Wait (up to ``timeout``; TimeoutError after) and return the :class:`MigrationResult`."""
        return self._future.result(timeout=timeout)
