"""sagellm.engines.lmdeploy on a patched LMDeploy v0.11.0 scheduler, on CPU.

Needs sageLLM importable with its entry points (sagellm_overlay.py does it
for tools/tests/test_lmdeploy_patches.py); skipped otherwise. The scripted
workload is the point: LMDeploy's scheduler, driven by sageLLM's FIFO IR
builder through patch 0003, must run per step exactly the sequences that the
same builder picks when run standalone on a pure sageLLM simulation of the
workload -- and, where the builder's budget binds, not what LMDeploy alone
would run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

pytest.importorskip("sagellm.engines.lmdeploy", reason="sageLLM is not importable here (see sagellm_overlay.py)")

from lmdeploy.pytorch import distributed  # noqa: E402
from lmdeploy.pytorch.config import CacheConfig, SchedulerConfig  # noqa: E402
from lmdeploy.pytorch.messages import MessageStatus, SequenceMeta, UpdateTokenMode  # noqa: E402
from lmdeploy.pytorch.paging.scheduler import Scheduler  # noqa: E402
from sagellm.core import registry  # noqa: E402
from sagellm.core.config import SageLLMConfig, load_config  # noqa: E402
from sagellm.core.types import ExecutionPlan, SchedulerState, SequenceView, blocks_for  # noqa: E402
from sagellm.engines.lmdeploy import install  # noqa: E402

BLOCK_SIZE = 16
NUM_GPU_BLOCKS = 10
# (arrives before step, prompt tokens, new tokens): A+B fill the 96-token budget, C waits; B's growth preempts C.
WORKLOAD = [(0, 40, 4), (0, 50, 20), (0, 30, 6), (1, 20, 2), (2, 70, 3)]


def fifo_config(**scheduler: Any) -> SageLLMConfig:
    return load_config(
        prefix_cache={"implementation": "hash_chain"},
        eviction_policy={"implementation": "lru"},
        scheduler_ir={
            "implementation": "fifo",
            "enable_chunked_prefill": False,
            "max_num_seqs": 3,
            "max_num_batched_tokens": 96,
            **scheduler,
        },
    )


def make_scheduler(num_gpu_blocks: int = NUM_GPU_BLOCKS, prefix_caching: bool = False) -> Scheduler:
    from lmdeploy.pytorch.strategies.ar.sequence import ARSequenceStrategy

    cache_config = CacheConfig(
        max_batches=256,
        block_size=BLOCK_SIZE,
        num_cpu_blocks=8,
        num_gpu_blocks=num_gpu_blocks,
        enable_prefix_caching=prefix_caching,
    )
    scheduler_config = SchedulerConfig(
        max_batches=8, max_session_len=512, max_request_output_len=64, eviction_type="recompute"
    )
    seq_meta = SequenceMeta(BLOCK_SIZE, strategy=ARSequenceStrategy())
    return Scheduler(scheduler_config=scheduler_config, cache_config=cache_config, seq_meta=seq_meta)


def next_is_prefill(has_waiting: bool, has_running: bool, last_was_prefill: bool) -> bool:
    """The driver's rule, the same for both runs: prefill when something waits, but never twice in a row."""
    return has_waiting and (not last_was_prefill or not has_running)


# --------------------------------------------------------------------------- LMDeploy, driven by the plan


def run_lmdeploy(scheduler: Scheduler, max_steps: int = 80) -> list[tuple[bool, list[int]]]:
    """Steps of the workload on LMDeploy's scheduler: (is_prefill, seq ids that ran)."""
    seqs: dict[int, Any] = {}
    left: dict[int, int] = {}
    steps: list[tuple[bool, list[int]]] = []
    last_prefill = False
    for step in range(max_steps):
        for i, (arrives, prompt, new) in enumerate(WORKLOAD):
            if arrives == step:
                session = scheduler.add_session(i)
                seq = session.add_sequence(torch.full((prompt,), i + 1))
                seq.arrive_time = float(i)
                scheduler.add_sequence(seq)
                seqs[seq.seq_id], left[seq.seq_id] = seq, new
        if not scheduler.has_unfinished() and step > max(a for a, _, _ in WORKLOAD):
            break
        if not (scheduler.has_waiting() or scheduler.has_running()):
            continue
        last_prefill = next_is_prefill(scheduler.has_waiting(), scheduler.has_running(), last_prefill)
        output = scheduler.schedule(is_prefill=last_prefill)
        steps.append((last_prefill, [seq.seq_id for seq in output.running]))
        for seq in output.running:
            seq.update_token_ids(torch.tensor([7]), mode=UpdateTokenMode.DECODE)
            left[seq.seq_id] -= 1
            if left[seq.seq_id] == 0:
                seq.status = MessageStatus.ENDED
                scheduler.end_session(seq.session_id)
    return steps


# --------------------------------------------------------------------------- the builder, standalone


@dataclass
class SimSeq:
    """One sequence as a pure sageLLM simulation tracks it."""

    seq_id: int
    arrival: float
    num_tokens: int
    new_left: int
    computed: int = 0
    blocks: int = 0
    running: bool = False
    views: list[SequenceView] = field(default_factory=list)

    def view(self, runs: bool) -> SequenceView:
        return SequenceView(
            request_id=str(self.seq_id),
            num_tokens=self.num_tokens if runs else self.computed,
            num_computed_tokens=self.computed,
            num_blocks_held=self.blocks,
            arrival_time=self.arrival,
            num_cached_tokens=self.computed,
        )


def run_standalone(config: SageLLMConfig, seq_ids: list[int], max_steps: int = 80) -> list[tuple[bool, list[int]]]:
    """The same workload planned by a fresh FIFO builder over sageLLM's own bookkeeping (no LMDeploy)."""
    builder = registry.create_ir_builder(config)
    sims: list[SimSeq] = []
    steps: list[tuple[bool, list[int]]] = []
    last_prefill = False
    for step in range(max_steps):
        for i, (arrives, prompt, new) in enumerate(WORKLOAD):
            if arrives == step:
                sims.append(SimSeq(seq_ids[i], float(i), prompt, new))
        live = [s for s in sims if s.new_left > 0]
        if not live and step > max(a for a, _, _ in WORKLOAD):
            break
        running = [s for s in live if s.running]
        waiting = [s for s in live if not s.running]
        if not live:
            continue
        last_prefill = next_is_prefill(bool(waiting), bool(running), last_prefill)
        free = NUM_GPU_BLOCKS - sum(s.blocks for s in live)
        if last_prefill:
            state = SchedulerState(tuple(s.view(False) for s in running), tuple(s.view(True) for s in waiting), free, 16)
        else:
            state = SchedulerState(tuple(s.view(True) for s in running), (), free, BLOCK_SIZE)
        plan = builder.build(state)
        steps.append((last_prefill, apply(plan, live, last_prefill)))
    return steps


def apply(plan: ExecutionPlan, live: list[SimSeq], is_prefill: bool) -> list[int]:
    """Apply a plan to the simulation; the ids that ran, in chunk order."""
    by_id = {str(s.seq_id): s for s in live}
    for request_id in plan.preempted:
        victim = by_id[request_id]
        victim.running, victim.computed, victim.blocks = False, 0, 0
    ran = []
    for chunk in plan.chunks:
        seq = by_id[chunk.request_id]
        if (chunk.request_id in plan.admitted) != is_prefill:
            continue
        seq.running = True
        seq.computed += chunk.num_tokens
        seq.blocks = blocks_for(seq.computed, BLOCK_SIZE)
        seq.num_tokens += 1  # the sampled token
        seq.new_left -= 1
        ran.append(seq.seq_id)
        if seq.new_left == 0:
            seq.running, seq.blocks = False, 0
    return ran


def test_scripted_workload_gets_the_standalone_builders_schedule() -> None:
    config = fifo_config()
    scheduler = make_scheduler()
    plugins = install(scheduler, config)
    assert plugins.plan_provider is not None
    planned = run_lmdeploy(scheduler)
    seq_ids = sorted({i for _, ids in planned for i in ids})
    standalone = run_standalone(config, seq_ids)
    assert planned == standalone
    assert any(not prefill and len(ids) < 3 for prefill, ids in planned[3:10])  # a preemption happened
    # the builder's budget (96 tokens, 3 sequences) binds: LMDeploy alone schedules otherwise
    upstream = run_lmdeploy(make_scheduler())
    assert upstream != planned
    assert upstream[0] == (True, seq_ids[:3]) and planned[0] == (True, seq_ids[:2])


def test_the_provider_sees_the_state_the_builder_would_see() -> None:
    config = fifo_config()
    scheduler = make_scheduler()
    plugins = install(scheduler, config)
    seqs = []
    for i, (_, prompt, _) in enumerate(WORKLOAD[:3]):
        seq = scheduler.add_session(i).add_sequence(torch.full((prompt,), i + 1))
        seq.arrive_time = float(i)
        scheduler.add_sequence(seq)
        seqs.append(seq)
    output = scheduler.schedule(is_prefill=True)
    last = plugins.plan_provider.last
    assert last is not None and last.is_prefill
    assert last.state.num_free_blocks == NUM_GPU_BLOCKS and last.state.block_size == BLOCK_SIZE
    assert [v.num_tokens for v in last.state.waiting] == [40, 50, 30]
    standalone = registry.create_ir_builder(config).build(last.state)
    assert standalone == last.plan
    assert [seq.seq_id for seq in output.running] == list(last.seq_ids) == [seqs[0].seq_id, seqs[1].seq_id]
    plugins.uninstall()
    assert scheduler.plan_provider is None and scheduler.block_trie.prefix_hook is None


# --------------------------------------------------------------------------- prefix index and eviction policy


def test_the_sagellm_index_finds_the_prefix_the_trie_reuses() -> None:
    scheduler = make_scheduler(num_gpu_blocks=6, prefix_caching=True)
    plugins = install(scheduler, fifo_config())
    hook = plugins.prefix_hook
    assert hook is not None and hook.feed is not None
    tokens = [1] * BLOCK_SIZE + [2] * BLOCK_SIZE + [3] * 4
    first = scheduler.add_session(0).add_sequence(torch.tensor(tokens))
    scheduler.add_sequence(first)
    scheduler.schedule(is_prefill=True)
    scheduler.block_trie.allocate(first)
    cached = first.logical_blocks.get_real_blocks()[:2].tolist()
    assert hook.cached_blocks == frozenset(cached) and len(hook.index) == 2

    second = scheduler.add_session(1).add_sequence(torch.tensor(tokens))
    scheduler.add_sequence(second)
    output = scheduler.schedule(is_prefill=True)
    assert plugins.plan_provider.last.state.waiting[0].num_cached_tokens == 2 * BLOCK_SIZE  # the index's peek
    assert output.running == [second]
    assert second.logical_blocks.get_real_blocks()[:2].tolist() == cached
    assert hook.num_proposed_blocks == 2 and second.num_history_ids == 2 * BLOCK_SIZE

    # both end; a prompt of 5 blocks then needs one of the 2 cached blocks (6 in all): the trie evicts its
    # leaf, and the index and the policy follow; the plan counted the cached blocks as reclaimable
    for seq in (first, second):
        seq.status = MessageStatus.ENDED
        scheduler.end_session(seq.session_id)
    big = scheduler.add_session(2).add_sequence(torch.tensor([9] * BLOCK_SIZE * 5))
    scheduler.add_sequence(big)
    assert scheduler.schedule(is_prefill=True).running == [big]
    assert plugins.plan_provider.last.state.num_free_blocks == 6
    assert hook.cached_blocks == frozenset(cached[:1]) and len(hook.index) == 1
    # the trie drops the leaf; LRU, which saw both blocks cached at the same time, names the older one (the
    # parent): recorded as a disagreement, since no patch lets the policy choose (see eviction_feed.py)
    assert hook.feed.stats.prefix_blocks == 1 and hook.feed.stats.agreement == 0.0
    assert len(hook.feed.policy) == 1


# --------------------------------------------------------------------------- comm backend


def test_a_sagellm_comm_backend_carries_lmdeploys_collectives() -> None:
    config = fifo_config()
    config.collective_ops.implementation = "mock"
    scheduler = make_scheduler()
    plugins = install(scheduler, config, rank=0)
    try:
        assert distributed.get_comm_backend() is plugins.comm_backend
        distributed.reset_comm_stats()
        x = torch.arange(6.0).reshape(2, 3)
        distributed.all_reduce(x, group=None)
        gathered = [torch.zeros(2, 3)]
        distributed.all_gather(gathered, x, group=None)
        into = torch.zeros(2, 3)
        distributed.all_gather_into_tensor(into, x, group=None)
        out = torch.zeros(2, 3)
        distributed.reduce_scatter(out, [x], group=None)
    finally:
        plugins.uninstall()
    assert torch.equal(x, torch.arange(6.0).reshape(2, 3))
    assert torch.equal(gathered[0], x) and torch.equal(into, x) and torch.equal(out, x)
    assert distributed.get_comm_stats()["all_reduce"].calls == 1
    assert distributed.get_comm_backend() is None
