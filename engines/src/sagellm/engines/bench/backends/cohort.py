"""The run loop of peers without continuous batching: static cohorts.

Hugging Face ``generate`` batches a fixed set of prompts from first token
to last; llama-cpp-python's ``Llama`` runs one sequence at a time. Both are
driven the same way, which is how their users serve concurrent requests
(and how the published sageLLM wheels batch):

    due requests queue up -> the next cohort (at most ``max_batch``) runs to
    its end -> its users are freed, follow-up turns become due -> repeat

A request that arrives while a cohort runs waits for the whole cohort, so
its TTFT includes that wait -- the cost continuous batching removes.
Latency is measured from the moment each request was due, as for every
other backend.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from sagellm.engines.bench.backends.base import DEFAULT_GENERATION, GenerationOptions, TargetInfo
from sagellm.engines.bench.dispatcher import Dispatcher
from sagellm.engines.bench.peak_memory import MemoryWatermark
from sagellm.engines.bench.progress import progress_bar
from sagellm.engines.bench.prompt_resolver import PromptResolver
from sagellm.engines.bench.record import BackendStats, RequestRecord, RunOutcome
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike

IDLE_SLEEP_CAP_S = 0.05


@dataclass(slots=True)
class CohortMember:
    """One request of a cohort: what to feed, what came out, and its record."""

    record: RequestRecord
    prompt: list[int]
    max_tokens: int
    output: list[int] = field(default_factory=list)
    done: bool = False

    def take(self, token: int, now: float, eos_ids: Sequence[int], stop_at_eos: bool) -> None:
        """Count one generated token (ignored once the member is done)."""
        if self.done:
            return
        self.output.append(token)
        self.record.token_times_s.append(now)
        self.record.num_output_tokens += 1
        if stop_at_eos and token in eos_ids:
            self.done, self.record.finish_reason = True, "stop"
        elif len(self.output) >= self.max_tokens:
            self.done, self.record.finish_reason = True, "length"


class CohortBackend(ABC):
    """Shared loop; subclasses say how one cohort generates (``_generate``)."""

    def __init__(
        self,
        tokenizer: TokenizerLike,
        info: TargetInfo,
        max_batch: int,
        generation: GenerationOptions = DEFAULT_GENERATION,
        eos_token_ids: Sequence[int] = (),
        show_progress: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.info = info
        self.max_batch = max_batch
        self.generation = generation
        self.eos_token_ids = tuple(eos_token_ids)
        self.show_progress = show_progress

    @abstractmethod
    def _generate(self, cohort: list[CohortMember], now: Callable[[], float]) -> None:
        """Run the cohort until every member is done, calling ``member.take`` per token as it appears."""

    def warmup(self) -> None:
        ids = list(range(1000, 1016)) if self.tokenizer.vocab_size > 1016 else [0] * 16
        record = RequestRecord("warmup", 0.0, len(ids), 4)
        start = time.perf_counter()
        self._generate([CohortMember(record, ids, 4)], lambda: time.perf_counter() - start)

    def run(self, label: str, requests: Sequence[BenchRequest], concurrency: int | None) -> RunOutcome:
        resolver = PromptResolver(self.tokenizer, self.info.max_model_len)
        dispatcher = Dispatcher(requests, concurrency)
        batch = min(concurrency, self.max_batch) if concurrency else self.max_batch
        memory = MemoryWatermark(torch.device("cpu"))
        records: dict[str, RequestRecord] = {}
        queued: list[CohortMember] = []
        t0 = time.perf_counter()

        def now() -> float:
            return time.perf_counter() - t0

        with progress_bar(label, len(requests), self.show_progress) as bar:
            while not dispatcher.done:
                for request, due in dispatcher.due(now()):
                    queued.append(self._member(request, due, resolver, records))
                if not queued:
                    _sleep_until(dispatcher.next_time(), now())
                    continue
                cohort, queued = queued[:batch], queued[batch:]
                self._generate(cohort, now)
                memory.sample()
                end = now()
                for member in cohort:
                    member.record.end_s = end if member.record.end_s is None else member.record.end_s
                    resolver.answered(member.record.request_id, self.tokenizer.decode(member.output))
                    dispatcher.finished(member.record.request_id, end)
                    bar.update(1)
        ordered = [records[r.request_id] for r in requests if r.request_id in records]
        ends = [r.end_s for r in ordered if r.end_s is not None]
        stats = BackendStats(peak_mem_mb=memory.peak_mb)
        return RunOutcome(ordered, max(ends, default=now()), stats, resolver.num_clipped)

    def _member(
        self, request: BenchRequest, due: float, resolver: PromptResolver, records: dict[str, RequestRecord]
    ) -> CohortMember:
        prompt = resolver.resolve(request)
        record = RequestRecord(request.request_id, due, len(prompt.token_ids), prompt.max_tokens, tag=request.tag)
        records[request.request_id] = record
        return CohortMember(record, list(prompt.token_ids), prompt.max_tokens)

    def _take_all(self, cohort: list[CohortMember], tokens: Sequence[int], now: float) -> None:
        """One generated token per member (a batched step), in cohort order."""
        for member, token in zip(cohort, tokens):
            member.take(int(token), now, self.eos_token_ids, not self.generation.ignore_eos)


def _sleep_until(when: float | None, now: float) -> None:
    wait = IDLE_SLEEP_CAP_S if when is None else when - now
    if wait > 0:
        time.sleep(min(wait, IDLE_SLEEP_CAP_S))
