"""The receiving half of a KV transfer channel, as the decode worker uses it.

The core protocol names only ``transfer``; receiving is the
implementation's own API. The workers program against these Protocols
(duck-typed, checked when a worker starts) rather than importing a module
package, so any channel the registry builds that offers them works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import CompletionHandle, KVTransferChannel
from sagellm.core.types import BlockId


@runtime_checkable
class IncomingKV(Protocol):
    """One transfer waiting to be taken: its size, its metadata, then accept or reject."""

    @property
    def num_blocks(self) -> int: ...

    metadata: Any

    def accept(self, block_ids: Sequence[BlockId]) -> float: ...

    def reject(self, reason: str = "") -> None: ...


@runtime_checkable
class DuplexKVChannel(KVTransferChannel, Protocol):
    """A channel that sends metadata with the blocks, receives, and can be closed."""

    def transfer(self, blocks: Sequence[BlockId], target_node: str, *, metadata: Any = None) -> CompletionHandle: ...

    def receive(self, timeout: float | None = None) -> IncomingKV | None: ...

    def close(self, drain_timeout_s: float = 0.0) -> None: ...


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
