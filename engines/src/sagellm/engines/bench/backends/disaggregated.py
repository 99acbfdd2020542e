"""The disaggregated engine as a benchmark target (the bench's ``Backend`` shape).

Same timing rules as the in-process engine backend: latency runs from
the moment a request was due, and a token counts as seen when its event
reaches the coordinator -- the caller's process, where a client would be.
Requests must carry token ids (traces, synthetic); chat prompts need a
tokenizer here, which this coordinator deliberately does not load.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sagellm.core.errors import NotSupportedError
from sagellm.core.types import SamplingParams
from sagellm.engines.bench.backends.base import DEFAULT_GENERATION, GenerationOptions, TargetInfo
from sagellm.engines.bench.dispatcher import Dispatcher
from sagellm.engines.bench.prompt_resolver import clip_to_context
from sagellm.engines.bench.record import BackendStats, RequestRecord, RunOutcome
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.disagg.coordinator import PDCoordinator
from sagellm.engines.disagg.messages import DECODE, PREFILL, DecodeStep, FirstToken, WorkerFailed

IDLE_WAIT_CAP_S = 0.05


@dataclass(frozen=True, slots=True)
class VocabOnly:
    """Enough of a tokenizer for workloads made of random token ids."""

    vocab_size: int

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise NotSupportedError("the disaggregated benchmark backend replays token ids only")

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return ""

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        raise NotSupportedError("the disaggregated benchmark backend replays token ids only")


class DisaggBackend:
    def __init__(self, coordinator: PDCoordinator, generation: GenerationOptions = DEFAULT_GENERATION) -> None:
        self.coordinator = coordinator
        self.generation = generation
        decode, prefill = coordinator.info[DECODE], coordinator.info[PREFILL]
        self.max_model_len = int(decode["max_model_len"])
        self.tokenizer = VocabOnly(int(decode["vocab_size"]))
        self.info = TargetInfo(
            backend="engine-pd",
            model=str(decode["model"]),
            device="cpu",
            dtype=str(decode["dtype"]),
            max_model_len=self.max_model_len,
            settings={
                "prefill_threads": prefill["threads"],
                "decode_threads": decode["threads"],
                "block_size": decode["block_size"],
                "num_blocks": decode["num_blocks"],
                "kv_transfer": coordinator.config.kv_transfer.implementation,
            },
        )
        self.last_worker_stats: dict[str, dict[str, Any]] = {}

    def warmup(self) -> None:
        ids = tuple(range(1000, 1040)) if self.tokenizer.vocab_size > 1040 else (0,) * 40
        self.run("warmup", [BenchRequest("warmup", 4, ids)], None)

    def run(self, label: str, requests: Sequence[BenchRequest], concurrency: int | None) -> RunOutcome:
        """One run from a cold start, as the engine backend's fresh engine per run: the workers reset
        (empty pools and prefix caches, zeroed counters), so no run finds another's prompts cached."""
        self.coordinator.reset()
        loop = _Loop(self, requests, concurrency)
        duration = loop.run()
        self.last_worker_stats = self.coordinator.stats(reset=True)
        decode = self.last_worker_stats.get(DECODE, {})
        stats = BackendStats(kv_hit_rate=None, preemptions=decode.get("preemptions"))
        return RunOutcome(loop.records(), duration, stats, loop.num_clipped)


class _Loop:
    def __init__(self, backend: DisaggBackend, requests: Sequence[BenchRequest], concurrency: int | None) -> None:
        self.backend = backend
        self.coordinator = backend.coordinator
        self.dispatcher = Dispatcher(requests, concurrency)
        self.num_clipped = 0
        self._records: dict[str, RequestRecord] = {}
        self._order = [r.request_id for r in requests]
        self._t0 = 0.0

    def run(self) -> float:
        self._t0 = time.perf_counter()
        while not self.dispatcher.done:
            for request, due in self.dispatcher.due(self._now()):
                self._submit(request, due)
            upcoming = self.dispatcher.next_time()
            wait = IDLE_WAIT_CAP_S if upcoming is None else min(IDLE_WAIT_CAP_S, max(0.0, upcoming - self._now()))
            for event in self.coordinator.poll(timeout=wait):
                self._observe(event, self._now())
        ends = [r.end_s for r in self._records.values() if r.end_s is not None]
        return max(ends, default=self._now())

    def records(self) -> list[RequestRecord]:
        return [self._records[rid] for rid in self._order if rid in self._records]

    def _submit(self, request: BenchRequest, due: float) -> None:
        if request.is_chat:
            raise NotSupportedError("the disaggregated benchmark backend replays token ids only")
        prompt = clip_to_context(list(request.prompt_token_ids), request.max_tokens, self.backend.max_model_len, False)
        self.num_clipped += prompt.clipped
        self._records[request.request_id] = RequestRecord(
            request.request_id, due, len(prompt.token_ids), prompt.max_tokens, num_cached_tokens=0, tag=request.tag
        )
        generation = self.backend.generation
        sampling = SamplingParams(
            max_tokens=prompt.max_tokens, temperature=generation.temperature, ignore_eos=generation.ignore_eos
        )
        self.coordinator.submit(request.request_id, tuple(prompt.token_ids), sampling)

    def _observe(self, event: object, now: float) -> None:
        if isinstance(event, FirstToken):
            self._tokens(event.request_id, 1, now, event.finish_reason)
        elif isinstance(event, DecodeStep):
            for output in event.outputs:
                self._tokens(output.request_id, len(output.new_token_ids), now, output.finish_reason)
        elif isinstance(event, WorkerFailed) and event.request_id in self._records:
            record = self._records[event.request_id]
            record.error = event.error
            self._finish(record, now)

    def _tokens(self, request_id: str, num_tokens: int, now: float, finish_reason: str | None) -> None:
        record = self._records.get(request_id)
        if record is None or record.end_s is not None:
            return
        if num_tokens:
            record.token_times_s.append(now)
            record.num_output_tokens += num_tokens
        if finish_reason is not None:
            record.finish_reason = finish_reason
            self._finish(record, now)

    def _finish(self, record: RequestRecord, now: float) -> None:
        record.end_s = now
        self.dispatcher.finished(record.request_id, now)

    def _now(self) -> float:
        return time.perf_counter() - self._t0
