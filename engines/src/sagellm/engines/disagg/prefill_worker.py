"""The prefill worker: computes each prompt's KV and first token, then ships the KV to the decode worker.

Each job runs through an ordinary engine as a one-token request, so
prefill keeps everything the engine does (chunked prefill, batching of
several prompts per step, prefix caching); when it finishes, the prompt's
full blocks are still in the prefix cache and are exported from there
(:mod:`~sagellm.engines.disagg.handoff`). The first token is reported to
the coordinator *before* the KV is staged, so staging never delays TTFT.
With an overlap manager configured (``overlap_pipeline.implementation:
threads``), staging runs on its thread while the engine prefills the next
prompts; the blocks stay pinned until it has copied them.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import OutOfBlocksError, SageLLMError
from sagellm.core.protocols import KVTransferHandle, OverlapManager, PendingResult
from sagellm.core.types import BlockId, StepOutput
from sagellm.engines.disagg.handoff import export_prompt_blocks, release
from sagellm.engines.disagg.messages import (
    DECODE,
    PREFILL,
    Abort,
    FirstToken,
    PrefillJob,
    Reset,
    Shutdown,
    StatsRequest,
    WorkerFailed,
    WorkerStats,
)
from sagellm.engines.disagg.worker_base import WorkerBase, run_worker
from sagellm.engines.engine.request_checks import check_context_length
from sagellm.engines.runtime.kv_manager import PinnedBlocks

DRAIN_S = 30.0  # at shutdown, how long transfers may take to be accepted
REAP_EVERY = 256  # pending handles kept before answered ones are folded into the counters


@dataclasses.dataclass(slots=True)
class PrefillStats:
    num_prefilled: int = 0
    num_transfers: int = 0
    num_blocks_sent: int = 0
    bytes_sent: int = 0
    stage_s: float = 0.0  # copying blocks into shared memory (inside transfer())
    busy_s: float = 0.0  # engine steps plus hand-offs
    num_staging_fallbacks: int = 0  # staging stayed full: sent without blocks, the decode side recomputes
    num_completed: int = 0  # transfers the decode worker accepted (latency known)
    latency_s: float = 0.0  # transfer() to acceptance, summed over completed transfers
    receive_copy_s: float = 0.0  # the decode worker's copies out of shared memory


class PrefillWorker(WorkerBase):
    role = PREFILL

    def __init__(self, config_data: dict[str, Any], inbox: Any, events: Any) -> None:
        super().__init__(config_data, inbox, events)
        self.stats = PrefillStats()
        self._jobs: dict[str, tuple[PrefillJob, list[int]]] = {}
        self._handles: list[KVTransferHandle] = []
        self.overlap: OverlapManager | None = build_overlap_manager(self.config)
        self._shipping: list[tuple[PinnedBlocks, PendingResult]] = []  # staging on the overlap thread

    def run(self) -> None:
        self.announce()
        while True:
            for msg in self.messages(block=not self.engine.has_unfinished()):
                if not isinstance(msg, (PrefillJob, Abort)):
                    self._collect_shipping(wait=True)  # control messages see every hand-off finished
                if isinstance(msg, Shutdown):
                    if self.overlap is not None:
                        self.overlap.close()
                    self.channel.close(drain_timeout_s=DRAIN_S)
                    return
                if isinstance(msg, StatsRequest):
                    self.events.put(WorkerStats(PREFILL, self._report(msg.reset)))
                elif isinstance(msg, Reset):
                    self._reap()
                    self._handles, self.stats = [], PrefillStats()
                    self.reset()
                elif isinstance(msg, PrefillJob):
                    self._add(msg)
                elif isinstance(msg, Abort):
                    self._abort(msg.request_ids)
            if self.engine.has_unfinished():
                start = time.perf_counter()
                for output in self.engine.step():
                    self._hand_off(output)
                self.stats.busy_s += time.perf_counter() - start
            if self._shipping:
                self._collect_shipping(wait=not self.engine.has_unfinished())

    def _add(self, job: PrefillJob) -> None:
        try:
            ids = self.engine.tokenizer.encode(job.prompt) if isinstance(job.prompt, str) else list(job.prompt)
            check_context_length(len(ids), job.sampling.max_tokens, self.engine.max_model_len)
            first_only = dataclasses.replace(job.sampling, max_tokens=1)
            self.engine.add_request(ids, first_only, request_id=job.request_id)
        except SageLLMError as exc:
            self.events.put(WorkerFailed(PREFILL, f"{type(exc).__name__}: {exc}", job.request_id))
            return
        self._jobs[job.request_id] = (job, ids)

    def _abort(self, request_ids: tuple[str, ...]) -> None:
        """Drop jobs still prefilling; one already handed off is the decode worker's to drop."""
        for request_id in request_ids:
            if self._jobs.pop(request_id, None) is not None:
                self.engine.abort_request(request_id)

    def _hand_off(self, output: StepOutput) -> None:
        job, ids = self._jobs.pop(output.request_id)
        token = output.new_token_ids[0]
        finished = output.finish_reason == "stop" or job.sampling.max_tokens == 1
        reason = output.finish_reason if finished else None
        self.events.put(
            FirstToken(job.request_id, token, output.new_text, tuple(ids), reason, output.logprobs, output.top_logprobs)
        )
        self.stats.num_prefilled += 1
        if finished:
            return
        metadata = {
            "request_id": job.request_id,
            "prompt": ids,
            "first_token": token,
            "sampling": dataclasses.asdict(job.sampling),
        }
        held = export_prompt_blocks(self.engine, ids)
        if self.overlap is None:
            self._shipped(held, self._ship(held.block_ids, metadata))
        else:  # staging runs beside the next prefill step; the blocks stay pinned until it has copied them
            self._shipping.append((held, self.overlap.start(functools.partial(self._ship, held.block_ids, metadata))))

    def _ship(self, block_ids: list[BlockId], metadata: dict[str, Any]) -> tuple[KVTransferHandle, bool]:
        """Stage and send (on the overlap thread when there is one); whether staging stayed full and nothing went."""
        try:
            return self.channel.transfer(block_ids, DECODE, metadata=metadata), False
        except OutOfBlocksError:  # staging stayed full for full_timeout_s: let the decode side recompute
            return self.channel.transfer([], DECODE, metadata=metadata), True

    def _shipped(self, held: PinnedBlocks, shipped: tuple[KVTransferHandle, bool]) -> None:
        """After staging: unpin the blocks and count the transfer."""
        release(self.engine, held)
        handle, fell_back = shipped
        self.stats.num_staging_fallbacks += fell_back
        self.stats.num_transfers += 1
        self.stats.num_blocks_sent += handle.num_blocks
        self.stats.bytes_sent += handle.num_bytes
        self.stats.stage_s += handle.stage_s
        self._handles.append(handle)
        if len(self._handles) > REAP_EVERY:
            self._reap()

    def _collect_shipping(self, wait: bool = False) -> None:
        """Finish hand-offs whose staging is done (all of them with ``wait``); a failed one re-raises here."""
        still = []
        for held, pending in self._shipping:
            if wait or pending.done():
                self._shipped(held, pending.wait())
            else:
                still.append((held, pending))
        self._shipping = still

    def _reap(self) -> None:
        """Fold every answered transfer's latency into the counters; keep only the pending handles."""
        still = []
        for handle in self._handles:
            if not handle.done():
                still.append(handle)
                continue
            try:
                receipt = handle.result(0)
            except SageLLMError:
                continue
            self.stats.num_completed += 1
            self.stats.latency_s += receipt.latency_s
            self.stats.receive_copy_s += receipt.copy_s
        self._handles = still

    def _report(self, reset: bool) -> dict[str, Any]:
        """Counters so far, with the latencies of every transfer answered by now."""
        self._reap()
        report = dataclasses.asdict(self.stats) | {"num_pending_transfers": len(self._handles)}
        if reset:
            self.stats = PrefillStats()
        return report


def build_overlap_manager(config: SageLLMConfig) -> OverlapManager | None:
    """The configured overlap manager (``overlap_pipeline.implementation``), or None to stage inline."""
    if config.overlap_pipeline.implementation == registry.NO_IMPLEMENTATION:
        return None
    return registry.create_overlap_manager(config)


def prefill_main(config_data: dict[str, Any], inbox: Any, events: Any) -> None:
    """Process entry point (spawned by the coordinator)."""
    run_worker(PREFILL, events, lambda: PrefillWorker(config_data, inbox, events).run())
