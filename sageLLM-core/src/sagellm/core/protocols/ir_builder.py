"""Seam for scheduling policies: queue snapshot in, execution plan out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sagellm.core.types.plan import ExecutionPlan, SchedulerState, SequenceView


@runtime_checkable
class KVView(Protocol):
    """What the KV cache can do for the step being planned; its answers hold for the whole build.

    The engine's view knows what a snapshot cannot: a waiting sequence's
    admission also takes device blocks for the lower-tier hit blocks it
    promotes, the swapped-out KV it swaps back in, and the cached blocks it
    pins (no longer evictable, so no longer counted free); and preempting a
    sequence gives back only the blocks no other sequence shares. A plan
    whose chunks' ``blocks_needed`` sum to at most ``num_free_blocks`` plus
    the ``blocks_freed`` of the sequences it preempts is one the engine
    applies as is.
    """

    @property
    def block_size(self) -> int: ...

    @property
    def num_free_blocks(self) -> int:
        """Free plus evictable device blocks."""
        ...

    def blocks_needed(self, seq: SequenceView, num_new_tokens: int) -> int:
        """Device blocks a chunk of ``num_new_tokens`` costs ``seq``: growth if it runs, admission if it waits."""
        ...

    def blocks_freed(self, seq: SequenceView) -> int:
        """Free or evictable device blocks preempting running ``seq`` gives back (not those others still use)."""
        ...


@runtime_checkable
class IRBuilder(Protocol):
    """Decides what the next step computes.

    Must respect: the token budget per step, the sequence limit, and the
    block costs ``kv`` gives (preempting running sequences when decode
    would not fit). It must never schedule a sequence it also preempts.
    ``kv=None`` means a cache that is plain arithmetic over the snapshot
    (:class:`~sagellm.core.types.ArithmeticKVView`), as in tests.
    """

    @property
    def name(self) -> str: ...

    def build(self, state: SchedulerState, kv: KVView | None = None) -> ExecutionPlan: ...


@runtime_checkable
class SwapCapableIRBuilder(IRBuilder, Protocol):
    """A builder that can preempt by swapping a sequence's KV to host memory instead of recomputing it.

    Only the engine knows whether its pool has a host tier and what a
    token's KV weighs, so it calls ``use_swap`` once, before the first
    build, when swapping is possible; a builder configured with swapping
    off keeps it off. A builder never told recomputes every victim.
    """

    def use_swap(self, kv_bytes_per_token: float) -> None: ...
