"""Seam for eviction: which cached blocks to drop when the pool runs short."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sagellm.core.protocols.lifetime_predictor import LifetimePredictor
from sagellm.core.types.eviction import EvictionContext
from sagellm.core.types.kv import BlockId


@runtime_checkable
class EvictionPolicy(Protocol):
    """Ranks the blocks it has been told about; never frees anything itself.

    The cache calls the hooks as blocks are cached, hit and dropped; when
    the pool is short it asks for victims and then removes them (calling
    ``on_remove``). ``select_victims`` may return fewer blocks than asked if
    not enough are evictable.
    """

    @property
    def name(self) -> str: ...

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None: ...

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None: ...

    def on_remove(self, block_id: BlockId) -> None: ...

    def select_victims(self, context: EvictionContext) -> list[BlockId]: ...

    def __len__(self) -> int: ...


@runtime_checkable
class PredictiveEvictionPolicy(EvictionPolicy, Protocol):
    """A policy that ranks blocks by a lifetime predictor's forecast of their next reuse.

    The predictor lives in its own package and registry slot, so an engine
    builds both and hands the predictor over with ``use_predictor`` before
    the policy sees any block; a configured predictor with a policy that is
    not predictive is a configuration error, not something to ignore.
    """

    @property
    def predictor(self) -> LifetimePredictor: ...

    def use_predictor(self, predictor: LifetimePredictor) -> None:
        """Rank by ``predictor`` from now on (called before any block is tracked)."""
        ...
