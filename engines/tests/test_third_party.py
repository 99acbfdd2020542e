"""A component written against core alone, passing its conformance suite, works in the engine unchanged.

``InsertionOrderPolicy`` lives only in this file: no package, no entry
point, no import of any sagellm module package. It passes core's
``EvictionPolicyConformance``, is registered by name at run time, and the
engine, under enough memory pressure to evict, still produces transformers'
greedy tokens and gets every block back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

import pytest
from engines_helpers import Reference
from test_policies_token_exact import _run

from sagellm.core import registry
from sagellm.core.protocols import EvictionPolicy
from sagellm.core.testing import EvictionPolicyConformance
from sagellm.core.types import BlockId, EvictionContext
from sagellm.engines import LLMEngine

NAME = "insertion-order-third-party"


class InsertionOrderPolicy:
    """Evict the block cached longest ago, whatever its hits (FIFO, as in early CDN caches)."""

    def __init__(self) -> None:
        self._order: OrderedDict[BlockId, None] = OrderedDict()

    @property
    def name(self) -> str:
        return NAME

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._order[block_id] = None

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        return None  # hits do not reorder: that is the policy

    def on_remove(self, block_id: BlockId) -> None:
        self._order.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        return list(self._evictable(context))[: context.num_blocks]

    def _evictable(self, context: EvictionContext) -> Iterator[BlockId]:
        return (b for b in self._order if context.is_evictable(b))

    def __len__(self) -> int:
        return len(self._order)


class TestInsertionOrderConformance(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return InsertionOrderPolicy()


@pytest.fixture()
def registered() -> Iterator[str]:
    registry.register("eviction_policy", NAME, InsertionOrderPolicy)
    try:
        yield NAME
    finally:
        registry.unregister("eviction_policy", NAME)


@pytest.mark.slow
def test_it_runs_in_the_engine_token_exact(
    registered: str,
    make_engine: Callable[..., LLMEngine],
    prompts: list[list[int]],
    hf_reference: list[Reference],
) -> None:
    engine = _run(make_engine, prompts, hf_reference, eviction_policy={"implementation": registered})
    assert engine.kv.num_evictions > 0, "the pool must be small enough for the policy to matter"
