"""The in-process target: drives an :class:`LLMEngine`'s ``add_request``/``step`` loop itself.

No server, no HTTP, no threads: the loop adds whatever the dispatcher says
is due, runs one engine step, and stamps every token the step produced
with the time the step returned -- the earliest moment any client could
have seen it. Each run gets a fresh engine around the already-loaded model
(empty prefix cache, zeroed counters), so runs do not warm each other up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import SageLLMError
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines.bench.backends.base import DEFAULT_GENERATION, GenerationOptions, TargetInfo
from sagellm.engines.bench.dispatcher import Dispatcher
from sagellm.engines.bench.peak_memory import MemoryWatermark, release_freed_memory
from sagellm.engines.bench.progress import progress_bar
from sagellm.engines.bench.prompt_resolver import PromptResolver
from sagellm.engines.bench.record import BackendStats, RequestRecord, RunOutcome
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.engine.builder import DTYPE_NAMES, assemble_engine
from sagellm.engines.engine.llm_engine import LLMEngine

IDLE_SLEEP_CAP_S = 0.05  # an idle loop re-checks arrivals at least this often


class EngineBackend:
    def __init__(
        self,
        engine: LLMEngine,
        config: SageLLMConfig,
        generation: GenerationOptions = DEFAULT_GENERATION,
        show_progress: bool = False,
    ) -> None:
        """``engine``: an engine whose model is reused; every run assembles a fresh one around it.

        Only the model and tokenizer are kept, not ``engine`` itself, so its KV
        pool (1 GiB by default) is freed once the caller lets go of it.
        """
        self._model = engine.runner.model
        self.config = config
        self.generation = generation
        self.show_progress = show_progress
        self.tokenizer = engine.tokenizer
        self.device: torch.device = engine.runner.device
        self.info = _target_info(engine, config)

    @classmethod
    def from_config(
        cls, config: SageLLMConfig, generation: GenerationOptions = DEFAULT_GENERATION, show_progress: bool = False
    ) -> EngineBackend:
        from sagellm.engines import LLM

        llm = LLM(config=config, show_progress=None if show_progress else False)  # None: a bar only on a terminal
        return cls(llm.engine, config, generation, show_progress)

    def warmup(self) -> None:
        engine = self._fresh_engine()
        ids = list(range(1000, 1016)) if self.tokenizer.vocab_size > 1016 else [0] * 16
        engine.add_request(ids, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
        while engine.has_unfinished():
            engine.step()

    def run(self, label: str, requests: Sequence[BenchRequest], concurrency: int | None) -> RunOutcome:
        engine = self._fresh_engine()
        memory = MemoryWatermark(self.device)
        with progress_bar(label, len(requests), self.show_progress) as bar:
            loop = _EngineLoop(engine, requests, concurrency, self.generation, lambda: bar.update(1), memory)
            duration = loop.run()
        stats = BackendStats(
            kv_hit_rate=engine.kv.hit_rate() if engine.kv.prefix_caching else None,
            evict_count=engine.kv.num_evictions,
            preemptions=int(engine.metrics.counter("preemptions_total").value),
            peak_mem_mb=memory.peak_mb,
            spec_accept_rate=engine.speculator.accept_rate if engine.speculator is not None else None,
        )
        return RunOutcome(loop.records(), duration, stats, loop.resolver.num_clipped)

    def _fresh_engine(self) -> LLMEngine:
        release_freed_memory()  # the previous run's engine and its KV pool
        return assemble_engine(self.config, self._model, self.tokenizer)


class _EngineLoop:
    """One run's state: the dispatcher, the live records, the conversation history."""

    def __init__(
        self,
        engine: LLMEngine,
        requests: Sequence[BenchRequest],
        concurrency: int | None,
        generation: GenerationOptions,
        on_finish: Callable[[], object],
        memory: MemoryWatermark,
    ) -> None:
        self.engine = engine
        self.on_finish = on_finish
        self.memory = memory
        self.generation = generation
        self.dispatcher = Dispatcher(requests, concurrency)
        self.resolver = PromptResolver(engine.tokenizer, engine.max_model_len)
        self._records: dict[str, RequestRecord] = {}
        self._texts: dict[str, str] = {}
        self._order = [r.request_id for r in requests]
        self._t0 = 0.0

    def run(self) -> float:
        """Run every request to the end; returns the run's duration (first arrival to last token)."""
        self._t0 = time.perf_counter()
        while not self.dispatcher.done:
            for request, due in self.dispatcher.due(self._now()):
                self._add(request, due)
            if self.engine.has_unfinished():
                outputs = self.engine.step()
                now = self._now()
                self.memory.sample()
                for output in outputs:
                    self._observe(output, now)
            elif not self.dispatcher.done:
                self._idle()
        ends = [r.end_s for r in self._records.values() if r.end_s is not None]
        return max(ends, default=self._now())

    def records(self) -> list[RequestRecord]:
        return [self._records[rid] for rid in self._order if rid in self._records]

    def _add(self, request: BenchRequest, due: float) -> None:
        prompt = self.resolver.resolve(request)
        record = RequestRecord(request.request_id, due, len(prompt.token_ids), prompt.max_tokens, tag=request.tag)
        self._records[request.request_id] = record
        self._texts[request.request_id] = ""
        sampling = SamplingParams(
            max_tokens=prompt.max_tokens,
            temperature=self.generation.temperature,
            ignore_eos=self.generation.ignore_eos,
        )
        try:
            self.engine.add_request(prompt.token_ids, sampling, request_id=request.request_id)
        except SageLLMError as exc:  # too long for the pool, queue full: the request failed, the run goes on
            record.error = f"{type(exc).__name__}: {exc}"
            self._finish(record, self._now())

    def _observe(self, output: StepOutput, now: float) -> None:
        record = self._records[output.request_id]
        if output.new_token_ids:
            record.token_times_s.append(now)
            record.num_output_tokens += len(output.new_token_ids)
        record.num_cached_tokens = output.num_cached_tokens
        self._texts[output.request_id] += output.new_text
        if output.finished:
            record.finish_reason = output.finish_reason
            self._finish(record, now)

    def _finish(self, record: RequestRecord, now: float) -> None:
        record.end_s = now
        self.resolver.answered(record.request_id, self._texts.pop(record.request_id, ""))
        self.dispatcher.finished(record.request_id, now)
        self.on_finish()

    def _idle(self) -> None:
        """Nothing to compute: sleep until the next arrival (never past the cap, never busy-wait)."""
        upcoming = self.dispatcher.next_time()
        wait = IDLE_SLEEP_CAP_S if upcoming is None else upcoming - self._now()
        if wait > 0:
            time.sleep(min(wait, IDLE_SLEEP_CAP_S))

    def _now(self) -> float:
        return time.perf_counter() - self._t0


def _target_info(engine: LLMEngine, config: SageLLMConfig) -> TargetInfo:
    layout = engine.kv.pool.layout
    device = engine.runner.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return TargetInfo(
        backend="engine",
        model=engine.model_name,
        device=f"{device} ({name})" if device.type == "cuda" else "cpu",
        dtype=DTYPE_NAMES.get(engine.runner.model.dtype, str(engine.runner.model.dtype)),
        max_model_len=config.model.max_model_len or engine.model_config.max_position_embeddings,
        world_size=config.collective_ops.world_size,
        settings={
            "model_path": config.model.path or "(embedded default)",
            "threads": torch.get_num_threads(),
            "block_size": layout.block_size,
            "num_blocks": layout.num_blocks,
            "prefix_cache": config.prefix_cache.implementation if config.prefix_cache.enabled else None,
            "eviction_policy": config.eviction_policy.implementation if config.prefix_cache.enabled else None,
            "scheduler": config.scheduler_ir.implementation,
            "max_num_seqs": config.scheduler_ir.max_num_seqs,
            "max_num_batched_tokens": config.scheduler_ir.max_num_batched_tokens,
        },
        model_config=engine.model_config,
    )
