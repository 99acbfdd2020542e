"""Seams for moving tensors and KV between devices and nodes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from sagellm.core.protocols.kv_pool import CompletionHandle
from sagellm.core.types.kv import BlockId

REDUCE_OPS = ("sum", "max", "min")
"""The reductions every CommBackend accepts as ``op``; anything else is a ConfigError."""


@runtime_checkable
class CommBackend(Protocol):
    """Collectives and point-to-point ops over a process group (tensors are opaque to core).

    One object per rank; every rank calls the same collectives in the same
    order with tensors of the same shape and dtype (as with NCCL and gloo).
    The contract, which ``sagellm.core.testing.CommBackendConformance``
    checks on every backend:

    - ``all_reduce`` and ``broadcast`` work in place and return the tensor
      they were given, so ``x = comm.all_reduce(x)`` and a bare call agree;
    - ``all_gather`` returns a new tensor: every rank's tensor concatenated
      along dim 0 in rank order (``world_size * n`` rows from ``n``);
    - ``reduce_scatter`` returns a new tensor: dim 0 split into
      ``world_size`` equal chunks, reduced, chunk ``rank`` kept; a dim 0 not
      divisible by ``world_size`` is a ConfigError on every rank;
    - ``send`` returns once the tensor may be reused; ``recv`` fills the
      tensor it was given and returns it;
    - ``op`` is one of :data:`REDUCE_OPS`; every rank gets bit-identical
      results (tensor-parallel ranks must not drift apart), and with two
      ranks an fp32 sum is bit-identical to gloo's;
    - a peer that never arrives is a ``SageLLMError`` after the backend's
      timeout, never a hang; ``close`` releases the group and may be called
      twice.
    """

    @property
    def name(self) -> str:
        """The registry name (``"gloo"``, ``"shm"``, ...), for logs and benchmark tables."""
        ...

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

    def close(self) -> None: ...


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
class TransferReceipt(Protocol):
    """A finished transfer as the receiver acknowledged it, timed on both sides."""

    @property
    def copy_s(self) -> float:
        """Seconds the receiver spent copying the blocks into its own KV."""
        ...

    @property
    def latency_s(self) -> float:
        """From ``transfer`` being called to the receiver's acknowledgement arriving."""
        ...


@runtime_checkable
class KVTransferHandle(CompletionHandle, Protocol):
    """What a duplex channel's ``transfer`` returns: completion plus the numbers an engine reports.

    The source blocks may be reused once ``transfer`` returns (the channel
    has staged them); the handle completes when the receiver has them, or
    fails with a ``SageLLMError`` saying why it could not take them.
    """

    @property
    def num_blocks(self) -> int: ...

    @property
    def num_bytes(self) -> int: ...

    @property
    def stage_s(self) -> float:
        """Seconds ``transfer`` spent staging the blocks."""
        ...

    def result(self, timeout: float | None = None) -> TransferReceipt:
        """The receipt; TimeoutError if not complete within ``timeout``, the failure if it failed."""
        ...


@runtime_checkable
class IncomingKV(Protocol):
    """One transfer waiting at the receiver: its size and metadata, then exactly one accept or reject.

    The receiver picks the blocks (it allocates ``num_blocks`` in its own
    pool once it knows how many), so receiving is two calls.
    """

    @property
    def num_blocks(self) -> int: ...

    @property
    def metadata(self) -> Any:
        """What the sender passed as ``transfer(..., metadata=)`` (JSON-like data)."""
        ...

    def accept(self, block_ids: Sequence[BlockId]) -> float:
        """Copy the blocks into ``block_ids`` (transfer order); the copy's seconds."""
        ...

    def reject(self, reason: str = "") -> None:
        """Refuse the transfer; the sender's handle fails with a SageLLMError carrying ``reason``."""
        ...


@runtime_checkable
class DuplexKVChannel(KVTransferChannel, Protocol):
    """A channel that sends blocks with metadata, receives them, and closes: what disaggregation needs."""

    def transfer(self, blocks: Sequence[BlockId], target_node: str, *, metadata: Any = None) -> KVTransferHandle: ...

    def receive(self, timeout: float | None = None) -> IncomingKV | None:
        """The next transfer posted to this node, or None if none came within ``timeout``."""
        ...

    def close(self, drain_timeout_s: float = 0.0) -> None:
        """Stop; pending transfers either side fail. Closing twice is harmless."""
        ...


@runtime_checkable
class PendingResult(Protocol):
    """Work an OverlapManager started and has not been waited for yet."""

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Any:
        """The work's result (re-raising its exception); TimeoutError if not done within ``timeout``."""
        ...


@runtime_checkable
class OverlapManager(Protocol):
    """Runs communication concurrently with computation.

    ``schedule`` runs both callables and returns ``(compute(), comm())`` once
    both finished: the same values a serial ``compute(); comm()`` gives, in
    less wall time when they overlap. ``start`` launches ``comm`` and returns
    at once, so a caller can compute and wait just before it needs the result
    (an all-reduce waited before the next layer uses it). An exception in
    either callable reaches the caller; nothing is dropped silently.
    ``close`` waits for started work and stops the manager's workers.
    """

    def schedule(self, compute: Callable[[], Any], comm: Callable[[], Any]) -> tuple[Any, Any]: ...

    def start(self, comm: Callable[[], Any]) -> PendingResult: ...

    def close(self) -> None: ...
