"""Seam for predicting when a cached block will be reused."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sagellm.core.types.kv import KVBlockMeta


@runtime_checkable
class LifetimePredictor(Protocol):
    """Estimates seconds until the next reuse of a block (``inf``: never)."""

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float: ...

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        """Learn from the outcome: reuse after N seconds, or ``None`` for evicted unused."""
        ...
