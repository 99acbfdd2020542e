"""Seams for moving tensors and KV between devices and nodes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from sagellm.core.protocols.kv_pool import CompletionHandle
from sagellm.core.types.kv import BlockId


@runtime_checkable
class CommBackend(Protocol):
    """Collectives and point-to-point ops over a process group (tensors are opaque here)."""

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def all_reduce(self, tensor: Any, op: str = "sum") -> Any: ...

    def all_gather(self, tensor: Any) -> Any: ...

    def reduce_scatter(self, tensor: Any, op: str = "sum") -> Any: ...

    def broadcast(self, tensor: Any, src: int = 0) -> Any: ...

    def send(self, tensor: Any, dst: int) -> None: ...

    def recv(self, tensor: Any, src: int) -> Any: ...

    def barrier(self) -> None: ...


@runtime_checkable
class InterconnectBackend(CommBackend, Protocol):
    """A domestic accelerator's collective library (Ascend HCCL, Cambricon CNCL, Hygon RCCL, Kunlun BKCL).

    The same collectives as :class:`CommBackend`; it also says which vendor
    it drives and which torch device string that vendor's torch expects
    ("npu", "mlu", "cuda", "xpu"), so an engine can place tensors for it.
    Its own registry group and config section (``domestic_interconnect``)
    keep vendor backends apart from the generic ``collective_ops`` ones.
    """

    @property
    def vendor(self) -> str: ...

    @property
    def device_type(self) -> str: ...


@runtime_checkable
class KVTransferChannel(Protocol):
    """Ships KV blocks to another worker (prefill -> decode disaggregation)."""

    def transfer(self, blocks: Sequence[BlockId], target_node: str) -> CompletionHandle: ...


@runtime_checkable
class OverlapManager(Protocol):
    """Runs communication concurrently with computation."""

    def schedule(self, compute: Callable[[], Any], comm: Callable[[], Any]) -> tuple[Any, Any]: ...
