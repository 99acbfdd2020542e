"""One start-up line on what the KV pool holds: tokens, bytes, and the share of free memory it took.

Operators size ``--kv-memory-gb`` / ``--num-blocks`` from it (vLLM logs the
same), and a pool that takes most of free memory is a warning sign before
the first out-of-memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from sagellm.core.types import KVLayout

logger = logging.getLogger(__name__)
GIB = 2**30


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory still available on ``device`` (CUDA: free device memory; CPU: MemAvailable), if known."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def describe_kv(layout: KVLayout, device: torch.device) -> str:
    tokens = layout.num_blocks * layout.block_size
    size = layout.num_blocks * layout.bytes_per_block
    text = (
        f"KV cache: {layout.num_blocks} blocks x {layout.block_size} tokens = {tokens:,} tokens, {size / GIB:.2f} GiB"
    )
    free = free_memory_bytes(device)
    if free:
        text += f" ({size / (size + free):.0%} of the memory that was free on {device.type})"
    return text


def log_kv_capacity(layout: KVLayout, device: torch.device) -> None:
    logger.info(describe_kv(layout, device))
