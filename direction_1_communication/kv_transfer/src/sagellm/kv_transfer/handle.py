"""What ``transfer`` returns: a :class:`~sagellm.core.protocols.CompletionHandle` plus the transfer's numbers."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TransferResult:
    """One finished transfer, timed on both sides.

    ``stage_s``: the sender copying the blocks into shared memory (inside
    ``transfer``); ``copy_s``: the receiver copying them into its own blocks
    (inside ``accept``); ``latency_s``: from ``transfer`` being called to the
    receiver's acknowledgement arriving, which includes however long the
    receiver took to get round to it.
    """

    transfer_id: int
    target: str
    num_blocks: int
    num_bytes: int
    stage_s: float
    copy_s: float
    latency_s: float


class TransferHandle:
    """Completes when the receiver has the blocks in its own KV (or fails with why it could not).

    The source blocks are free to reuse as soon as ``transfer`` returns: it
    has already copied them into the staging area.
    """

    __slots__ = ("transfer_id", "target", "num_blocks", "num_bytes", "stage_s", "_event", "_result", "_error")

    def __init__(self, transfer_id: int, target: str, num_blocks: int, num_bytes: int) -> None:
        self.transfer_id = transfer_id
        self.target = target
        self.num_blocks = num_blocks
        self.num_bytes = num_bytes
        self.stage_s = 0.0
        self._event = threading.Event()
        self._result: TransferResult | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Return once complete or ``timeout`` passed (check ``done()``); re-raise a failed transfer's error."""
        self._event.wait(timeout)
        if self._error is not None:
            raise self._error

    def result(self, timeout: float | None = None) -> TransferResult:
        """The :class:`TransferResult`; TimeoutError if not complete within ``timeout``."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"transfer {self.transfer_id} to {self.target!r} not complete after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _complete(self, result: TransferResult) -> None:
        self._result = result
        self._event.set()

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._event.set()
