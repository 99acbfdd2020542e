"""The four sageLLM hooks in a patched LMDeploy v0.11.0 tree, on CPU.

Run with lmdeploy importable from a tree patched by third_party/patches/lmdeploy/apply_patches.sh
(tools/tests/test_lmdeploy_patches.py does, when ``SAGELLM_LMDEPLOY_PYTHON`` names an
interpreter with LMDeploy's dependencies). Each hook is checked twice: nothing plugged in gives
LMDeploy's own result, and a plugged-in hook is called and obeyed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from lmdeploy.pytorch import distributed
from lmdeploy.pytorch.config import CacheConfig, SchedulerConfig
from lmdeploy.pytorch.messages import MessageStatus, SequenceMeta
from lmdeploy.pytorch.paging.block_trie import PrefixReuseHook
from lmdeploy.pytorch.paging.scheduler import ExternalPlan, Scheduler

BLOCK_SIZE = 16


def make_scheduler(num_gpu_blocks: int = 8, prefix_caching: bool = False) -> Scheduler:
    from lmdeploy.pytorch.strategies.ar.sequence import ARSequenceStrategy

    cache_config = CacheConfig(
        max_batches=256,
        block_size=BLOCK_SIZE,
        num_cpu_blocks=8,
        num_gpu_blocks=num_gpu_blocks,
        enable_prefix_caching=prefix_caching,
    )
    scheduler_config = SchedulerConfig(
        max_batches=4, max_session_len=256, max_request_output_len=64, eviction_type="recompute"
    )
    seq_meta = SequenceMeta(BLOCK_SIZE, strategy=ARSequenceStrategy())
    return Scheduler(scheduler_config=scheduler_config, cache_config=cache_config, seq_meta=seq_meta)


def add_seq(scheduler: Scheduler, session_id: int, token_ids: list[int]) -> Any:
    session = scheduler.add_session(session_id)
    seq = session.add_sequence(torch.tensor(token_ids))
    scheduler.add_sequence(seq)
    return seq


# --------------------------------------------------------------------------- 0001 KV manager API


def test_block_info_and_migrate_blocks() -> None:
    scheduler = make_scheduler()
    manager = scheduler.block_manager
    seq = add_seq(scheduler, 0, [1] * BLOCK_SIZE * 2)
    scheduler.schedule(is_prefill=True)
    infos = manager.get_seq_block_info(seq)
    assert [info.device for info in infos] == ["gpu", "gpu"]
    assert all(info.ref_count == 1 for info in infos)
    assert manager.migrate_blocks(seq, "gpu") == {}  # already there
    copy_map = manager.migrate_blocks(seq, "cpu")
    assert copy_map is not None and len(copy_map) == 2
    assert [info.device for info in manager.get_seq_block_info(seq)] == ["cpu", "cpu"]
    assert manager.get_num_free_gpu_blocks() == 8
    assert manager.migrate_blocks(seq, "gpu") is not None
    assert [info.device for info in manager.get_seq_block_info(seq)] == ["gpu", "gpu"]
    with pytest.raises(ValueError):
        manager.migrate_blocks(seq, "disk")


def test_eviction_callback_sees_preempted_blocks_before_they_are_freed() -> None:
    scheduler = make_scheduler(num_gpu_blocks=4)
    manager = scheduler.block_manager
    events: list[tuple[list[int], str, list[int]]] = []

    def on_evict(blocks: np.ndarray, reason: str) -> None:
        events.append((blocks.tolist(), reason, manager.allocator.get_ref_count(blocks).tolist()))

    seq1 = add_seq(scheduler, 0, [1] * BLOCK_SIZE * 3)
    scheduler.schedule(is_prefill=True)
    seq1.status = MessageStatus.STOPPED  # hanging: the first to be evicted
    held = seq1.logical_blocks.get_real_blocks().tolist()
    manager.add_eviction_callback(on_evict)
    add_seq(scheduler, 1, [2] * BLOCK_SIZE * 3)
    scheduler.schedule(is_prefill=True)
    assert events == [(held, "preempt", [1, 1, 1])]  # still held when the callback runs
    manager.remove_eviction_callback(on_evict)


# --------------------------------------------------------------------------- 0002 prefix reuse


class RecordingIndex(PrefixReuseHook):
    """Remembers what the trie stored; proposes it back, or a wrong block, or nothing."""

    def __init__(self) -> None:
        self.stored: list[tuple[int, list[int]]] = []
        self.lookups = 0
        self.propose: list[int] | None = None

    def lookup(self, seq: Any, num_matched: int) -> list[int] | None:
        self.lookups += 1
        return self.propose

    def store(self, seq: Any, num_matched: int, blocks: np.ndarray) -> None:
        self.stored.append((num_matched, blocks.tolist()))


def prefill_and_cache(scheduler: Scheduler, session_id: int, token_ids: list[int]) -> Any:
    seq = add_seq(scheduler, session_id, token_ids)
    scheduler.schedule(is_prefill=True)
    scheduler.block_trie.allocate(seq)
    return seq


def test_prefix_hook_store_and_verified_lookup() -> None:
    scheduler = make_scheduler(num_gpu_blocks=16, prefix_caching=True)
    index = RecordingIndex()
    scheduler.block_trie.set_prefix_hook(index)
    tokens = [1] * BLOCK_SIZE + [2] * BLOCK_SIZE + [3] * 4
    first = prefill_and_cache(scheduler, 0, tokens)
    cached = first.logical_blocks.get_real_blocks()[:2].tolist()
    assert index.stored == [(0, cached)]
    assert index.lookups == 1  # the first prefill asked too (nothing stored yet)

    index.propose = cached  # the right blocks: reused
    second = add_seq(scheduler, 1, tokens)
    scheduler.schedule(is_prefill=True)
    assert index.lookups == 2
    assert second.logical_blocks.get_real_blocks()[:2].tolist() == cached
    assert second.num_history_ids == 2 * BLOCK_SIZE

    index.propose = cached[::-1]  # wrong order: the trie refuses, nothing reused
    third = add_seq(scheduler, 2, tokens)
    scheduler.schedule(is_prefill=True)
    assert third.num_history_ids == 0
    assert not set(third.logical_blocks.get_real_blocks().tolist()) & set(cached)


def test_prefix_hook_none_is_the_tries_own_match() -> None:
    scheduler = make_scheduler(num_gpu_blocks=16, prefix_caching=True)
    index = RecordingIndex()  # propose None: no opinion
    scheduler.block_trie.set_prefix_hook(index)
    tokens = [5] * BLOCK_SIZE * 2 + [6]
    first = prefill_and_cache(scheduler, 0, tokens)
    second = add_seq(scheduler, 1, tokens)
    scheduler.schedule(is_prefill=True)
    assert index.lookups == 2
    assert second.logical_blocks.get_real_blocks()[:2].tolist() == first.logical_blocks.get_real_blocks()[:2].tolist()


# --------------------------------------------------------------------------- 0003 external plan


def test_scheduler_follows_an_external_plan() -> None:
    scheduler = make_scheduler(num_gpu_blocks=16)
    seqs = [add_seq(scheduler, i, [i] * BLOCK_SIZE) for i in range(3)]
    output = scheduler.schedule(is_prefill=True, plan=ExternalPlan(seq_ids=[seqs[2].seq_id, seqs[0].seq_id]))
    assert output.running == [seqs[2], seqs[0]]
    assert seqs[1].status == MessageStatus.WAITING

    asked: list[tuple[bool, list[int]]] = []

    def provider(is_prefill: bool, candidates: list[Any]) -> ExternalPlan | None:
        asked.append((is_prefill, [seq.seq_id for seq in candidates]))
        return None if is_prefill else ExternalPlan(seq_ids=[seqs[0].seq_id])

    scheduler.set_plan_provider(provider)
    assert scheduler.schedule(is_prefill=True).running == [seqs[1]]  # None: LMDeploy's arrival order
    assert scheduler.schedule(is_prefill=False).running == [seqs[0]]
    assert asked == [(True, [seqs[1].seq_id]), (False, [s.seq_id for s in seqs])]
    scheduler.set_plan_provider(None)
    running = scheduler.schedule(is_prefill=False).running  # back to every running sequence
    assert sorted(seq.seq_id for seq in running) == sorted(seq.seq_id for seq in seqs)


# --------------------------------------------------------------------------- 0004 comm backend


class CountingBackend(distributed.CommBackend):
    """Does each collective locally (one rank) and counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def all_reduce(self, tensor: torch.Tensor, op: Any, group: Any, async_op: bool) -> None:
        self.calls.append("all_reduce")

    def all_gather(self, tensor_list: list[torch.Tensor], tensor: torch.Tensor, group: Any, async_op: bool) -> None:
        self.calls.append("all_gather")
        tensor_list[0].copy_(tensor)


def test_collectives_go_through_the_backend_and_are_recorded() -> None:
    backend = CountingBackend()
    distributed.reset_comm_stats()
    distributed.set_comm_backend(backend)
    try:
        x = torch.ones(4, 8, dtype=torch.float32)
        distributed.all_reduce(x, group=None)
        distributed.all_reduce(x, group=None)
        gathered = distributed.gather_by_tp_sizes(torch.ones(1, 3, 2), [3], group=None)
    finally:
        distributed.set_comm_backend(None)
    assert backend.calls == ["all_reduce", "all_reduce", "all_gather"]
    assert gathered.shape == (1, 3, 2)
    stats = distributed.get_comm_stats()
    assert stats["all_reduce"].calls == 2 and stats["all_reduce"].nbytes == 2 * 4 * 8 * 4
    assert stats["all_reduce"].latency_s >= 0.0 and stats["all_reduce"].bandwidth_bytes_per_s >= 0.0
    assert stats["all_gather"].nbytes == 3 * 2 * 4
    distributed.all_gather_object  # noqa: B018  (the other wrappers exist too)
    assert distributed.get_comm_backend() is None


def test_no_backend_calls_torch_distributed_unrecorded(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda *args: seen.append(args))
    distributed.reset_comm_stats()
    x = torch.ones(2)
    distributed.all_reduce(x, group=None)
    assert len(seen) == 1 and seen[0][0] is x
    assert distributed.get_comm_stats() == {}
