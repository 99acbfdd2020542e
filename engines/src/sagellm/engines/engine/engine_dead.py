"""EngineDeadError: the engine can never step again, so a server exits rather than serve errors."""

from __future__ import annotations

from sagellm.core.errors import SageLLMError


class EngineDeadError(SageLLMError):
    """A part of the engine outside this process is gone: a tensor-parallel rank, a disaggregated worker.

    Unlike a failed step (that batch's requests fail, the next ones run),
    nothing can succeed after this; ``sagellm serve`` fails what is in
    flight and exits 1.
    """
