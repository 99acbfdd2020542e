"""What every policy of this package shares: building from configuration.

A new policy (LFU, ARC, S3-FIFO, GDSF, learned) is one sibling file with a
subclass of :class:`BaseEvictionPolicy` and one entry point in
``pyproject.toml`` (which :data:`sagellm.eviction_policy.registry.POLICIES`
reads); nothing else changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, TypeVar

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, EvictionContext

P = TypeVar("P", bound="BaseEvictionPolicy")


class BaseEvictionPolicy(ABC):
    """Ranks tracked blocks; implements :class:`sagellm.core.protocols.EvictionPolicy`.

    Policies are not thread-safe: the engine thread owns the cache and calls
    every hook; a lock here would tax the hottest path for no caller.
    """

    @classmethod
    def from_config(cls: type[P], section: Section, **deps: Any) -> P:
        """Build from the ``eviction_policy`` section: ``options`` and ``deps`` are constructor arguments.

        ``deps`` are live objects an engine hands over through core's registry
        (``create_eviction_policy(config, predictor=...)``), which YAML cannot hold.
        """
        options: dict[str, Any] = {**section.options, **deps}
        try:
            return cls(**options)
        except TypeError as exc:
            raise ConfigError(f"eviction_policy.options for '{section.implementation}': {exc}") from None

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None: ...

    @abstractmethod
    def on_access(self, block_id: BlockId, now: float = 0.0) -> None: ...

    @abstractmethod
    def on_remove(self, block_id: BlockId) -> None: ...

    @abstractmethod
    def select_victims(self, context: EvictionContext) -> list[BlockId]: ...

    @abstractmethod
    def __len__(self) -> int: ...
