"""LLMEngine: add requests, call ``step()``, get tokens back.

A step is three moves, as in nano-vllm: the IR builder plans, the runner
computes, the output processor samples and checks stops. Everything
pluggable (pool, prefix index, eviction, scheduling policy) arrives through
the constructor, built by :mod:`sagellm.engines.engine.builder` from config.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from sagellm.core.errors import (
    InvalidRequestError,
    OutOfBlocksError,
    PlanError,
    ServerOverloadedError,
)
from sagellm.core.metrics import MetricsRegistry
from sagellm.core.protocols import CoTAccelerator, IRBuilder, SpeculativeDecoder
from sagellm.core.types import (
    ExecutionPlan,
    Request,
    SamplingParams,
    ScheduledChunk,
    SchedulerState,
    SequenceState,
    SequenceStatus,
    SequenceView,
    StepOutput,
)
from sagellm.engines.engine.cot_driver import CoTDriver
from sagellm.engines.engine.engine_load import EngineLoad
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.engine.request_checks import check_context_length, check_prompt_ids
from sagellm.engines.engine.speculation import Speculator
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.engine.stop_checker import check_stop
from sagellm.engines.model.config import ModelConfig
from sagellm.engines.runtime.grammar import GrammarBackend, GrammarMatcher, GrammarSpec, LLGuidanceBackend, grammar_of
from sagellm.engines.runtime.input_batch import ChunkWork
from sagellm.engines.runtime.kv_manager import KVManager
from sagellm.engines.runtime.kv_view import StepKVView
from sagellm.engines.runtime.model_runner import ModelRunner
from sagellm.engines.runtime.sampler import SampledToken, Sampler
from sagellm.engines.tokenizer import IncrementalDetokenizer, Tokenizer

TIER_COUNTER_HELP = {
    "swap_out": "sequences preempted by swapping their KV to the host tier",
    "swap_out_blocks": "KV blocks swapped out to the host tier",
    "swap_out_bytes": "KV bytes swapped out to the host tier",
    "swap_in": "swapped-out sequences resumed with their KV swapped back in",
    "swap_in_blocks": "KV blocks swapped back in from the host tier",
    "swap_in_bytes": "KV bytes swapped back in from the host tier",
    "swap_discarded_blocks": "swapped KV blocks freed unused (their prefix left the cache meanwhile)",
    "kv_demoted_blocks": "cached prefix blocks demoted to a lower tier instead of dropped",
    "kv_promoted_blocks": "demoted prefix blocks promoted back to the device on a hit",
    "kv_promotion_missed_blocks": "lower-tier hit blocks treated as misses (no device room to promote)",
    "kv_lower_dropped_blocks": "demoted prefix blocks dropped from a full lowest tier",
    "kv_migrations": "KV migrations between tiers (swaps, demotions, promotions; each waited for)",
    "kv_migration_wait_seconds": "seconds the engine waited for KV migrations",
}


@dataclass(slots=True)
class _Tracked:
    seq: SequenceState
    detokenizer: IncrementalDetokenizer
    num_chars_sent: int = 0  # of detokenizer.text; the rest may still turn out to begin a stop string
    first_token_time: float | None = None
    last_token_time: float | None = None  # SLO-aware schedulers judge TPOT deadlines from it


class LLMEngine:
    def __init__(
        self,
        model_config: ModelConfig,
        tokenizer: Tokenizer,
        runner: ModelRunner,
        kv: KVManager,
        ir_builder: IRBuilder,
        max_model_len: int,
        max_waiting: int = 1024,
        max_num_seqs: int = 64,
        metrics: MetricsRegistry | None = None,
        model_name: str = "",
        speculative_decoder: SpeculativeDecoder | None = None,
        num_speculative_tokens: int = 4,
        step_costs: Mapping[int, float] | None = None,
        draft_cost: StepCostModel | None = None,
        draft_agreement: float | None = None,
        cot_accelerator: CoTAccelerator | None = None,
    ) -> None:
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.runner = runner
        self.kv = kv
        self.ir_builder = ir_builder
        self.max_model_len = max_model_len
        self.max_waiting = max_waiting
        self.model_name = model_name or model_config.name
        self.metrics = metrics or MetricsRegistry()
        self.sampler = Sampler()
        self._matchers: dict[str, GrammarMatcher] = {}  # requests whose output must match a grammar
        self._grammar_backend: GrammarBackend | None = None  # built by the first such request (~0.6 s)
        self._tracked: dict[str, _Tracked] = {}
        self._running: list[SequenceState] = []
        self._waiting: list[SequenceState] = []  # kept in arrival order
        self._ids = itertools.count()
        self.max_num_seqs = max_num_seqs  # bounds how many waiting requests each snapshot peeks at
        self.speculator = (
            None
            if speculative_decoder is None
            else Speculator(
                speculative_decoder,
                num_speculative_tokens,
                kv,
                max_model_len,
                self.metrics,
                StepCostModel(step_costs),
                draft_cost,
                draft_agreement,
            )
        )
        # Probes, budgets and self-consistency for requests that ask (add_request's ``reasoning``).
        self.cot = None if cot_accelerator is None else CoTDriver(cot_accelerator, self)

    # ------------------------------------------------------------------ requests
    def add_request(
        self,
        prompt: str | Sequence[int],
        sampling: SamplingParams | None = None,
        request_id: str | None = None,
        priority: int = 0,
        reasoning: ReasoningOptions | None = None,
    ) -> str:
        """Queue a prompt (text or token ids); returns its request id.

        The waiting queue is bounded (``max_waiting``) so an overloaded server
        sheds load with ServerOverloadedError (HTTP 429) instead of queueing
        without limit; requests already running do not count against it.
        ``reasoning`` needs a configured CoT accelerator; a budget's prompt is
        the caller's to write (``cot.budget_prompt``), where it has the text.
        """
        if reasoning is not None and self.cot is None:
            raise InvalidRequestError("this engine has no chain-of-thought accelerator (cot_acceleration is 'none')")
        if len(self._waiting) >= self.max_waiting:
            raise ServerOverloadedError(f"the waiting queue is full ({self.max_waiting} requests); retry later")
        sampling = sampling or SamplingParams()
        token_ids = self._tokenize(prompt)
        request_id = request_id or f"req-{next(self._ids)}"
        if request_id in self._tracked or (self.cot is not None and self.cot.in_use(request_id)):
            raise InvalidRequestError(f"request id {request_id!r} is already in use")
        self._check_length(len(token_ids), sampling.max_tokens)
        matcher = self._grammar_matcher(grammar_of(sampling))
        request = Request(request_id, tuple(token_ids), sampling, time.monotonic(), priority, self.model_name)
        seq = SequenceState(request)
        self._tracked[request_id] = _Tracked(seq, IncrementalDetokenizer(self.tokenizer, token_ids))
        self._waiting.append(seq)
        if matcher is not None:
            self._matchers[request_id] = matcher
        if reasoning is not None and self.cot is not None:
            self.cot.track(seq, reasoning)
        self.metrics.counter("requests_total", "requests received").inc()
        return request_id

    def abort_request(self, request_id: str) -> bool:
        """Stop a request and free its KV blocks at once; False if it is unknown or done."""
        started = self.cot is not None and self.cot.abort(request_id)  # its probes and samples
        if not self.drop(request_id) and not started:
            return False
        self.metrics.counter("requests_aborted_total", "requests aborted").inc()
        return True

    def has_unfinished(self) -> bool:
        return bool(self._running or self._waiting)

    def check_health(self) -> None:
        """Nothing to check while idle: a tensor-parallel rank that died fails the next step instead."""

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def load(self) -> EngineLoad:
        """The gauges a server publishes; reads state ``step`` and abort change, so only the stepping thread."""
        kv = self.kv
        return EngineLoad(
            num_running=len(self._running),
            num_waiting=len(self._waiting),
            kv_total_blocks=kv.pool.layout.num_blocks,
            kv_free_blocks=kv.num_free_blocks,
            prefix_hit_rate=kv.hit_rate(),
        )

    # ---------------------------------------------------------------------- step
    def step(self) -> list[StepOutput]:
        started = time.perf_counter()
        state, view = self._snapshot()
        works = self._apply(self.ir_builder.build(state, view))
        if self.speculator is not None and works:
            works = self._add_drafts(works)
        outputs = self._run(works) if works else []
        if self.speculator is not None and works:
            self.speculator.end_step(works, time.perf_counter() - started)
        if self.cot is not None:
            outputs = self.cot.process(outputs)
        self._record_step(works)
        return outputs

    def _run(self, works: list[ChunkWork]) -> list[StepOutput]:
        logits, _ = self.runner.execute(works)
        for work in works:
            if not work.drafts:  # a verify's computed KV ends where its drafts stop being kept
                work.seq.num_computed_tokens = work.end
                self.kv.register_computed(work.seq)  # before finishing: a finished prompt's KV is still reusable
        if self.cot is not None:
            self.cot.after_compute()  # forks now share KV that reaches every token
        sampling = [work for work in works if work.samples]
        tokens = self._sample(logits, sampling)
        return [self._process(work, emitted) for work, emitted in zip(sampling, tokens)]

    def _sample(self, logits: torch.Tensor, works: list[ChunkWork]) -> list[list[SampledToken]]:
        """Each sampling chunk's new tokens: one for a plain chunk (sampled as one batch), kept drafts + 1 for a
        verify."""
        starts = list(itertools.accumulate((w.num_logits_rows for w in works), initial=0))
        plain = [i for i, work in enumerate(works) if not work.drafts]
        tokens: list[list[SampledToken]] = [[] for _ in works]
        if plain:
            rows = logits if len(plain) == len(works) else logits[[starts[i] for i in plain]]
            seqs = [works[i].seq for i in plain]
            for i, token in zip(plain, self.sampler.sample(rows, seqs, self._grammar_masks(seqs, rows.shape[-1]))):
                tokens[i] = [token]
        assert self.speculator is not None or len(plain) == len(works)
        for i, work in enumerate(works):
            if work.drafts and self.speculator is not None:
                rows = logits[starts[i] : starts[i + 1]]
                tokens[i] = self.sampler.verify(rows, work.seq, work.drafts, self.speculator.decoder.verify)
        return tokens

    def _snapshot(self) -> tuple[SchedulerState, StepKVView]:
        # Builders admit at most max_num_seqs - running themselves; a window of at least max_num_seqs waiting
        # requests lets priority/SLO policies reorder, while peeking the prefix cache for each stays bounded.
        window = self._waiting[: self.max_num_seqs]
        running = self._running if self.cot is None else self.cot.schedulable(self._running)
        view = StepKVView(self.kv, {seq.request_id: seq for seq in window}, {seq.request_id: seq for seq in running})
        state = SchedulerState(
            running=tuple(self._view(seq, 0) for seq in running),
            waiting=tuple(self._view(seq, self.kv.peek_cached_tokens(seq)) for seq in window),
            num_free_blocks=view.num_free_blocks,
            block_size=view.block_size,
            now=time.monotonic(),
        )
        return state, view

    def _view(self, seq: SequenceState, cached: int) -> SequenceView:
        return SequenceView(
            request_id=seq.request_id,
            num_tokens=seq.num_tokens,
            num_computed_tokens=seq.num_computed_tokens,
            num_blocks_held=len(seq.block_ids),
            arrival_time=seq.request.arrival_time,
            priority=seq.request.priority,
            num_cached_tokens=cached,
            num_prompt_tokens=seq.num_prompt_tokens,
            max_tokens=seq.request.sampling.max_tokens,
            last_token_time=self._tracked[seq.request_id].last_token_time,
        )

    def _apply(self, plan: ExecutionPlan) -> list[ChunkWork]:
        """Preempt (swap or recompute, as the plan says), allocate for running chunks, then admit.

        The builder priced every chunk with this step's KV view, so each
        allocation and admission fits; one that does not is a PlanError
        (a bug in the builder or the view), never a silent change of plan.
        Running sequences grow before admissions so that an eviction their
        growth needs can only shorten a later admission's hit, which costs
        the same blocks either way.
        """
        for request_id in plan.preempted:
            self._preempt(self._tracked[request_id].seq, swap=request_id in plan.swapped_out)
        admitted = set(plan.admitted)
        works: list[ChunkWork] = []
        for chunk in sorted(plan.chunks, key=lambda c: c.request_id in admitted):
            seq = self._tracked[chunk.request_id].seq
            works.append(self._admit(seq, chunk) if chunk.request_id in admitted else self._grow(seq, chunk))
        return works

    def _grow(self, seq: SequenceState, chunk: ScheduledChunk) -> ChunkWork:
        if chunk.start != seq.num_computed_tokens:
            raise PlanError(
                f"{seq.request_id}: chunk starts at {chunk.start}, its KV ends at {seq.num_computed_tokens}"
            )
        try:
            self.kv.allocate_for(seq, chunk.start + chunk.num_tokens)
        except OutOfBlocksError as exc:
            raise PlanError(f"{seq.request_id}: the plan's chunk does not fit ({exc})") from exc
        return ChunkWork(seq, chunk.start, chunk.num_tokens)

    def _admit(self, seq: SequenceState, chunk: ScheduledChunk) -> ChunkWork:
        if self.kv.admit(seq, chunk.num_tokens) is None:
            raise PlanError(f"{seq.request_id}: admission does not fit the blocks the plan priced it at")
        # The KV's end: the planned start, or earlier if this step's evictions shortened the hit (same blocks).
        start = seq.num_computed_tokens
        num_tokens = min(chunk.num_tokens, seq.num_tokens - start)
        try:
            self.kv.allocate_for(seq, start + num_tokens)
        except OutOfBlocksError as exc:
            self.kv.release(seq)
            raise PlanError(f"{seq.request_id}: the admitted chunk does not fit ({exc})") from exc
        self._waiting.remove(seq)
        self._running.append(seq)
        seq.status = SequenceStatus.RUNNING
        return ChunkWork(seq, start, num_tokens)

    def _preempt(self, seq: SequenceState, swap: bool = False) -> None:
        """Back to waiting (queued by arrival), its device blocks freed; the tokens stay.

        ``swap``: move its private KV to the host tier, to be swapped back in
        on readmission; without a host tier, or without room there, the KV
        is dropped and recomputed (its cached blocks survive in either case).
        """
        if seq in self._running:
            self._running.remove(seq)
        if (self.kv.swap_out(seq) if swap else None) is None:
            if swap and self.kv.can_swap:
                self.metrics.counter("swap_fallback_total", "swap preemptions that recomputed (no host room)").inc()
            self.kv.release(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        keys = [s.request.arrival_time for s in self._waiting]
        self._waiting.insert(bisect.bisect_right(keys, seq.request.arrival_time), seq)
        self.metrics.counter("preemptions_total", "sequences preempted (recompute or swap)").inc()

    def _process(self, work: ChunkWork, emitted: list[SampledToken]) -> StepOutput:
        """Append the step's tokens to the sequence, up to the first that ends it; one output for all of them."""
        seq = work.seq
        tracked = self._tracked[seq.request_id]
        now = time.monotonic()
        if tracked.first_token_time is None:
            tracked.first_token_time = now
            self.metrics.histogram("ttft_seconds", "time to first token").observe(now - seq.request.arrival_time)
        tracked.last_token_time = now
        taken: list[SampledToken] = []
        matcher = self._matchers.get(seq.request_id)
        for token in emitted:
            taken.append(token)
            if matcher is not None:
                matcher.accept(token.token_id)
            seq.token_ids.append(token.token_id)
            delta = tracked.detokenizer.push(token.token_id)
            decision = check_stop(
                seq, token.token_id, delta, tracked.detokenizer.text, self.tokenizer.eos_token_ids, self.max_model_len
            )
            if decision.finish_reason is not None:
                break
        new_text = tracked.detokenizer.text[tracked.num_chars_sent : decision.text_end]
        tracked.num_chars_sent = max(tracked.num_chars_sent, decision.text_end)
        if self.speculator is not None:
            if work.drafts:
                self.speculator.settle(work, len(emitted), len(taken))
            self.speculator.accepted(seq.request_id, [token.token_id for token in taken])
        if decision.finish_reason is not None:
            self._finish(seq, decision.finish_reason)
        return StepOutput(
            request_id=seq.request_id,
            new_token_ids=tuple(token.token_id for token in taken),
            new_text=new_text,
            finish_reason=decision.finish_reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            num_cached_tokens=seq.num_cached_tokens,
            logprobs=None if taken[0].logprob is None else tuple(t.logprob or 0.0 for t in taken),
            top_logprobs=tuple(t.top_logprobs for t in taken) if taken[0].top_logprobs else None,
        )

    def _finish(self, seq: SequenceState, reason: str) -> None:
        seq.status = SequenceStatus.FINISHED_STOPPED if reason == "stop" else SequenceStatus.FINISHED_LENGTH
        self._running.remove(seq)
        self.kv.release(seq)
        self._tracked.pop(seq.request_id, None)
        self._forget(seq.request_id)
        if self.cot is None or not self.cot.is_internal(seq.request_id):
            self.metrics.counter("requests_finished_total", "requests finished").inc()

    # ------------------------------------------------------------ forks (the CoT driver's ReasoningHost)
    def spawn(self, seq: SequenceState) -> None:
        """Run a forked sequence (its KV already shared): straight into the running batch, no admission."""
        self._tracked[seq.request_id] = _Tracked(
            seq, IncrementalDetokenizer(self.tokenizer, seq.token_ids), first_token_time=time.monotonic()
        )
        seq.status = SequenceStatus.RUNNING
        self._running.append(seq)

    def drop(self, request_id: str) -> bool:
        """Stop a sequence and free its KV, emitting nothing; False if it is unknown or done."""
        tracked = self._tracked.pop(request_id, None)
        if tracked is None:
            return False
        self._unlist(tracked.seq)
        self.kv.release(tracked.seq)
        tracked.seq.status = SequenceStatus.FINISHED_ABORTED
        self._forget(request_id)
        return True

    def end(self, request_id: str) -> None:
        """Finish a sequence now ("stop") and free its KV; its last output is the caller's to send."""
        tracked = self._tracked.get(request_id)
        if tracked is not None:
            if tracked.seq not in self._running:  # preempted while its probe ran
                self._unlist(tracked.seq)
                self._running.append(tracked.seq)
            self._finish(tracked.seq, "stop")

    def generated_text(self, request_id: str) -> str:
        return self._tracked[request_id].detokenizer.text

    def _unlist(self, seq: SequenceState) -> None:
        if seq in self._running:
            self._running.remove(seq)
        elif seq in self._waiting:
            self._waiting.remove(seq)

    def _forget(self, request_id: str) -> None:
        self._matchers.pop(request_id, None)
        if self.speculator is not None:
            self.speculator.release(request_id)

    # -------------------------------------------------------- structured output
    def _grammar_matcher(self, grammar: GrammarSpec | None) -> GrammarMatcher | None:
        """A fresh matcher for a constrained request (InvalidRequestError for a bad grammar, before it queues)."""
        if grammar is None:
            return None
        if self._grammar_backend is None:
            self._grammar_backend = LLGuidanceBackend(self.tokenizer)
        return self._grammar_backend.matcher(grammar)

    def _grammar_masks(self, seqs: list[SequenceState], width: int) -> list[torch.Tensor | None]:
        """Each row's additive grammar mask (None: unconstrained); empty when no request has a grammar."""
        if not self._matchers:
            return []
        matchers = [self._matchers.get(seq.request_id) for seq in seqs]
        return [None if matcher is None else matcher.mask(width) for matcher in matchers]

    def _add_drafts(self, works: list[ChunkWork]) -> list[ChunkWork]:
        """The speculator's drafts, for unconstrained requests only.

        A constrained request does not speculate: its drafts would have to be
        masked position by position during verification (a mask per draft,
        computed on matcher copies). Left out, it decodes one token a step
        beside the speculating ones, and verify never sees a grammar.
        """
        assert self.speculator is not None
        if not self._matchers:
            return self.speculator.add_drafts(works)
        free = [i for i, work in enumerate(works) if work.seq.request_id not in self._matchers]
        merged = list(works)
        for i, work in zip(free, self.speculator.add_drafts([works[i] for i in free])):
            merged[i] = work
        return merged

    def _record_step(self, works: list[ChunkWork]) -> None:
        # what ran, not what the plan asked for: admissions the device could not take yet did not run
        self.metrics.counter("generation_tokens_total", "tokens computed").inc(sum(w.num_tokens for w in works))
        self.metrics.gauge("num_running", "running sequences").set(len(self._running))
        self.metrics.gauge("num_waiting", "waiting sequences").set(len(self._waiting))
        self.metrics.gauge("kv_free_blocks", "free + evictable KV blocks").set(self.kv.num_free_blocks)
        self.metrics.gauge("prefix_hit_rate", "prefix cache hit rate").set(self.kv.hit_rate())
        for name, value in self.kv.counters.items():  # mirror the KV manager's tier counters
            counter = self.metrics.counter(f"{name}_total", TIER_COUNTER_HELP.get(name, ""))
            counter.inc(value - counter.value)

    # -------------------------------------------------------------- validation
    def _tokenize(self, prompt: str | Sequence[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise InvalidRequestError("prompt must not be empty")
            return self.tokenizer.encode(prompt)
        return check_prompt_ids(prompt, self.model_config.vocab_size)

    def _check_length(self, num_prompt: int, max_tokens: int) -> None:
        layout = self.kv.pool.layout
        check_context_length(num_prompt, max_tokens, self.max_model_len, self.kv.block_size, layout.num_blocks)
