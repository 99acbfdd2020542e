"""The decode worker: takes each prompt's KV off the channel and generates the rest of the answer.

A hand-off becomes an ordinary request: the received blocks are adopted
into the prefix cache (:mod:`~sagellm.engines.disagg.handoff`), then the
prompt *plus the first token* is added with ``max_tokens - 1``. Admission
hits the adopted blocks, so the engine computes only the prompt's partial
last block and the first token, then decodes as usual, batched with every
other running request.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from typing import Any

from sagellm.core.errors import OutOfBlocksError, SageLLMError
from sagellm.core.protocols import IncomingKV
from sagellm.core.types import SamplingParams
from sagellm.engines.disagg.handoff import adopt_blocks, allocate_blocks, release
from sagellm.engines.disagg.messages import (
    DECODE,
    Abort,
    DecodeStep,
    Reset,
    Shutdown,
    StatsRequest,
    WorkerFailed,
    WorkerStats,
)
from sagellm.engines.disagg.worker_base import POLL_S, WorkerBase, run_worker
from sagellm.engines.runtime.kv_manager import PinnedBlocks

MAX_ABORTED = 4096  # aborts remembered for KV not yet arrived; past this the oldest is computed and ignored


@dataclasses.dataclass(slots=True)
class DecodeStats:
    num_handoffs: int = 0
    num_blocks_received: int = 0
    bytes_received: int = 0
    copy_s: float = 0.0  # copying blocks out of shared memory into the pool
    adopt_s: float = 0.0  # allocation + copy + prefix-cache registration
    num_rejected: int = 0  # no room for the blocks: recomputed instead
    busy_s: float = 0.0  # engine steps
    num_steps: int = 0


class DecodeWorker(WorkerBase):
    role = DECODE

    def __init__(self, config_data: dict[str, Any], inbox: Any, events: Any) -> None:
        super().__init__(config_data, inbox, events)
        self.stats = DecodeStats()
        self._held: dict[str, PinnedBlocks] = {}  # adopted blocks, held until their request is admitted
        self._aborted: OrderedDict[str, None] = OrderedDict()  # aborted before their KV arrived

    def run(self) -> None:
        self.announce()
        while True:
            busy = self.engine.has_unfinished()
            for msg in self.messages(block=False):
                if isinstance(msg, Shutdown):
                    self.channel.close()
                    return
                if isinstance(msg, StatsRequest):
                    self.events.put(WorkerStats(DECODE, self._report(msg.reset)))
                elif isinstance(msg, Abort):
                    self._abort(msg.request_ids)
                elif isinstance(msg, Reset):
                    self._held, self._aborted, self.stats = {}, OrderedDict(), DecodeStats()
                    self.reset()
            incoming = self.channel.receive(timeout=0.0 if busy else POLL_S)
            while incoming is not None:
                self._admit(incoming)
                incoming = self.channel.receive(timeout=0.0)
            if self.engine.has_unfinished():
                self._step()

    def _step(self) -> None:
        start = time.perf_counter()
        outputs = self.engine.step()
        self.stats.busy_s += time.perf_counter() - start
        self.stats.num_steps += 1
        for output in outputs:
            held = self._held.pop(output.request_id, None)
            if held is not None:  # admitted: its own references keep the blocks now
                release(self.engine, held)
        if outputs:
            kv = self.engine.kv
            self.events.put(DecodeStep(tuple(outputs), kv.num_free_blocks, kv.hit_rate()))

    def _abort(self, request_ids: tuple[str, ...]) -> None:
        """Drop running requests now; remember the others, whose KV may still be on its way."""
        for request_id in request_ids:
            held = self._held.pop(request_id, None)
            if held is not None:
                release(self.engine, held)
            if not self.engine.abort_request(request_id):
                self._aborted[request_id] = None
                if len(self._aborted) > MAX_ABORTED:
                    self._aborted.popitem(last=False)

    def _admit(self, incoming: IncomingKV) -> None:
        meta = incoming.metadata
        request_id, prompt, first = str(meta["request_id"]), list(meta["prompt"]), int(meta["first_token"])
        if request_id in self._aborted:
            del self._aborted[request_id]
            _refuse(incoming, "the request was aborted")
            return
        held = self._take_blocks(incoming, prompt)
        sampling = SamplingParams(**{**meta["sampling"], "max_tokens": int(meta["sampling"]["max_tokens"]) - 1})
        try:
            self.engine.add_request([*prompt, first], sampling, request_id=request_id)
        except SageLLMError as exc:
            release(self.engine, held)
            self.events.put(WorkerFailed(DECODE, f"{type(exc).__name__}: {exc}", request_id))
            return
        self._held[request_id] = held
        self.stats.num_handoffs += 1

    def _take_blocks(self, incoming: IncomingKV, prompt: list[int]) -> PinnedBlocks:
        """Receive the transfer's blocks into fresh pool blocks and cache them; nothing if there is no room."""
        if not incoming.num_blocks:
            incoming.accept([])
            return PinnedBlocks([], [])
        start = time.perf_counter()
        try:
            blocks = allocate_blocks(self.engine, incoming.num_blocks)
        except OutOfBlocksError:
            incoming.reject("the decode worker has no free KV blocks")
            self.stats.num_rejected += 1
            return PinnedBlocks([], [])
        try:
            copy_s = incoming.accept(blocks)
        except SageLLMError:  # the prefill side went away: recompute the prompt instead
            self.engine.kv.pool.free(blocks)
            self.stats.num_rejected += 1
            return PinnedBlocks([], [])
        held = adopt_blocks(self.engine, prompt, blocks)
        self.stats.num_blocks_received += len(blocks)
        self.stats.bytes_received += len(blocks) * self.engine.kv.pool.layout.bytes_per_block
        self.stats.copy_s += copy_s
        self.stats.adopt_s += time.perf_counter() - start
        return held

    def _report(self, reset: bool) -> dict[str, Any]:
        report = dataclasses.asdict(self.stats) | {
            "preemptions": int(self.engine.metrics.counter("preemptions_total").value),
            "prefix_hit_rate": self.engine.kv.hit_rate(),
        }
        if reset:
            self.stats = DecodeStats()
        return report


def _refuse(incoming: IncomingKV, reason: str) -> None:
    """Answer a transfer without taking its blocks (one without blocks is simply accepted)."""
    if incoming.num_blocks:
        incoming.reject(reason)
    else:
        incoming.accept([])


def decode_main(config_data: dict[str, Any], inbox: Any, events: Any) -> None:
    """Process entry point (spawned by the coordinator)."""
    run_worker(DECODE, events, lambda: DecodeWorker(config_data, inbox, events).run())
