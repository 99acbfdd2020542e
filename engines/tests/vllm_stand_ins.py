"""Stand-ins for vLLM's side of the KV connector, so the plugin's sageLLM logic tests without vLLM.

``Exchange`` plays both vLLM processes around the plugin's two halves: the
scheduler side (prefix index, tier directory) plans a step, the worker
side (a registry KV pool with host/disk tiers) executes it against
stand-in KV caches, with a "forward" in between that writes fresh KV into
the blocks the step computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.engines.vllm_plugin import PluginSettings, ScheduledRequest, SchedulerSide, StepPlan, build_store
from sagellm.engines.vllm_plugin.block_layout import shape_of

BLOCK_SIZE = 4
NUM_BLOCKS = 16
NUM_LAYERS = 2
HEADS = 2
HEAD_DIM = 8


@dataclass
class StandInRequest:
    """vLLM's ``Request`` as the connector reads it."""

    request_id: str
    all_token_ids: list[int]
    lora_request: Any = None


def settings(
    tmp_path: Path, *, staging: int = 8, host: int = 8, disk: int | None = None, index: str = "hash_chain"
) -> PluginSettings:
    """Plugin settings over a paged pool with the given tier sizes (in blocks) and prefix index."""
    kv_pool: dict[str, Any] = {"num_blocks": staging, "tiers": "device,host", "host_num_blocks": host}
    if disk is not None:
        kv_pool |= {"tiers": "device,host,disk", "disk_num_blocks": disk, "disk_dir": str(tmp_path)}
    sections = {"kv_pool": kv_pool, "prefix_cache": {"implementation": index}}
    return PluginSettings.from_extra_config({"sagellm_config": sections})


def stand_in_caches(layout: str) -> dict[str, torch.Tensor]:
    """Zeroed per-layer caches in one of vLLM's layouts: ``kv_major`` [2, N, ...] or ``block_major`` [N, ...]."""
    shape = {
        "kv_major": (2, NUM_BLOCKS, BLOCK_SIZE, HEADS, HEAD_DIM),  # FlashAttention
        "block_major": (NUM_BLOCKS, HEADS, BLOCK_SIZE, 2 * HEAD_DIM),  # standardized [B, H, N, C]
    }[layout]
    return {f"model.layers.{i}.self_attn.attn": torch.zeros(shape) for i in range(NUM_LAYERS)}


def block_of(kv: torch.Tensor, block_id: int) -> torch.Tensor:
    """One block of one layer, whatever the layout (a copy)."""
    dim = 0 if kv.shape[0] == NUM_BLOCKS else 1
    return kv.select(dim, block_id).clone()


def blocks_of(caches: dict[str, torch.Tensor], block_ids: Sequence[int]) -> list[torch.Tensor]:
    return [torch.stack([block_of(kv, b) for b in block_ids]) for kv in caches.values()]


def write_random(caches: dict[str, torch.Tensor], block_ids: Sequence[int], seed: int) -> None:
    """What a forward pass does to the blocks it computes: new KV in every layer."""
    generator = torch.Generator().manual_seed(seed)
    for kv in caches.values():
        dim = 0 if kv.shape[0] == NUM_BLOCKS else 1
        for block_id in block_ids:
            block = kv.select(dim, block_id)
            block.copy_(torch.randn(block.shape, generator=generator))


class Exchange:
    """vLLM's scheduler and one worker, scripted around the plugin's two halves."""

    def __init__(self, plugin: PluginSettings, caches: dict[str, torch.Tensor]) -> None:
        self.caches = caches
        shape = shape_of(caches, NUM_BLOCKS, BLOCK_SIZE)
        index = registry.create_prefix_index(plugin.config, block_size=BLOCK_SIZE)
        self.scheduler = SchedulerSide(index, plugin.tier_sizes(shape))
        self.store = build_store(plugin, caches, NUM_BLOCKS, shape)

    def admit(self, request: StandInRequest, block_ids: Sequence[int], vllm_hit_tokens: int = 0) -> int:
        """vLLM's admission: match past its own hit, allocate, tell the connector; the external tokens."""
        external = self.scheduler.num_new_matched_tokens(request, vllm_hit_tokens)
        self.scheduler.after_alloc(request, block_ids, external)
        return external

    def step(self, scheduled: Sequence[ScheduledRequest], forward: Callable[[], None] | None = None) -> StepPlan:
        """One engine step: plan, load, forward (writes KV), save layer by layer, finish."""
        plan = self.scheduler.build_plan(scheduled)
        self.store.begin(plan)
        for name in self.caches:
            self.store.load_layer(name)
        if forward is not None:
            forward()
        for name in self.caches:
            self.store.save_layer(name)
        self.store.finish()
        return plan


def prefill(req_id: str, block_ids: Sequence[int], num_tokens: int, num_computed: int = 0) -> ScheduledRequest:
    return ScheduledRequest(req_id, tuple(block_ids), True, num_computed, num_tokens - num_computed)


def load_config_with(**sections: Any) -> Any:
    return load_config(None, **sections)
