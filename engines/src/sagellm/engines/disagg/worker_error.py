"""WorkerError: a disaggregated worker failed or went away, so the pair cannot serve any more."""

from __future__ import annotations

from sagellm.core.errors import EngineDeadError


class WorkerError(EngineDeadError):
    """A worker process failed (its traceback is in the message), died, or (remote) disconnected."""
