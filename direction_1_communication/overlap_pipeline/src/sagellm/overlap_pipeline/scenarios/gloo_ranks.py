"""Runs a function on ``world_size`` local processes joined by a gloo group (for tests and benchmarks).

Each rank's return value comes back to the caller through a file
(``torch.save``), so tensors cross without a shared-memory queue. The
package uses ``torch.distributed`` directly: it may not depend on another
sageLLM module such as collective_ops.
"""

from __future__ import annotations

import datetime
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sagellm.core.errors import SageLLMError

RankFn = Callable[[int, int], Any]
GROUP_TIMEOUT = datetime.timedelta(seconds=120)  # a lost peer fails the collective instead of hanging


def gloo_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over the group in place, returning the tensor (blocking; releases the GIL while it runs)."""
    dist.all_reduce(tensor)
    return tensor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world_size: int, port: int, fn: RankFn, out_dir: str, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=GROUP_TIMEOUT)
    try:
        torch.save(fn(rank, world_size), Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_gloo_ranks(fn: RankFn, world_size: int = 2, threads_per_rank: int = 1) -> list[Any]:
    """``fn(rank, world_size)`` on every rank (a picklable, module-level function); their results by rank."""
    with tempfile.TemporaryDirectory(prefix="sagellm-gloo-") as out_dir:
        try:
            args = (world_size, _free_port(), fn, out_dir, threads_per_rank)
            mp.spawn(_rank_main, args=args, nprocs=world_size)  # type: ignore[attr-defined,no-untyped-call]
        except Exception as exc:
            raise SageLLMError(f"a gloo rank failed: {exc}") from exc
        return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
