"""DisaggregatedEngine: prefill and decode workers behind the server, as one engine.

``sagellm serve --disaggregated`` puts this where the colocated
``LLMEngine`` would be (it is a :class:`~sagellm.engines.server.served_engine.ServedEngine`).
It computes nothing: ``add_request`` hands a job to the prefill worker,
``step`` collects what both workers produced since the last call, and
``abort_request`` tells the worker that holds the request to drop it::

    server engine thread ── add_request ──► PDCoordinator ──► prefill worker ─KV─► decode worker
                         ◄── step() ◄── FirstToken / DecodeStep events ◄──────────────┘

A request is *waiting* until its first token arrives, then *running* in
the decode worker. A worker that dies raises WorkerError (an
EngineDeadError) from ``step``, and the server exits.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import InvalidRequestError, ServerOverloadedError
from sagellm.core.metrics import MetricsRegistry
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines.disagg.coordinator import PDCoordinator
from sagellm.engines.disagg.messages import DECODE, PREFILL, DecodeStep, FirstToken, WorkerFailed
from sagellm.engines.disagg.remote_workers import RemoteWorkers
from sagellm.engines.disagg.step_outputs import step_outputs
from sagellm.engines.engine.engine_load import EngineLoad
from sagellm.engines.engine.request_checks import check_context_length, check_prompt_ids
from sagellm.engines.model.tokenizer_loader import load_tokenizer

logger = logging.getLogger(__name__)

POLL_S = 0.005  # step() waits this long for an event: the longest a new request waits behind a quiet step


@dataclass(slots=True)
class _InFlight:
    phase: str  # PREFILL until the first token arrives, then DECODE
    num_prompt_tokens: int


class DisaggregatedEngine:
    """Two worker processes (see ``PDCoordinator``) served as one engine; ``close`` stops them."""

    def __init__(
        self,
        config: SageLLMConfig,
        *,
        prefill_threads: int = 1,
        decode_threads: int = 1,
        remote: RemoteWorkers | None = None,
    ) -> None:
        # Before the workers: a bad path or template fails fast.
        self.tokenizer = load_tokenizer(config.model.path, config.model.chat_template)
        self.coordinator = PDCoordinator(
            config, prefill_threads=prefill_threads, decode_threads=decode_threads, remote=remote
        )
        info = self.coordinator.info[DECODE]
        self.model_name: str = info["model"]
        self.max_model_len: int = info["max_model_len"]
        self.max_waiting = config.scheduler_ir.max_waiting
        self.metrics = MetricsRegistry()
        self._vocab_size: int = info["vocab_size"]
        self._pools = {role: self.coordinator.info[role] for role in (PREFILL, DECODE)}
        self._requests: dict[str, _InFlight] = {}
        self._kv_free_blocks: int = info["num_blocks"]
        self._prefix_hit_rate = 0.0
        self._ids = itertools.count()

    def close(self) -> None:
        self.coordinator.close()

    @property
    def num_waiting(self) -> int:
        return sum(1 for r in self._requests.values() if r.phase == PREFILL)

    def has_unfinished(self) -> bool:
        return bool(self._requests)

    def check_health(self) -> None:
        self.coordinator.check_alive()

    def add_request(self, prompt: Sequence[int], sampling: SamplingParams, request_id: str | None = None) -> str:
        """Hand the request to the prefill worker, after the checks its engines would make."""
        if self.num_waiting >= self.max_waiting:
            raise ServerOverloadedError(f"the waiting queue is full ({self.max_waiting} requests); retry later")
        request_id = request_id or f"pd-{next(self._ids)}"
        if request_id in self._requests:
            raise InvalidRequestError(f"request id {request_id!r} is already in use")
        ids = check_prompt_ids(prompt, self._vocab_size)
        for pool in self._pools.values():
            check_context_length(
                len(ids), sampling.max_tokens, self.max_model_len, pool["block_size"], pool["num_blocks"]
            )
        self.coordinator.submit(request_id, tuple(ids), sampling)
        self._requests[request_id] = _InFlight(PREFILL, len(ids))
        self.metrics.counter("requests_total", "requests received").inc()
        return request_id

    def abort_request(self, request_id: str) -> bool:
        """Forget it now; the worker holding it drops it (the decode side refuses its KV if still in flight)."""
        request = self._requests.pop(request_id, None)
        if request is None:
            return False
        roles = (PREFILL, DECODE) if request.phase == PREFILL else (DECODE,)
        self.coordinator.abort([request_id], roles)
        self.metrics.counter("requests_aborted_total", "requests aborted").inc()
        return True

    def step(self) -> list[StepOutput]:
        """Whatever the workers produced since the last call, waiting up to POLL_S for the first of it."""
        outputs: list[StepOutput] = []
        for event in self.coordinator.poll(timeout=POLL_S):
            outputs.extend(self._outputs(event))
        return outputs

    def load(self) -> EngineLoad:
        waiting = self.num_waiting
        return EngineLoad(
            num_running=len(self._requests) - waiting,
            num_waiting=waiting,
            kv_total_blocks=self._pools[DECODE]["num_blocks"],
            kv_free_blocks=self._kv_free_blocks,
            prefix_hit_rate=self._prefix_hit_rate,
        )

    def _outputs(self, event: object) -> list[StepOutput]:
        if isinstance(event, WorkerFailed) and event.request_id is not None:
            return self._failed(event)
        if isinstance(event, FirstToken) and event.request_id in self._requests:
            self._requests[event.request_id].phase = DECODE
        if isinstance(event, DecodeStep):
            self._kv_free_blocks, self._prefix_hit_rate = event.kv_free_blocks, event.prefix_hit_rate
        out = [output for output in step_outputs(event) if output.request_id in self._requests]
        for output in out:
            if output.finished:
                del self._requests[output.request_id]
                self.metrics.counter("requests_finished_total", "requests finished").inc()
        return out

    def _failed(self, event: WorkerFailed) -> list[StepOutput]:
        """A request a worker could not take (checked here first, so rare): it ends as aborted."""
        request = self._requests.pop(event.request_id or "", None)
        if request is None:
            return []
        logger.error("request %s failed in the %s worker: %s", event.request_id, event.role, event.error)
        return [StepOutput(event.request_id or "", (), "", "abort", num_prompt_tokens=request.num_prompt_tokens)]
