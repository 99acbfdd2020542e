"""Errors this package raises on purpose (all are :class:`sagellm.core.errors.SageLLMError`)."""

from __future__ import annotations

from sagellm.core.errors import SageLLMError


class TopologyParseError(SageLLMError, ValueError):
    """A vendor tool's output or an NCCL topology file is not in the format we read.

    Raised with the line or element at fault, so a caller feeding the wrong
    command's output (``nvidia-smi topo -p2p`` for ``topo -m``) sees why.
    """
