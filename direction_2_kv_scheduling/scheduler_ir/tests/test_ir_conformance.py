"""Core's IRBuilder conformance suite, run on every builder of the package (and its main variants)."""

from __future__ import annotations

from sagellm.core.protocols import IRBuilder
from sagellm.core.testing import IRBuilderConformance
from sagellm.core.testing.ir_builder import BS, running, waiting
from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir import (
    AdaptiveIRBuilder,
    CostModel,
    FIFOIRBuilder,
    NaiveFIFOIRBuilder,
    PriorityIRBuilder,
    SLOIRBuilder,
)

EAGER = {"queue_high": 1, "queue_low": 0, "kv_high": 0.01, "kv_low": 0.0}  # adaptive: loaded at the first request


class TestFIFOConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return FIFOIRBuilder(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens)


class TestFIFOWithoutChunkingConformance(IRBuilderConformance):
    """Chunking off: two suite tests expect a chunk by design, so they are restated here."""

    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return FIFOIRBuilder(max_num_seqs, max_num_batched_tokens, enable_chunked_prefill=False)

    def test_token_budget_chunks_a_long_prompt(self) -> None:
        # A prompt longer than the budget cannot start without chunking (the engine must
        # keep max_num_batched_tokens >= the longest prompt, as vLLM requires).
        plan = self._build(SchedulerState((), (waiting("a", 200),), num_free_blocks=100, block_size=BS), budget=64)
        assert plan.chunks == () and plan.admitted == ()

    def test_partially_prefilled_sequence_continues(self) -> None:
        state = SchedulerState((running("a", 200, computed=64),), (), num_free_blocks=100, block_size=BS)
        assert self._build(state, budget=64).chunks == ()  # 136 left > 64: it waits


class TestFIFOWithPrefixWindowAndSwapConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return FIFOIRBuilder(max_num_seqs, max_num_batched_tokens, prefix_window=8, swap_available=True)


class TestPriorityConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return PriorityIRBuilder(max_num_seqs, max_num_batched_tokens)


class TestSLOConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return SLOIRBuilder(max_num_seqs, max_num_batched_tokens)


class TestSLOWithSwapConformance(IRBuilderConformance):
    """A fast device (GPU-like cost model) that swaps long contexts."""

    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        gpu = CostModel(kv_bytes_per_token=131_072, host_bandwidth_bytes_per_s=25e9, compute_flops_per_s=4e14)
        return SLOIRBuilder(max_num_seqs, max_num_batched_tokens, swap_available=True, cost=gpu, prefix_window=4)


class TestAdaptiveConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return AdaptiveIRBuilder(max_num_seqs, max_num_batched_tokens)


class TestAdaptiveLoadedConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return AdaptiveIRBuilder(max_num_seqs, max_num_batched_tokens, **EAGER)


class TestAdaptiveLoadedPriorityConformance(IRBuilderConformance):
    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return AdaptiveIRBuilder(max_num_seqs, max_num_batched_tokens, loaded_policy="priority", **EAGER)


class TestNaiveReferenceConformance(IRBuilderConformance):
    """The oracle the property tests compare against must itself be conformant."""

    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return NaiveFIFOIRBuilder(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens)
