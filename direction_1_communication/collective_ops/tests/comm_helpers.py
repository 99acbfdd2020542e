"""Builders the spawned ranks call (module level, so they pickle) and the torch side of the suite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from sagellm.collective_ops import GlooBackend, MockBackend, ShmBackend

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "int64": torch.int64}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
TIMEOUT_S = 20.0
PEER_TIMEOUT_S = 4.0


class TorchTensorOps:
    """sagellm.core.testing.comm_backend.TensorOps for CPU torch tensors."""

    def make(self, values: Sequence[float], dtype: str) -> torch.Tensor:
        return torch.tensor(list(values), dtype=DTYPES[dtype])

    def values(self, tensor: torch.Tensor) -> list[float]:
        return (
            [float(v) for v in tensor.reshape(-1).float().tolist()]
            if tensor.dtype != torch.float32
            else tensor.reshape(-1).tolist()
        )

    def rows(self, tensor: torch.Tensor, n_rows: int) -> torch.Tensor:
        return tensor.reshape(n_rows, -1)

    def shape(self, tensor: torch.Tensor) -> tuple[int, ...]:
        return tuple(tensor.shape)

    def dtype(self, tensor: torch.Tensor) -> str:
        return NAMES[tensor.dtype]


def build_mock(rank: int, world_size: int, init_method: str) -> Any:
    return MockBackend(rank, world_size, init_method)


def build_gloo(rank: int, world_size: int, init_method: str) -> Any:
    return GlooBackend(rank, world_size, init_method, timeout_s=TIMEOUT_S)


def build_shm(rank: int, world_size: int, init_method: str) -> Any:
    # small slots so the suite's larger tensors take many chunks through both all_reduce paths
    return ShmBackend(rank, world_size, init_method, timeout_s=TIMEOUT_S, slot_bytes=64 << 10, small_bytes=16 << 10)


def build_shm_portable(rank: int, world_size: int, init_method: str) -> Any:
    return ShmBackend(
        rank, world_size, init_method, timeout_s=TIMEOUT_S, slot_bytes=64 << 10, small_bytes=16 << 10, isa="portable"
    )


def build_gloo_lonely(rank: int, world_size: int, init_method: str) -> Any:
    return GlooBackend(rank, world_size, init_method, timeout_s=PEER_TIMEOUT_S)


def build_shm_lonely(rank: int, world_size: int, init_method: str) -> Any:
    return ShmBackend(rank, world_size, init_method, timeout_s=PEER_TIMEOUT_S)


def spawn(target: Any, world_size: int, *args: Any, timeout_s: float = 120.0) -> list[str]:
    """Run ``target(rank, world_size, *args)`` in ``world_size`` spawned ranks; each rank's report, in rank order.

    A rank reports "ok", the text of what it raised, or (if it died or hung) says so.
    """
    import multiprocessing
    import queue as queue_module
    import time

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_spawned, args=(target, rank, world_size, args, results)) for rank in range(world_size)]
    for proc in procs:
        proc.start()
    reports: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(reports) < world_size and time.monotonic() < deadline:
        try:
            rank, report = results.get(timeout=0.5)
            reports[rank] = report
        except queue_module.Empty:
            if all(proc.exitcode is not None for proc in procs):
                break
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    return [
        reports.get(rank, f"rank {rank} died or hung (exit code {procs[rank].exitcode})") for rank in range(world_size)
    ]


def _spawned(target: Any, rank: int, world_size: int, args: tuple[Any, ...], results: Any) -> None:
    import traceback

    try:
        results.put((rank, target(rank, world_size, *args) or "ok"))
    except BaseException:
        results.put((rank, traceback.format_exc()))


def free_init_method() -> str:
    from sagellm.core.testing.comm_backend import free_init_method as free

    return free()
