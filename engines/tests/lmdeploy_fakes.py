"""Stand-ins for the few LMDeploy objects the adapter touches, so its logic tests without LMDeploy."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np


class FakeBlocks:
    """LMDeploy's LogicalTokenBlocks: ``get_real_blocks()``."""

    def __init__(self, blocks: list[int]) -> None:
        self.blocks = list(blocks)

    def get_real_blocks(self) -> np.ndarray:
        return np.array(self.blocks, dtype=np.int64)


@dataclass
class FakeSeq:
    """LMDeploy's SchedulerSequence as the adapter reads it."""

    seq_id: int
    tokens: list[int]
    num_history_ids: int = 0
    blocks: list[int] = field(default_factory=list)
    arrive_time: float = 0.0
    num_new_tokens: int = 0
    adapter_name: str | None = None
    sampling_param: Any = field(default_factory=lambda: SimpleNamespace(max_new_tokens=8))

    def __post_init__(self) -> None:
        self.logical_blocks = FakeBlocks(self.blocks)
        self.history_cache = np.array(self.tokens, dtype=np.int64)

    @property
    def num_all_ids(self) -> int:
        return len(self.tokens)

    @property
    def num_valid_ids(self) -> int:
        return len(self.tokens)

    @property
    def num_blocks(self) -> int:
        return len(self.logical_blocks.blocks)


class FakeBlockManager:
    """Patch 0001's block info over a dict of ref counts (all on the GPU, access time = block id)."""

    def __init__(self, num_free: int, ref_counts: dict[int, int] | None = None) -> None:
        self.num_free = num_free
        self.ref_counts = ref_counts or {}
        self.callbacks: list[Any] = []

    def get_num_free_gpu_blocks(self) -> int:
        return self.num_free

    def get_block_info(self, blocks: Any) -> list[Any]:
        return [
            SimpleNamespace(
                logical_id=int(b), device="gpu", ref_count=self.ref_counts.get(int(b), 1), access_time=float(b)
            )
            for b in blocks
        ]

    def add_eviction_callback(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def remove_eviction_callback(self, callback: Any) -> None:
        self.callbacks.remove(callback)


class FakeScheduler:
    """The scheduler attributes the plan provider reads."""

    def __init__(self, running: list[FakeSeq], num_free: int, block_size: int = 16) -> None:
        self.running = running
        self.hanging: list[FakeSeq] = []
        self.block_manager = FakeBlockManager(num_free)
        self.cache_config = SimpleNamespace(block_size=block_size)
        self.block_trie = SimpleNamespace(enable=True, block_manager=self.block_manager, block_size=block_size)
