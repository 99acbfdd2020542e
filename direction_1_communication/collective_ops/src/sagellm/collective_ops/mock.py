"""A group of one: every collective is the identity, for tests and single-process engines."""

from __future__ import annotations

from typing import Any

import torch

from sagellm.collective_ops.validation import (
    check_group,
    check_has_rows,
    check_other_peer,
    check_peer,
    op_code,
    scatter_rows,
)
from sagellm.core.errors import ConfigError


class MockBackend:
    """CommBackend for world_size 1: no rendezvous, no copies except where the contract asks for a new tensor."""

    def __init__(
        self,
        rank: int = 0,
        world_size: int = 1,
        init_method: str = "tcp://127.0.0.1:29500",
        timeout_s: float = 30.0,
    ) -> None:
        check_group(rank, world_size)
        if world_size != 1:
            raise ConfigError(f"the mock backend is a group of one; world_size {world_size} needs gloo, nccl or shm")
        self._closed = False

    @property
    def name(self) -> str:
        return "mock"

    @property
    def rank(self) -> int:
        return 0

    @property
    def world_size(self) -> int:
        return 1

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any:
        op_code(op)
        return tensor

    def all_gather(self, tensor: Any) -> Any:
        check_has_rows(tuple(tensor.shape), "all_gather")
        return torch.Tensor.clone(tensor)

    def reduce_scatter(self, tensor: Any, op: str = "sum") -> Any:
        op_code(op)
        scatter_rows(tuple(tensor.shape), 1)
        return torch.Tensor.clone(tensor)

    def broadcast(self, tensor: Any, src: int = 0) -> Any:
        check_peer(src, 1, "broadcast src")
        return tensor

    def send(self, tensor: Any, dst: int) -> None:
        check_other_peer(dst, 0, 1, "send dst")

    def recv(self, tensor: Any, src: int) -> Any:
        check_other_peer(src, 0, 1, "recv src")
        return tensor

    def barrier(self) -> None:
        return None

    def close(self) -> None:
        self._closed = True
