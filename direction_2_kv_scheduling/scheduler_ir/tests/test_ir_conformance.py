"""Core's IRBuilder conformance suite, run on every builder of the package."""

from __future__ import annotations

from sagellm.core.protocols import IRBuilder
from sagellm.core.testing import IRBuilderConformance
from sagellm.core.testing.ir_builder import BS, running, waiting
from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir import FIFOIRBuilder, NaiveFIFOIRBuilder


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


class TestNaiveReferenceConformance(IRBuilderConformance):
    """The oracle the property tests compare against must itself be conformant."""

    def make_builder(self, max_num_seqs: int, max_num_batched_tokens: int) -> IRBuilder:
        return NaiveFIFOIRBuilder(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens)
