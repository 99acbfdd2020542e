"""The data side of a migration: copy reserved blocks between tiers and time each direction.

Runs on a migration worker thread, never under the pool lock. On CPU the
copies are plain ``Tensor.copy_`` calls (they release the GIL, so the
engine's thread keeps running). When a tier lives on CUDA the copies go to a
dedicated copy stream, so they overlap the compute stream::

    caller's thread (migrate)        copy stream (worker)               compute stream
    ready = Event(); ready.record()  ----------------------------+      ... kernels writing KV ...
                                     wait_event(ready)   <--------+      (everything enqueued
                                     start.record()                       before migrate())
                                     block copies (non_blocking; pinned host -> async DMA)
                                     done.record(); done.synchronize()   <- the worker waits here,
                                                                            not the engine

Timings: CUDA event time between ``start`` and ``done`` on GPU, wall time of
the copies on CPU; one :class:`CopyTiming` per (source, destination) tier pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from sagellm.core.types import BlockId, BlockMove, Tier
from sagellm.kv_pool.block_store import BlockStore
from sagellm.kv_pool.tier_set import TierSet


@dataclass(frozen=True, slots=True)
class CopyTiming:
    """Blocks and bytes copied in one direction of one migration and how long the copies took."""

    src_tier: Tier
    dst_tier: Tier
    num_blocks: int
    num_bytes: int
    seconds: float


class BlockCopier:
    """Copies blocks between the stores of a :class:`TierSet`; owns the CUDA copy stream if any."""

    def __init__(self, tiers: TierSet, device: torch.device) -> None:
        self._tiers = tiers
        self._device = device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def ready_marker(self) -> torch.cuda.Event | None:
        """Mark the caller's stream now, so the copies start after the KV written so far (CUDA only)."""
        if self._stream is None:
            return None
        ready = torch.cuda.Event()
        ready.record(torch.cuda.current_stream(self._device))
        return ready

    def copy(self, moves: tuple[BlockMove, ...], ready: torch.cuda.Event | None) -> list[CopyTiming]:
        """Copy every move's block (K, V of all layers, and int8 scales); block until the data landed."""
        groups: dict[tuple[Tier, Tier], list[BlockMove]] = {}
        for move in moves:
            groups.setdefault((move.src_tier, move.dst_tier), []).append(move)
        timings = []
        for (src_tier, dst_tier), group in groups.items():
            src, dst = self._tiers.get(src_tier).store, self._tiers.get(dst_tier).store
            on_cuda = self._stream is not None and "cuda" in (src.device.type, dst.device.type)
            seconds = self._copy_on_stream(src, dst, group, ready) if on_cuda else _copy_on_host(src, dst, group)
            timings.append(CopyTiming(src_tier, dst_tier, len(group), len(group) * src.bytes_per_block, seconds))
        return timings

    def _copy_on_stream(
        self, src: BlockStore, dst: BlockStore, moves: list[BlockMove], ready: torch.cuda.Event | None
    ) -> float:
        stream = self._stream
        assert stream is not None
        start, done = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.device(self._device), torch.cuda.stream(stream):
            if ready is not None:
                stream.wait_event(ready)
            start.record(stream)
            _copy_blocks(src, dst, moves, non_blocking=True)
            done.record(stream)
        done.synchronize()
        return float(start.elapsed_time(done)) / 1e3


def _copy_on_host(src: BlockStore, dst: BlockStore, moves: list[BlockMove]) -> float:
    start = time.perf_counter()
    _copy_blocks(src, dst, moves, non_blocking=False)
    return time.perf_counter() - start


def _copy_blocks(src: BlockStore, dst: BlockStore, moves: list[BlockMove], non_blocking: bool) -> None:
    for src_start, dst_start, count in _runs(moves):
        dst.block_run(dst_start, count).copy_(src.block_run(src_start, count), non_blocking=non_blocking)
        src_scales, dst_scales = src.block_run_scales(src_start, count), dst.block_run_scales(dst_start, count)
        if src_scales is not None and dst_scales is not None:
            dst_scales.copy_(src_scales, non_blocking=non_blocking)


def _runs(moves: list[BlockMove]) -> list[tuple[BlockId, BlockId, int]]:
    """Coalesce moves whose source AND destination ids both step by +1 into (src, dst, length) runs.

    One ``copy_`` per run instead of per block: fewer kernel launches and DMA
    transfers on CUDA, no per-block dispatch overhead on CPU. Fresh
    allocations hand out consecutive ids (and a freed table comes back in
    its order), so a sequence's swap usually makes a few long runs. Moves
    stepping by -1 on both sides are the same pairs read backwards::

        moves (src -> dst): 4->0  5->1  6->2  9->3  10->4      runs: (4, 0, 3)  (9, 3, 2)
        moves (src -> dst): 6->2  5->1  4->0                   runs: (4, 0, 3)
    """
    runs: list[tuple[BlockId, BlockId, int, int]] = []  # (first src, first dst, length, step)
    for move in moves:
        dst_id = move.dst_block_id
        assert dst_id is not None  # the planner filled it in
        extended = _extend(runs[-1], move.block_id, dst_id) if runs else None
        if extended is None:
            runs.append((move.block_id, dst_id, 1, 1))
        else:
            runs[-1] = extended
    return [
        (src, dst, count) if step == 1 else (src - count + 1, dst - count + 1, count) for src, dst, count, step in runs
    ]


def _extend(
    run: tuple[BlockId, BlockId, int, int], src_id: BlockId, dst_id: BlockId
) -> tuple[int, int, int, int] | None:
    """``run`` grown by one move, or None when the move does not continue it."""
    src_start, dst_start, count, step = run
    for candidate in (step,) if count > 1 else (1, -1):
        if src_id == src_start + candidate * count and dst_id == dst_start + candidate * count:
            return src_start, dst_start, count + 1, candidate
    return None
