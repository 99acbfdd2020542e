"""A tiny deterministic engine simulator for policy tests (simulated clock, no model, no sleeps).

It applies plans the way the engine does -- preempt (recompute: KV dropped),
admit, run chunks, one token per sequence whose prompt and output so far are
all computed -- and advances a simulated clock by the cost model's step
time. That makes latency behaviour (TTFT, TPOT, starvation) testable without
timing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sagellm.core.protocols import IRBuilder
from sagellm.core.types import ExecutionPlan, SchedulerState, SequenceView
from sagellm.scheduler_ir import CostModel


@dataclass(frozen=True, slots=True)
class SimRequest:
    request_id: str
    arrival: float
    num_prompt_tokens: int
    num_output_tokens: int
    priority: int = 0


@dataclass(slots=True)
class SimSeq:
    request: SimRequest
    num_tokens: int
    num_computed: int = 0
    num_blocks: int = 0
    token_times: list[float] = field(default_factory=list)

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] - self.request.arrival if self.token_times else None

    @property
    def max_gap(self) -> float:
        """Longest wait between two output tokens (0 with fewer than two)."""
        return max((b - a for a, b in zip(self.token_times, self.token_times[1:])), default=0.0)

    def view(self) -> SequenceView:
        return SequenceView(
            self.request.request_id,
            self.num_tokens,
            self.num_computed,
            self.num_blocks,
            arrival_time=self.request.arrival,
            priority=self.request.priority,
            num_prompt_tokens=self.request.num_prompt_tokens,
            max_tokens=self.request.num_output_tokens,
            last_token_time=self.token_times[-1] if self.token_times else None,
        )


@dataclass(slots=True)
class Simulation:
    builder: IRBuilder
    cost: CostModel
    num_blocks: int = 10_000
    block_size: int = 16
    now: float = 0.0
    running: list[SimSeq] = field(default_factory=list)
    waiting: list[SimSeq] = field(default_factory=list)
    done: list[SimSeq] = field(default_factory=list)
    plans: list[ExecutionPlan] = field(default_factory=list)

    def run(self, requests: list[SimRequest], max_steps: int = 100_000) -> list[SimSeq]:
        pending = sorted(requests, key=lambda r: r.arrival)
        for _ in range(max_steps):
            while pending and pending[0].arrival <= self.now:
                req = pending.pop(0)
                self.waiting.append(SimSeq(req, req.num_prompt_tokens))
            if not self.running and not self.waiting:
                if not pending:
                    return self.done
                self.now = pending[0].arrival
                continue
            self.step()
        raise AssertionError("simulation did not finish")

    def step(self) -> None:
        free = self.num_blocks - sum(s.num_blocks for s in self.running)
        views = SchedulerState(
            tuple(s.view() for s in self.running),
            tuple(s.view() for s in self.waiting),
            free,
            self.block_size,
            self.now,
        )
        plan = self.builder.build(views)
        self.plans.append(plan)
        by_id = {s.request.request_id: s for s in self.running + self.waiting}
        for rid in plan.preempted:
            seq = by_id[rid]
            self.running.remove(seq)
            seq.num_computed, seq.num_blocks = 0, 0
            self.waiting.append(seq)
        for rid in plan.admitted:
            self.waiting.remove(by_id[rid])
            self.running.append(by_id[rid])
        for chunk in plan.chunks:
            seq = by_id[chunk.request_id]
            seq.num_computed = chunk.start + chunk.num_tokens
            seq.num_blocks = max(seq.num_blocks, -(-seq.num_computed // self.block_size))
        if not plan.chunks and not plan.preempted:
            raise AssertionError(f"no progress at t={self.now}")
        self.now += self.cost.step_seconds(plan.num_batched_tokens)
        for chunk in plan.chunks:
            self.sample(by_id[chunk.request_id])

    def sample(self, seq: SimSeq) -> None:
        if seq.num_computed < seq.num_tokens:
            return  # a chunk of a longer prompt: no token yet
        seq.token_times.append(self.now)
        seq.num_tokens += 1
        if len(seq.token_times) >= seq.request.num_output_tokens:
            self.running.remove(seq)
            self.done.append(seq)
