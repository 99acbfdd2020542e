"""WorkerError: a disaggregated worker failed or went away, so the pair cannot serve any more."""

from __future__ import annotations

from sagellm.engines.engine.engine_dead import EngineDeadError


class WorkerError(EngineDeadError):
    """A worker process failed (its traceback is in the message), died, or (remote) disconnected."""
