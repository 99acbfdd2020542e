"""An in-process CommBackend whose ranks are threads: tensor-parallel shards tested without processes.

Each collective parks every rank's tensor in a shared slot list behind a
barrier, then every rank computes the same rank-ordered result, so the
shards' arithmetic is tested apart from any real backend's transport.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch


class ThreadGroup:
    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.slots: list[torch.Tensor | None] = [None] * world_size
        self.barrier = threading.Barrier(world_size, timeout=60)

    def exchange(self, rank: int, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's tensor, in rank order (a copy of the list, taken before anyone moves on)."""
        self.slots[rank] = tensor
        self.barrier.wait()
        seen = [t for t in self.slots if t is not None]
        self.barrier.wait()
        return seen

    def run(self, work: Callable[[int], Any]) -> list[Any]:
        """``work(rank)`` on one thread per rank; the results in rank order (a raised error re-raised)."""
        results: list[Any] = [None] * self.world_size
        errors: list[BaseException] = []

        def target(rank: int) -> None:
            try:
                results[rank] = work(rank)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(rank,)) for rank in range(self.world_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return results


class ThreadComm:
    """Rank ``rank`` of a :class:`ThreadGroup`, with the collectives tensor parallelism uses."""

    name = "threads"

    def __init__(self, group: ThreadGroup, rank: int) -> None:
        self.group = group
        self.rank = rank
        self.world_size = group.world_size

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        parts = self.group.exchange(self.rank, tensor.clone())
        total = parts[0].float()
        for part in parts[1:]:
            total = total + part.float()
        tensor.copy_(total.to(tensor.dtype))
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.group.exchange(self.rank, tensor.clone()))

    def reduce_scatter(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        raise NotImplementedError

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        tensor.copy_(self.group.exchange(self.rank, tensor.clone())[src])
        return tensor

    def send(self, tensor: torch.Tensor, dst: int) -> None:
        raise NotImplementedError

    def recv(self, tensor: torch.Tensor, src: int) -> torch.Tensor:
        raise NotImplementedError

    def barrier(self) -> None:
        self.group.barrier.wait()

    def close(self) -> None:
        pass
