"""Opening the configured KV channel for a disaggregated worker.

The workers program against core's :class:`~sagellm.core.protocols.DuplexKVChannel`
(send with metadata, receive, accept or reject, close) rather than a module
package, so any channel the registry builds that offers it works; one that
only sends is refused when the worker starts, not at its first request.
"""

from __future__ import annotations

from typing import Any

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import DuplexKVChannel


def open_channel(config: SageLLMConfig, pool: Any, node: str) -> DuplexKVChannel:
    """The configured channel for ``node``, over ``pool``'s KV tensors."""
    channel = registry.create_kv_transfer_channel(config, kv=pool, node=node)
    if not isinstance(channel, DuplexKVChannel):
        name = config.kv_transfer.implementation
        raise ConfigError(
            f"kv_transfer implementation '{name}' cannot receive (needs receive() and close()); "
            "disaggregated serving needs one that can, e.g. 'shm'"
        )
    return channel
