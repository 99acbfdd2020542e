"""A :class:`~sagellm.core.protocols.CompletionHandle` for work that finished synchronously."""

from __future__ import annotations


class CompletedHandle:
    """Already done: ``wait`` returns at once.

    Lets a synchronous pool keep the asynchronous ``migrate`` signature, so
    callers written against tiered, copy-engine pools run unchanged.
    """

    __slots__ = ()

    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None
