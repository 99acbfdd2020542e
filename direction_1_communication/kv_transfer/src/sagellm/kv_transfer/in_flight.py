"""InFlight: the sender's half of a KV channel, transfers sent and not yet answered, with their staging runs.

A transfer is in flight from ``transfer`` returning until something settles
its handle; all that time its blocks hold a run of the staging area, so the
two are kept together and freed together::

    transfer() --reserve run--> pending[id] --ACK from its peer--> complete/fail handle, free run
                                    |------- peer lost -----------> fail handle, free run
                                    '------- close -------------->  fail handle (memory goes with the channel)

Both channels (shm and tcp) keep one, guarded by the channel's own lock,
which also covers their receiving side: every method here expects that lock
held. ``peer`` says who may answer a transfer: the shm channel uses the
target's node name, the TCP channel the link the frame went out on. They are
compared with ``==`` (a link has identity equality), so an ACK from anyone
else is ignored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sagellm.kv_transfer.errors import ACK_ERRORS, StagingFullError, TransferRejectedError
from sagellm.kv_transfer.extents import ExtentAllocator, reserve_run
from sagellm.kv_transfer.handle import TransferHandle, TransferResult
from sagellm.kv_transfer.waits import wait_until
from sagellm.kv_transfer.wire import AckMsg


@dataclass(slots=True)
class PendingTransfer:
    """One transfer awaiting its receiver's answer."""

    handle: TransferHandle
    offset: int | None  # its run in the staging area; None when it staged nothing
    started: float  # time.perf_counter() when transfer() was called
    peer: object  # who may answer it (see the module docstring)

    def settle(self, ack: AckMsg) -> None:
        """Complete the handle with both sides' timings, or fail it with the error the ACK names."""
        handle = self.handle
        if ack.error_kind is None:
            latency = time.perf_counter() - self.started
            handle._complete(
                TransferResult(
                    handle.transfer_id,
                    handle.target,
                    handle.num_blocks,
                    handle.num_bytes,
                    handle.stage_s,
                    ack.copy_s,
                    latency,
                )
            )
        else:
            handle._fail(ACK_ERRORS.get(ack.error_kind, TransferRejectedError)(ack.error))


class InFlight:
    """Pending transfers by id, and the staging extents their runs take (all under the channel's lock).

    ``_space`` is notified whenever a run is freed (its transfer answered, lost or abandoned):
    ``reserve`` waits on it for staging room, ``close`` for a drain.
    """

    def __init__(
        self,
        lock: threading.Lock,
        staging_bytes: int,
        check_open: Callable[[], None],
    ) -> None:
        self._space = threading.Condition(lock)
        self._staging_bytes = staging_bytes
        self._check_open = check_open
        self._extents: ExtentAllocator | None = None  # made with the staging memory, on the first reservation
        self._pending: dict[int, PendingTransfer] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def reserve(self, nbytes: int, full_timeout_s: float) -> int:
        """A staging run of ``nbytes``, waiting up to ``full_timeout_s`` for receivers to free room.

        The timeout comes with each call, not once at construction: it is the
        channel's public ``full_timeout_s``, which a caller may change at any time.
        """
        if self._extents is None:
            self._extents = ExtentAllocator(self._staging_bytes)
        return reserve_run(
            self._extents,
            nbytes,
            self._space,
            full_timeout_s,
            self._check_open,
            len(self._pending),
            StagingFullError,
        )

    def free(self, offset: int | None) -> None:
        """Give a staged run back (None: nothing was staged)."""
        if offset is not None and self._extents is not None:
            self._extents.free(offset)
            self._space.notify_all()

    def add(self, handle: TransferHandle, offset: int | None, started: float, peer: object) -> None:
        self._pending[handle.transfer_id] = PendingTransfer(handle, offset, started, peer)

    def abandon(self, transfer_id: int, offset: int | None) -> None:
        """A transfer that failed on its way out: forget it (if it was added) and give its run back."""
        self._pending.pop(transfer_id, None)
        self.free(offset)

    def answered(self, ack: AckMsg, peer: object) -> PendingTransfer | None:
        """The transfer ``ack`` answers, removed with its run freed; None if unknown or ``peer`` is not its target.

        The caller settles it after letting go of the lock: completing a
        handle wakes whoever waits on it.
        """
        pending = self._pending.get(ack.transfer_id)
        if pending is None or pending.peer != peer:
            return None
        del self._pending[ack.transfer_id]
        self.free(pending.offset)
        return pending

    def lost(self, peer: object) -> list[PendingTransfer]:
        """Every transfer to ``peer``, removed with its run freed: the peer left and will never answer."""
        failed = [p for p in self._pending.values() if p.peer == peer]
        for pending in failed:
            del self._pending[pending.handle.transfer_id]
            self.free(pending.offset)
        return failed

    def close(self, drain_timeout_s: float) -> list[PendingTransfer]:
        """The channel is closing: wait up to ``drain_timeout_s`` for answers, then remove what is still pending.

        Runs are not freed (the staging memory goes with the channel). Every
        ``transfer`` waiting for room is woken; it runs once the caller, who
        marks the channel closed before letting go of the lock, has done so,
        and raises ChannelClosedError.
        """
        wait_until(self._space, lambda: not self._pending, time.monotonic() + drain_timeout_s)
        pending = list(self._pending.values())
        self._pending.clear()
        self._space.notify_all()
        return pending
