"""A deliberately naive FIFO builder: the oracle for tests and the benchmark's peer.

It transcribes the FIFO algorithm as directly as possible -- plain lists,
re-sorting, and every total (tokens used, free blocks, slots) re-summed over
the plan so far at each decision -- so it is easy to check by eye and
quadratic in the number of sequences. :class:`FIFOIRBuilder` must produce
exactly the same plans; the property tests compare the two on random
snapshots and the benchmark measures what the incremental ledger buys.
Block arithmetic is written out again here (not imported) so a slip in core's
``blocks_to_grow``/``blocks_to_admit`` cannot hide in both; an engine's KV view, when given, is used as is.
"""

from __future__ import annotations

import math

from sagellm.core.protocols import KVView
from sagellm.core.types import ExecutionPlan, ScheduledChunk, SchedulerState, SequenceView
from sagellm.scheduler_ir.errors import InvalidSchedulerStateError

# (view, start, num_tokens, admitted)
_Chunk = tuple[SequenceView, int, int, bool]


class NaiveFIFOIRBuilder:
    """Same decisions as :class:`FIFOIRBuilder`, computed the slow, obvious way."""

    def __init__(
        self, max_num_seqs: int = 64, max_num_batched_tokens: int = 512, enable_chunked_prefill: bool = True
    ) -> None:
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.enable_chunked_prefill = enable_chunked_prefill
        self._kv: KVView | None = None  # the engine's view for the build in progress; None: own arithmetic

    @property
    def name(self) -> str:
        return "fifo-naive"

    def build(self, state: SchedulerState, kv: KVView | None = None) -> ExecutionPlan:
        self._kv = kv
        chunks: list[_Chunk] = []
        preempted: list[SequenceView] = []
        self._schedule_running(state, chunks, preempted)
        if not preempted:
            self._admit_waiting(state, chunks, preempted)
        return ExecutionPlan(
            chunks=tuple(ScheduledChunk(v.request_id, s, n, self._is_decode(v, a)) for v, s, n, a in chunks),
            admitted=tuple(v.request_id for v, _, _, a in chunks if a),
            preempted=tuple(v.request_id for v in preempted),
        )

    def _schedule_running(self, state: SchedulerState, chunks: list[_Chunk], preempted: list[SequenceView]) -> None:
        running = sorted(state.running, key=lambda v: v.arrival_time)
        visited: list[str] = []
        for view in running:
            if view.request_id in [p.request_id for p in preempted]:
                continue
            if len(chunks) >= self.max_num_seqs or self._tokens_used(chunks) >= self.max_num_batched_tokens:
                return
            visited.append(view.request_id)
            num_new = self._num_new(view.num_tokens - view.num_computed_tokens, chunks)
            if num_new is None:
                continue
            while self._blocks(view, view.num_computed_tokens, num_new, False, state) > self._free(
                state, chunks, preempted
            ):
                gone = [p.request_id for p in preempted]
                candidates = [v for v in running if v.request_id not in visited and v.request_id not in gone]
                if not candidates:
                    preempted.append(view)
                    return
                preempted.append(sorted(candidates, key=lambda v: v.arrival_time)[-1])
            chunks.append((view, view.num_computed_tokens, num_new, False))

    def _admit_waiting(self, state: SchedulerState, chunks: list[_Chunk], preempted: list[SequenceView]) -> None:
        for view in sorted(state.waiting, key=lambda v: v.arrival_time):
            num_admitted = len([c for c in chunks if c[3]])
            if num_admitted >= self.max_num_seqs - len(state.running) or len(chunks) >= self.max_num_seqs:
                return
            if view.num_tokens - view.num_cached_tokens <= 0:
                raise InvalidSchedulerStateError(f"waiting sequence {view.request_id!r} is fully cached")
            num_new = self._num_new(view.num_tokens - view.num_cached_tokens, chunks)
            if num_new is None:
                return
            if self._blocks(view, view.num_cached_tokens, num_new, True, state) > self._free(state, chunks, preempted):
                return
            chunks.append((view, view.num_cached_tokens, num_new, True))

    def _num_new(self, remaining: int, chunks: list[_Chunk]) -> int | None:
        left = self.max_num_batched_tokens - self._tokens_used(chunks)
        if remaining <= 0 or left <= 0 or (remaining > left and not self.enable_chunked_prefill):
            return None
        return min(remaining, left)

    @staticmethod
    def _tokens_used(chunks: list[_Chunk]) -> int:
        return sum(n for _, _, n, _ in chunks)

    def _blocks(self, view: SequenceView, start: int, num_new: int, admitted: bool, state: SchedulerState) -> int:
        if self._kv is not None:
            return self._kv.blocks_needed(view, num_new)
        bs = state.block_size
        held = start // bs if admitted else view.num_blocks_held
        return max(0, math.ceil((start + num_new) / bs) - held)

    def _free(self, state: SchedulerState, chunks: list[_Chunk], preempted: list[SequenceView]) -> int:
        free = state.num_free_blocks if self._kv is None else self._kv.num_free_blocks
        used = sum(self._blocks(v, s, n, a, state) for v, s, n, a in chunks)
        freed = sum(v.num_blocks_held if self._kv is None else self._kv.blocks_freed(v) for v in preempted)
        return free + freed - used

    @staticmethod
    def _is_decode(view: SequenceView, admitted: bool) -> bool:
        uncomputed = view.num_tokens - view.num_computed_tokens
        return not admitted and uncomputed == 1 and view.num_tokens > view.num_prompt_tokens
