"""Typed errors of the overlap managers, each also its core counterpart."""

from __future__ import annotations

from sagellm.core.errors import SageLLMError


class ManagerClosedError(SageLLMError):
    """Work was handed to a manager after ``close()``: a shutdown-order bug in the caller."""
