"""Speculative decoding in the engine: drafts for a step's decodes, KV for them, and settling what was kept.

The configured ``SpeculativeDecoder`` (from the registry) proposes; the
engine verifies every speculating sequence's last token plus its drafts in
the step's one forward pass, beside sequences that decode or prefill
normally (a verify is a chunk of ``1 + K`` rows over the paged KV, logits
at every row). Drafts' KV is written into blocks allocated for the pass
from free blocks only (speculation never evicts cached prefixes); after
the pass the sequence's computed KV ends at its last kept token and the
blocks past it go back to the pool, so the prefix index, which adopts
computed blocks only, never sees an unverified one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from sagellm.core.metrics import MetricsRegistry
from sagellm.core.protocols import SpeculativeDecoder
from sagellm.core.types import DraftSequence, SequenceState, blocks_for
from sagellm.engines.engine.draft_budget import MIN_GAIN, AcceptanceTracker, plan_drafts
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.runtime.input_batch import ChunkWork
from sagellm.engines.runtime.kv_manager import KVManager


class Speculator:
    def __init__(
        self,
        decoder: SpeculativeDecoder,
        max_drafts: int,
        kv: KVManager,
        max_model_len: int,
        metrics: MetricsRegistry,
        cost: StepCostModel | None = None,
        draft_cost: StepCostModel | None = None,
        expected_acceptance: float | None = None,
    ) -> None:
        self.decoder = decoder
        self.max_drafts = max_drafts
        self.kv = kv
        self.max_model_len = max_model_len
        self.metrics = metrics
        self.cost = cost or StepCostModel()
        self.draft_cost = draft_cost  # a draft model's pass cost by rows; None: drafts cost next to nothing
        self._drafting_seconds = 0.0
        self._draft_synced: dict[str, int] = {}  # tokens of each request whose KV the draft model holds
        self.acceptance = AcceptanceTracker(expected_acceptance)
        self.num_drafted = 0
        self.num_kept = 0
        self.num_verifies = 0  # sequences verified, summed over steps
        self.num_verify_steps = 0  # steps that verified at least one sequence

    # ------------------------------------------------------------------ before the pass
    def add_drafts(self, works: list[ChunkWork]) -> list[ChunkWork]:
        """``works`` with drafts on the decodes the budget says to speculate on (and KV allocated for them).

        A proposer without a model drafts first and the budget plans with the
        drafts it really got: prompt lookup finds nothing for many sequences
        in a step, and a plan counting on drafts that never come verifies too
        much. A draft model costs a pass per draft token, so there the budget
        plans first (paying for those passes) and only the planned drafts run.
        """
        self._drafting_seconds = 0.0
        candidates = [i for i, work in enumerate(works) if self._may_speculate(work)]
        if not candidates:
            return works
        seqs = [works[i].seq for i in candidates]
        rooms = [self._room(seq) for seq in seqs]
        if self.draft_cost is None:
            drafts = self._propose(seqs, rooms)
            wanted = self._plan(works, seqs, [len(d) for d in drafts])
        else:
            wanted = self._plan(works, seqs, rooms, [self._catch_up_rows(seq) for seq in seqs])
            drafts = self._propose(seqs, wanted)
        extended = list(works)
        for i, seq, proposal, n in zip(candidates, seqs, drafts, wanted):
            kept = self._fit(works[i], proposal[:n]) if n else []
            if kept:
                extended[i] = replace(works[i], drafts=tuple(kept))
            elif proposal or n:
                self.acceptance.idle(seq.request_id)
        if any(wanted):
            self.num_verify_steps += 1
        else:
            self.acceptance.idle_step()
        return extended

    def _propose(self, seqs: list[SequenceState], counts: list[int]) -> list[list[int]]:
        """Up to ``counts[i]`` drafts for each sequence (those with none asked are not shown to the proposer)."""
        asked = [i for i, count in enumerate(counts) if count > 0]
        drafts: list[list[int]] = [[] for _ in seqs]
        if not asked:
            return drafts
        started = time.perf_counter()
        proposals = self.decoder.propose(
            [DraftSequence(seqs[i].request_id, seqs[i].token_ids, seqs[i].num_prompt_tokens) for i in asked],
            max(counts[i] for i in asked),
        )
        self._drafting_seconds = time.perf_counter() - started
        if self.draft_cost is not None:
            passes = max(counts[i] for i in asked)
            if all(self._catch_up_rows(seqs[i]) <= 2 for i in asked):  # in step: each pass ~one row per sequence
                self.draft_cost.observe(len(asked), self._drafting_seconds / passes)
            for i in asked:
                self._draft_synced[seqs[i].request_id] = seqs[i].num_tokens + counts[i] - 1
        for i, proposal in zip(asked, proposals):
            drafts[i] = list(proposal[: counts[i]])
        return drafts

    def _plan(
        self, works: list[ChunkWork], seqs: list[SequenceState], lengths: list[int], catch_up: list[int] | None = None
    ) -> list[int]:
        rates = [self.acceptance.rate(seq.request_id) for seq in seqs]
        rows = sum(work.kv_end - work.start for work in works)
        base_tokens = sum(1 for work in works if work.samples)
        first_rows = None
        if catch_up is not None:
            if not self._drafting_alone_pays(max(rates)):
                return [0] * len(seqs)
            first_rows = [self._amortised(seq, n, rate) for seq, n, rate in zip(seqs, catch_up, rates)]
        plan = plan_drafts(
            rates, lengths, rows, base_tokens, self.cost, self.acceptance.realism, self.draft_cost, first_rows
        )
        return plan.lengths

    def _catch_up_rows(self, seq: SequenceState) -> int:
        """Tokens the draft model must run before its first draft for ``seq`` (the whole prompt at first)."""
        return max(1, seq.num_tokens - self._draft_synced.get(seq.request_id, 0))

    def _drafting_alone_pays(self, rate: float) -> bool:
        """Would one sequence drafting with a model at acceptance ``rate`` beat decoding alone?

        If not even the step's likeliest sequence would, a model draft is
        not tried at all: a batch makes verify rows no cheaper than draft
        passes, and a try costs the draft model the requests' whole
        contexts (at 64 chat sequences one such try cost more than a
        quarter of the run).
        """
        alone = plan_drafts([rate], [self.max_drafts], 1, 1, self.cost, self.acceptance.realism, self.draft_cost)
        return alone.predicted_speedup >= MIN_GAIN

    def _amortised(self, seq: SequenceState, catch_up: int, rate: float) -> float:
        """Catch-up rows charged to this step: the draft model runs a prompt once and drafts from it for the
        rest of the request, so a step pays its share over the verifies left (a plan charged the whole
        prompt at once would never start)."""
        if catch_up <= 1:
            return float(catch_up)
        left = seq.request.sampling.max_tokens - seq.num_output_tokens
        verifies_left = max(1.0, left / (1 + rate * self.max_drafts))
        return 1 + (catch_up - 1) / verifies_left

    def _may_speculate(self, work: ChunkWork) -> bool:
        """A decode: one new token at the end of a sequence already past its prompt."""
        return work.num_tokens == 1 and work.samples and work.seq.num_output_tokens > 0 and self._room(work.seq) > 0

    def _room(self, seq: SequenceState) -> int:
        """Drafts that cannot overshoot max_tokens or the context: the pass adds one token more than it drafts."""
        left = min(seq.request.sampling.max_tokens - seq.num_output_tokens, self.max_model_len - seq.num_tokens)
        return max(0, min(self.max_drafts, left - 1))

    def _fit(self, work: ChunkWork, drafts: list[int]) -> list[int]:
        """As many drafts as free blocks hold (never evicting), their KV slots allocated."""
        seq, block_size = work.seq, self.kv.block_size
        capacity = (len(seq.block_ids) + self.kv.pool.num_free_blocks) * block_size - work.end
        drafts = drafts[: max(0, capacity)]
        if drafts and blocks_for(work.end + len(drafts), block_size) > len(seq.block_ids):
            self.kv.allocate_for(seq, work.end + len(drafts))
        return drafts

    # ------------------------------------------------------------------ after the pass
    def settle(self, work: ChunkWork, num_emitted: int, num_appended: int) -> None:
        """A verify emitted ``num_emitted`` tokens (kept drafts + 1), of which the sequence took ``num_appended``.

        The computed KV ends at the last kept draft (or at the last token
        taken, when a stop cut the step short); blocks past it are freed.
        """
        seq = work.seq
        kept = num_emitted - 1
        if seq.request_id in self._draft_synced:  # the draft model's KV past the first rejected draft is stale
            self._draft_synced[seq.request_id] = min(self._draft_synced[seq.request_id], work.end + kept)
        seq.num_computed_tokens = work.end + min(kept, num_appended)
        self.kv.register_computed(seq)
        self.kv.truncate(seq, seq.num_computed_tokens)
        self.acceptance.record(seq.request_id, len(work.drafts), kept)
        self.num_drafted += len(work.drafts)
        self.num_kept += kept
        self.num_verifies += 1

    def accepted(self, request_id: str, token_ids: Sequence[int]) -> None:
        self.decoder.accept(request_id, token_ids)

    def end_step(self, works: Sequence[ChunkWork], seconds: float) -> None:
        """The step just run took ``seconds`` (planning to outputs): a sample for the cost model."""
        drafting = self._drafting_seconds if self.draft_cost is not None else 0.0  # modelled on its own
        self.cost.observe(sum(work.kv_end - work.start for work in works), seconds - drafting)
        self.metrics.gauge("spec_accept_rate", "share of verified draft tokens kept").set(self.accept_rate or 0.0)

    def release(self, request_id: str) -> None:
        self.decoder.release(request_id)
        self.acceptance.forget(request_id)
        self._draft_synced.pop(request_id, None)

    @property
    def accept_rate(self) -> float | None:
        return None if self.num_drafted == 0 else self.num_kept / self.num_drafted

    @property
    def mean_accepted(self) -> float | None:
        """Tokens per verify pass: kept drafts plus the target's own token."""
        return None if self.num_verifies == 0 else 1 + self.num_kept / self.num_verifies
