"""Errors of the domestic interconnect backends, all under sagellm's SageLLMError.

A missing vendor plugin is core's NotSupportedError and a bad option core's
ConfigError; these two cover what only a running process group can report.
"""

from __future__ import annotations

from sagellm.core.errors import SageLLMError


class InterconnectError(SageLLMError):
    """A collective or the process group failed (the vendor library reported an error)."""


class InterconnectTimeoutError(InterconnectError, TimeoutError):
    """A peer did not arrive within the backend's timeout.

    Raised for an unreachable rendezvous, a rank that never joins, and a
    collective whose peer stopped calling it: never a hang.
    """
