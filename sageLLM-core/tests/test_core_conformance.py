"""The conformance suites themselves: consistent (a plain reference passes) and sharp (bugs fail).

Each suite is run twice here:

* against a minimal, obviously-correct reference implementation (dicts, an
  ``OrderedDict``, numpy arrays) -- every inherited test must pass, which
  shows the suite asks for nothing contradictory;
* against deliberately broken variants of those references -- for each bug,
  the named suite test must fail with ``AssertionError``, which shows the
  suite would catch that bug in a real implementation.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from sagellm.core.errors import KVBlockError, NotSupportedError, OutOfBlocksError
from sagellm.core.protocols import EvictionPolicy, IRBuilder, KVPool, KVView, PrefixIndex
from sagellm.core.testing import (
    EvictionPolicyConformance,
    IRBuilderConformance,
    KVPoolConformance,
    PrefixIndexConformance,
    SpeculativeDecoderConformance,
    raises,
)
from sagellm.core.types import (
    ArithmeticKVView,
    BlockId,
    DraftSequence,
    EvictionContext,
    ExecutionPlan,
    KVBlockMeta,
    KVLayout,
    KVPoolStats,
    MigrationPlan,
    PrefixHit,
    ScheduledChunk,
    SchedulerState,
    Tier,
)

# =========================================================================== reference implementations


class DictPrefixIndex:
    """Each full block is keyed by (namespace, every token up to its end): a chain in a dict."""

    def __init__(self, block_size: int) -> None:
        self._block_size = block_size
        self._by_key: dict[tuple[str, tuple[int, ...]], BlockId] = {}
        self._key_of: dict[BlockId, tuple[str, tuple[int, ...]]] = {}
        self._refs: dict[BlockId, int] = {}

    @property
    def block_size(self) -> int:
        return self._block_size

    def _keys(self, tokens: Sequence[int], namespace: str) -> list[tuple[str, tuple[int, ...]]]:
        full = len(tokens) // self._block_size
        return [(namespace, tuple(tokens[: (i + 1) * self._block_size])) for i in range(full)]

    def _match(self, tokens: Sequence[int], namespace: str) -> list[BlockId]:
        matched = []
        for key in self._keys(tokens, namespace):
            if key not in self._by_key:
                break
            matched.append(self._by_key[key])
        return matched

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        matched = self._match(tokens, namespace)
        for block in matched:
            self._refs[block] += 1
        return PrefixHit(len(matched) * self._block_size, tuple(matched))

    def peek(self, tokens: Sequence[int], namespace: str = "") -> int:
        return len(self._match(tokens, namespace)) * self._block_size

    def insert(self, tokens: Sequence[int], block_ids: Sequence[BlockId], namespace: str = "") -> list[BlockId]:
        adopted = []
        for key, block in zip(self._keys(tokens, namespace), block_ids):
            if key in self._by_key or block in self._key_of:
                continue
            self._by_key[key] = block
            self._key_of[block] = key
            self._refs[block] = 1
            adopted.append(block)
        return adopted

    def release(self, block_ids: Sequence[BlockId]) -> None:
        for block in block_ids:
            if self._refs.get(block, 0) > 0:
                self._refs[block] -= 1

    def is_evictable(self, block_id: BlockId) -> bool:
        return self._refs.get(block_id) == 0

    def remove(self, block_ids: Sequence[BlockId]) -> None:
        for block in block_ids:
            key = self._key_of.pop(block, None)
            if key is not None:
                del self._by_key[key]
                del self._refs[block]

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._key_of

    def __len__(self) -> int:
        return len(self._key_of)


class DoneHandle:
    def done(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> None:
        return None


class NumpyKVPool:
    """Reference counts in a list, a FIFO free list, numpy arrays as KV storage."""

    def __init__(self, num_blocks: int, block_size: int, num_layers: int = 2) -> None:
        self._layout = KVLayout(num_layers, num_kv_heads=2, head_dim=4, block_size=block_size, num_blocks=num_blocks)
        shape = (num_blocks, block_size, 2, 4)
        self._kv = [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in range(num_layers)]
        self._free: deque[BlockId] = deque(range(num_blocks))
        self._refs = [0] * num_blocks

    @property
    def layout(self) -> KVLayout:
        return self._layout

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    def can_allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> bool:
        return tier is Tier.DEVICE and num_blocks <= len(self._free)

    def allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> list[BlockId]:
        if not self.can_allocate(num_blocks, tier):
            raise OutOfBlocksError(f"need {num_blocks} blocks, {len(self._free)} free")
        ids = [self._free.popleft() for _ in range(num_blocks)]
        for block in ids:
            self._refs[block] = 1
        return ids

    def _check_held(self, block_id: BlockId) -> None:
        if not 0 <= block_id < len(self._refs) or self._refs[block_id] == 0:
            raise KVBlockError(f"block {block_id} is not allocated")

    def retain(self, block_ids: Sequence[BlockId]) -> None:
        for block in block_ids:
            self._check_held(block)
            self._refs[block] += 1

    def free(self, block_ids: Sequence[BlockId]) -> None:
        for block in block_ids:
            self._check_held(block)
            self._refs[block] -= 1
            if self._refs[block] == 0:
                self._free.append(block)

    def ref_count(self, block_id: BlockId) -> int:
        return self._refs[block_id]

    def copy_on_write(self, block_id: BlockId) -> BlockId:
        self._check_held(block_id)
        if self._refs[block_id] == 1:
            return block_id
        (copy,) = self.allocate(1)
        for key, value in self._kv:
            key[copy] = key[block_id]
            value[copy] = value[block_id]
        self._refs[block_id] -= 1
        return copy

    def migrate(self, plan: MigrationPlan) -> DoneHandle:
        if len(plan):
            raise NotSupportedError("single-tier pool")
        return DoneHandle()

    def block_meta(self, block_id: BlockId) -> KVBlockMeta:
        return KVBlockMeta(block_id, Tier.DEVICE, self._refs[block_id], self._layout.bytes_per_block)

    def kv_tensors(self, layer: int) -> tuple[Any, Any]:
        return self._kv[layer]

    def stats(self) -> KVPoolStats:
        used = sum(1 for r in self._refs if r > 0)
        shared = sum(1 for r in self._refs if r > 1)
        layout = self._layout
        return KVPoolStats(layout.num_blocks, len(self._free), used, shared, layout.block_size, layout.bytes_per_block)


class OrderedDictLRU:
    """Least recently used first: an OrderedDict moved-to-end on access."""

    def __init__(self) -> None:
        self._order: OrderedDict[BlockId, None] = OrderedDict()

    @property
    def name(self) -> str:
        return "reference_lru"

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._order[block_id] = None
        self._order.move_to_end(block_id)

    def on_access(self, block_id: BlockId, now: float = 0.0) -> None:
        if block_id in self._order:
            self._order.move_to_end(block_id)

    def on_remove(self, block_id: BlockId) -> None:
        self._order.pop(block_id, None)

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        victims: list[BlockId] = []
        for block in self._order:
            if len(victims) == context.num_blocks:
                break
            if context.is_evictable(block):
                victims.append(block)
        return victims

    def __len__(self) -> int:
        return len(self._order)


class FifoBuilder:
    """Running sequences first (oldest first), preempting the newest when blocks run out; then admit FIFO.

    A chunk's block need is what the KV view says (the arithmetic view by default).
    """

    def __init__(self, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens

    @property
    def name(self) -> str:
        return "reference_fifo"

    def build(self, state: SchedulerState, kv: KVView | None = None) -> ExecutionPlan:
        kv = kv or ArithmeticKVView(state.block_size, state.num_free_blocks)
        budget, free = self.max_num_batched_tokens, kv.num_free_blocks
        chunks: list[ScheduledChunk] = []
        preempted: list[str] = []
        queue = sorted(state.running, key=lambda v: v.arrival_time)
        while queue and len(chunks) < self.max_num_seqs and budget > 0:
            view = queue.pop(0)
            num_tokens = min(view.num_uncomputed_tokens, budget)
            if num_tokens <= 0:
                continue
            need = kv.blocks_needed(view, num_tokens)
            while need > free and queue:
                victim = queue.pop()
                preempted.append(victim.request_id)
                free += kv.blocks_freed(victim)
            if need > free:
                preempted.append(view.request_id)
                free += kv.blocks_freed(view)
                continue
            is_decode = view.num_uncomputed_tokens == 1 and view.num_tokens > view.num_prompt_tokens
            chunks.append(ScheduledChunk(view.request_id, view.num_computed_tokens, num_tokens, is_decode))
            free -= need
            budget -= num_tokens
        admitted: list[str] = []
        for view in sorted(state.waiting, key=lambda v: v.arrival_time) if not preempted else ():
            num_tokens = min(view.num_tokens - view.num_cached_tokens, budget)
            if len(chunks) >= self.max_num_seqs or num_tokens <= 0:
                break
            need = kv.blocks_needed(view, num_tokens)
            if need > free:
                break
            chunks.append(ScheduledChunk(view.request_id, view.num_cached_tokens, num_tokens))
            admitted.append(view.request_id)
            free -= need
            budget -= num_tokens
        return ExecutionPlan(tuple(chunks), tuple(admitted), tuple(preempted))


# =========================================================================== references pass every test


class TestReferencePrefixIndex(PrefixIndexConformance):
    def make_index(self, block_size: int) -> PrefixIndex:
        return DictPrefixIndex(block_size)


class TestReferenceKVPool(KVPoolConformance):
    def make_pool(self, num_blocks: int, block_size: int) -> KVPool:
        return NumpyKVPool(num_blocks, block_size)


class TestReferenceEvictionPolicy(EvictionPolicyConformance):
    def make_policy(self) -> EvictionPolicy:
        return OrderedDictLRU()


class TestReferenceIRBuilder(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return FifoBuilder(max_num_seqs, max_num_batched_tokens)


# =========================================================================== broken variants


class NamespaceBlindIndex(DictPrefixIndex):
    """Bug: entries of different models share blocks."""

    def _keys(self, tokens: Sequence[int], namespace: str) -> list[tuple[str, tuple[int, ...]]]:
        return super()._keys(tokens, "")


class LookupWithoutReferenceIndex(DictPrefixIndex):
    """Bug: a hit does not pin its blocks, so they can be evicted under a running sequence."""

    def lookup(self, tokens: Sequence[int], namespace: str = "") -> PrefixHit:
        matched = self._match(tokens, namespace)
        return PrefixHit(len(matched) * self.block_size, tuple(matched))


class PositionBlindIndex(DictPrefixIndex):
    """Bug: a block keyed by its own tokens only, so equal content at another position matches."""

    def _keys(self, tokens: Sequence[int], namespace: str) -> list[tuple[str, tuple[int, ...]]]:
        bs = self.block_size
        return [(namespace, tuple(tokens[i * bs : (i + 1) * bs])) for i in range(len(tokens) // bs)]


class DoubleFreePool(NumpyKVPool):
    """Bug: freeing a free block is silently accepted (it hides use-after-free in callers)."""

    def free(self, block_ids: Sequence[BlockId]) -> None:
        super().free([b for b in block_ids if self._refs[b] > 0])


class SharedWritePool(NumpyKVPool):
    """Bug: copy-on-write hands out the shared block itself."""

    def copy_on_write(self, block_id: BlockId) -> BlockId:
        return block_id


class PartialOverAllocationPool(NumpyKVPool):
    """Bug: an allocation that cannot be satisfied still takes what is left before failing."""

    def allocate(self, num_blocks: int, tier: Tier = Tier.DEVICE) -> list[BlockId]:
        if num_blocks > len(self._free):
            super().allocate(len(self._free), tier)
        return super().allocate(num_blocks, tier)


class ForgetfulRemoveLRU(OrderedDictLRU):
    """Bug: ``on_remove`` updates the count but leaves the block in the order, so it can be chosen again."""

    def __init__(self) -> None:
        super().__init__()
        self._removed: set[BlockId] = set()

    def on_insert(self, block_id: BlockId, now: float = 0.0) -> None:
        self._removed.discard(block_id)
        super().on_insert(block_id, now)

    def on_remove(self, block_id: BlockId) -> None:
        self._removed.add(block_id)

    def __len__(self) -> int:
        return len(self._order) - len(self._removed)


class PinIgnoringLRU(OrderedDictLRU):
    """Bug: victims include blocks a running sequence still uses."""

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        return list(self._order)[: context.num_blocks]


class PoppingLRU(OrderedDictLRU):
    """Bug: selection forgets the victims, so a cache that then skips one loses track of it."""

    def select_victims(self, context: EvictionContext) -> list[BlockId]:
        victims = super().select_victims(context)
        for block in victims:
            self._order.pop(block)
        return victims


class BudgetBlindBuilder(FifoBuilder):
    """Bug: the whole prompt is scheduled regardless of the per-step token budget."""

    def __init__(self, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        super().__init__(max_num_seqs, 10**9)


class NeverPreemptBuilder(FifoBuilder):
    """Bug: decodes are scheduled even when there are no blocks for them."""

    def build(self, state: SchedulerState) -> ExecutionPlan:
        return super().build(
            SchedulerState(state.running, state.waiting, 10**9, state.block_size, state.now)  # lie about free blocks
        )


class KVViewBlindBuilder(FifoBuilder):
    """Bug: plans by arithmetic over the snapshot, ignoring what the engine's KV view charges."""

    def build(self, state: SchedulerState, kv: KVView | None = None) -> ExecutionPlan:
        return super().build(state)


class PreemptAndRunBuilder(FifoBuilder):
    """Bug: a sequence is preempted and still scheduled in the same plan."""

    def build(self, state: SchedulerState) -> ExecutionPlan:
        plan = super().build(state)
        if not state.running:
            return plan
        return ExecutionPlan(plan.chunks, plan.admitted, plan.preempted + (plan.chunks[0].request_id,))


class SeqLimitBlindBuilder(FifoBuilder):
    """Bug: the sequence limit is ignored."""

    def __init__(self, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        super().__init__(10**9, max_num_batched_tokens)


class RepeatLastToken:
    """Reference speculative decoder: drafts the last token repeated (right on runs, cheap, stateless)."""

    name = "repeat-last"

    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        return [[s.token_ids[-1]] * num_tokens if s.token_ids else [] for s in sequences]

    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        count = 0
        for draft, target in zip(draft_token_ids, target_token_ids):
            if draft != target:
                break
            count += 1
        return count

    def accept(self, request_id: str, token_ids: Sequence[int]) -> None:
        pass

    def release(self, request_id: str) -> None:
        pass


class OverDraftingDecoder(RepeatLastToken):
    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        return [draft + [0] for draft in super().propose(sequences, num_tokens)]


class AnyMatchVerifier(RepeatLastToken):
    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        return sum(d == t for d, t in zip(draft_token_ids, target_token_ids))


class StrictReleaseDecoder(RepeatLastToken):
    def __init__(self) -> None:
        self.known: set[str] = set()

    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        self.known.update(s.request_id for s in sequences)
        return super().propose(sequences, num_tokens)

    def release(self, request_id: str) -> None:
        self.known.remove(request_id)


Factory = Callable[..., Any]
BROKEN: list[tuple[type, str, Factory, str]] = [
    (PrefixIndexConformance, "make_index", NamespaceBlindIndex, "test_namespaces_never_share"),
    (
        PrefixIndexConformance,
        "make_index",
        LookupWithoutReferenceIndex,
        "test_reference_counting_controls_evictability",
    ),
    (
        PrefixIndexConformance,
        "make_index",
        PositionBlindIndex,
        "test_same_block_content_at_other_position_is_not_shared",
    ),
    (KVPoolConformance, "make_pool", DoubleFreePool, "test_double_free_is_an_error"),
    (KVPoolConformance, "make_pool", SharedWritePool, "test_copy_on_write_keeps_unshared_and_copies_shared"),
    (KVPoolConformance, "make_pool", PartialOverAllocationPool, "test_over_allocation_raises_and_takes_nothing"),
    (EvictionPolicyConformance, "make_policy", ForgetfulRemoveLRU, "test_removed_blocks_are_never_selected"),
    (EvictionPolicyConformance, "make_policy", PinIgnoringLRU, "test_respects_is_evictable"),
    (EvictionPolicyConformance, "make_policy", PoppingLRU, "test_selection_does_not_forget_blocks"),
    (IRBuilderConformance, "make_builder", BudgetBlindBuilder, "test_token_budget_chunks_a_long_prompt"),
    (IRBuilderConformance, "make_builder", NeverPreemptBuilder, "test_preempts_when_decodes_do_not_fit"),
    (IRBuilderConformance, "make_builder", PreemptAndRunBuilder, "test_running_decodes_are_scheduled"),
    (IRBuilderConformance, "make_builder", SeqLimitBlindBuilder, "test_sequence_limit_holds"),
    (IRBuilderConformance, "make_builder", KVViewBlindBuilder, "test_admission_pays_what_the_kv_view_charges"),
    (
        SpeculativeDecoderConformance,
        "make_decoder",
        OverDraftingDecoder,
        "test_one_list_of_at_most_num_tokens_ints_per_sequence_in_order",
    ),
    (SpeculativeDecoderConformance, "make_decoder", AnyMatchVerifier, "test_verify_counts_the_leading_agreement"),
    (
        SpeculativeDecoderConformance,
        "make_decoder",
        StrictReleaseDecoder,
        "test_accept_and_release_follow_a_request_and_forgive_unknown_ids",
    ),
]


def run_suite(suite: type, factory_name: str, factory: Factory) -> dict[str, BaseException | None]:
    """Run every ``test_*`` of ``suite`` against ``factory``; map test name to its exception (None: passed)."""
    probe_cls = type(f"Probe{suite.__name__}", (suite,), {factory_name: lambda self, *args: factory(*args)})
    probe = probe_cls()
    outcome: dict[str, BaseException | None] = {}
    for name in sorted(n for n in dir(probe_cls) if n.startswith("test_")):
        try:
            getattr(probe, name)()
            outcome[name] = None
        except Exception as exc:  # noqa: BLE001 -- record every failing test, do not stop at the first
            outcome[name] = exc
    return outcome


@pytest.mark.parametrize(
    ("suite", "factory_name", "factory", "expected_failure"),
    BROKEN,
    ids=[broken.__name__ for _, _, broken, _ in BROKEN],
)
def test_suite_catches_broken_implementation(
    suite: type, factory_name: str, factory: Factory, expected_failure: str
) -> None:
    outcome = run_suite(suite, factory_name, factory)
    assert expected_failure in outcome, f"{suite.__name__} has no {expected_failure}"
    assert isinstance(outcome[expected_failure], AssertionError), (
        f"{factory.__name__} should fail {expected_failure} with AssertionError, got {outcome[expected_failure]!r}"
    )


@pytest.mark.parametrize(
    ("suite", "factory_name", "factory"),
    [
        (PrefixIndexConformance, "make_index", DictPrefixIndex),
        (KVPoolConformance, "make_pool", NumpyKVPool),
        (EvictionPolicyConformance, "make_policy", OrderedDictLRU),
        (IRBuilderConformance, "make_builder", FifoBuilder),
        (SpeculativeDecoderConformance, "make_decoder", RepeatLastToken),
    ],
    ids=["prefix_index", "kv_pool", "eviction_policy", "ir_builder", "speculative_decoder"],
)
def test_reference_passes_through_harness(suite: type, factory_name: str, factory: Factory) -> None:
    """The harness above reports no failure for the references (so its failures mean something)."""
    outcome = run_suite(suite, factory_name, factory)
    assert len(outcome) >= 7
    assert {name: exc for name, exc in outcome.items() if exc is not None} == {}


@pytest.mark.parametrize(
    ("suite", "factory_name", "args"),
    [
        (PrefixIndexConformance, "make_index", (4,)),
        (KVPoolConformance, "make_pool", (8, 4)),
        (EvictionPolicyConformance, "make_policy", ()),
        (IRBuilderConformance, "make_builder", (8, 64)),
        (SpeculativeDecoderConformance, "make_decoder", ()),
    ],
)
def test_suite_factory_must_be_overridden(suite: type, factory_name: str, args: tuple[int, ...]) -> None:
    with pytest.raises(NotImplementedError):
        getattr(suite(), factory_name)(*args)


def test_suite_rejects_object_that_is_not_the_protocol() -> None:
    outcome = run_suite(PrefixIndexConformance, "make_index", lambda block_size: OrderedDictLRU())
    assert isinstance(outcome["test_insert_then_lookup_matches_full_blocks"], AssertionError)


def test_raises_helper() -> None:
    with raises(KeyError, ValueError):
        raise ValueError("x")
    with pytest.raises(AssertionError, match="expected KeyError to be raised"), raises(KeyError):
        pass
    with pytest.raises(TypeError), raises(KeyError):
        raise TypeError("other exceptions propagate")
