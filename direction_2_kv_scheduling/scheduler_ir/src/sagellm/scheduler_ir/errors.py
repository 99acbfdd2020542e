"""Errors specific to building plans (all subclasses of core's hierarchy)."""

from __future__ import annotations

from sagellm.core.errors import SageLLMError


class InvalidSchedulerStateError(SageLLMError, ValueError):
    """The snapshot handed to ``build`` breaks the SchedulerState contract.

    This is an engine bug, not a client error, so it keeps the default 500
    status: the request itself was fine, the bookkeeping around it was not.
    """
