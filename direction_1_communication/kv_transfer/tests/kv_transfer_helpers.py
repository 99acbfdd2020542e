"""Small KV stores and a harness shared by the tests."""

from __future__ import annotations

import uuid
from typing import Any

import torch

from sagellm.kv_transfer import SharedMemoryKVChannel

NAMESPACE = f"test-{uuid.uuid4().hex[:8]}"  # keeps parallel test runs apart
LAYERS, BLOCK_SIZE, HEADS, DIM = 2, 4, 2, 8  # one block of one layer's K: 64 elements


def make_kv(
    num_blocks: int, dtype: torch.dtype = torch.bfloat16, dim: int = DIM, layers: int = LAYERS
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    shape = (num_blocks, BLOCK_SIZE, HEADS, dim)
    return [(torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)) for _ in range(layers)]


def bytes_per_block(dtype: torch.dtype = torch.bfloat16) -> int:
    return 2 * LAYERS * BLOCK_SIZE * HEADS * DIM * torch.empty((), dtype=dtype).element_size()


def fill(kv: list[tuple[torch.Tensor, torch.Tensor]], block: int, value: float) -> None:
    for key, val in kv:
        key[block].fill_(value)
        val[block].fill_(-value)


def numbered_kv(num_blocks: int, first: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A KV whose block ``i`` holds ``first + i``: a block's value says where it came from."""
    kv = make_kv(num_blocks)
    for block in range(num_blocks):
        fill(kv, block, first + block)
    return kv


def value_of(kv: list[tuple[torch.Tensor, torch.Tensor]], block: int) -> float | None:
    x = float(kv[0][0][block].flatten()[0])
    uniform = all(bool((k[block] == x).all()) and bool((v[block] == -x).all()) for k, v in kv)
    return x if uniform else None


def channel(
    node: str, kv: list[tuple[torch.Tensor, torch.Tensor]], staging_blocks: int = 16, **options: float
) -> SharedMemoryKVChannel:
    staging_mb = staging_blocks * bytes_per_block(kv[0][0].dtype) / 2**20
    return SharedMemoryKVChannel(kv, node, namespace=NAMESPACE, staging_mb=staging_mb, **options)


def unique(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


def receive_into_consecutive(
    ch: Any, kv: list[tuple[torch.Tensor, torch.Tensor]], num_transfers: int
) -> list[tuple[Any, list[float | None]]]:
    """Accept ``num_transfers`` transfers (shm or tcp) into blocks 0, 1, 2...; (metadata, block values) of each."""
    next_block, got = 0, []
    for _ in range(num_transfers):
        incoming = ch.receive(timeout=60)
        assert incoming is not None
        blocks = list(range(next_block, next_block + incoming.num_blocks))
        next_block += incoming.num_blocks
        incoming.accept(blocks)
        got.append((incoming.metadata, [value_of(kv, b) for b in blocks]))
    return got


# ---------------------------------------------------------------- child processes (spawn imports this module)
def receiver_main(namespace: str, node: str, num_transfers: int, events: object, results: object) -> None:
    """Receive ``num_transfers`` transfers into consecutive blocks; report (metadata, values) of each."""
    kv = make_kv(16)
    with SharedMemoryKVChannel(kv, node, namespace=namespace, staging_mb=1) as ch:
        events.put("ready")  # type: ignore[attr-defined]
        results.put(receive_into_consecutive(ch, kv, num_transfers))  # type: ignore[attr-defined]
        events.get(timeout=60)  # type: ignore[attr-defined]  # stay until the parent has checked its handles


def sender_main(namespace: str, node: str, target: str, results: object, hold: object) -> None:
    """Send blocks 3 and 1 to ``target``; report the pid, the staging segment and the outcome."""
    with SharedMemoryKVChannel(numbered_kv(8, first=10.0), node, namespace=namespace, staging_mb=1) as ch:
        handle = ch.transfer([3, 1], target, metadata={"from": node})
        segment = ch._segment.name if ch._segment is not None else ""
        results.put(("sent", __import__("os").getpid(), segment))  # type: ignore[attr-defined]
        if hold is not None:
            hold.get(timeout=60)  # type: ignore[attr-defined]  # the parent kills us while we wait here
        handle.wait(60)
        results.put(("done", handle.done()))  # type: ignore[attr-defined]
