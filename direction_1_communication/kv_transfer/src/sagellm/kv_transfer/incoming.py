"""The receiving side of one transfer: look at it, then accept it into blocks of your choosing, or reject it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from sagellm.core.errors import InvalidRequestError
from sagellm.kv_transfer.errors import ChannelClosedError, PeerClosedError, ShapeMismatchError
from sagellm.kv_transfer.kv_blocks import BlockGeometry, KVBlocks
from sagellm.kv_transfer.wire import AckMsg, TransferMsg


class ReceivingEnd(Protocol):
    """What an incoming transfer needs of the channel that received it (shm and tcp alike)."""

    @property
    def kv(self) -> KVBlocks: ...

    @property
    def node(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    def answer(self, incoming: IncomingTransfer, ack: AckMsg) -> None:
        """Send the sender its acknowledgement (or refusal)."""
        ...

    def count_received(self, nbytes: int, copy_s: float) -> None: ...


class IncomingTransfer:
    """A transfer posted to this node, staged (in its sender's shared memory, or received) until accepted.

    The receiver decides where the blocks go (it allocates them in its own
    pool once it knows ``num_blocks``), so receiving is two calls::

        incoming = channel.receive(timeout=1.0)          # None if nothing came
        blocks = pool.allocate(incoming.num_blocks)
        incoming.accept(blocks)                          # copies, then tells the sender

    Exactly one of :meth:`accept` and :meth:`reject` answers a transfer; the
    sender's handle completes (or fails) when the answer arrives.
    """

    def __init__(self, channel: ReceivingEnd, msg: TransferMsg, staged: Callable[[], torch.Tensor]) -> None:
        self._channel = channel
        self._msg = msg
        self._staged = staged  # the flat uint8 bytes of the transfer: shared memory, or a received buffer
        self.metadata: Any = msg.metadata
        self.answered = False
        self.void = False  # its sender closed before we answered: the staged data is no longer promised

    @property
    def source(self) -> str:
        return self._msg.src

    @property
    def transfer_id(self) -> int:
        return self._msg.transfer_id

    @property
    def num_blocks(self) -> int:
        return self._msg.num_blocks

    @property
    def geometry(self) -> BlockGeometry:
        return self._msg.geometry

    @property
    def num_bytes(self) -> int:
        """KV bytes of the blocks (staged metadata not counted)."""
        return self._msg.num_blocks * self._msg.geometry.bytes_per_block

    def accept(self, block_ids: Sequence[int]) -> float:
        """Copy the blocks into ``block_ids`` of this channel's KV (in transfer order); the copy's seconds.

        ShapeMismatchError (after telling the sender) if the two KV stores'
        blocks differ; PeerClosedError if the sender closed meanwhile.
        """
        self._check_answerable()
        channel = self._channel
        ids = channel.kv.check_ids(block_ids)
        if len(ids) != self.num_blocks:
            raise InvalidRequestError(
                f"transfer {self.transfer_id} carries {self.num_blocks} blocks, got {len(ids)} ids"
            )
        if self.geometry != channel.kv.geometry:
            text = (
                f"blocks from {self.source!r} are {self.geometry.describe()}, "
                f"this KV ({channel.node!r}) holds {channel.kv.geometry.describe()}"
            )
            self._answer("shape", text)
            raise ShapeMismatchError(text)
        start = time.perf_counter()
        if ids:
            channel.kv.scatter(self._staged(), ids)
        copy_s = time.perf_counter() - start
        self._answer(None, "", copy_s)
        channel.count_received(self.num_bytes, copy_s)
        return copy_s

    def reject(self, reason: str = "") -> None:
        """Refuse the transfer; the sender's handle fails with TransferRejectedError(``reason``)."""
        self._check_answerable()
        self._answer("rejected", reason or f"{self._channel.node!r} rejected the transfer")

    def load_staged_metadata(self) -> None:
        """Read metadata too large for the message from after the staged blocks."""
        msg = self._msg
        if msg.metadata_nbytes:
            start = msg.num_blocks * msg.geometry.bytes_per_block
            raw = self._staged()[start : start + msg.metadata_nbytes]
            self.metadata = json.loads(raw.numpy().tobytes())

    def _check_answerable(self) -> None:
        if self.answered:
            raise InvalidRequestError(f"transfer {self.transfer_id} from {self.source!r} was already answered")
        if self._channel.closed:
            raise ChannelClosedError(f"channel {self._channel.node!r} is closed")
        if self.void:
            raise PeerClosedError(f"{self.source!r} closed before transfer {self.transfer_id} was accepted")

    def _answer(self, error_kind: str | None, error: str, copy_s: float = 0.0) -> None:
        self.answered = True
        self._channel.answer(self, AckMsg(self._channel.node, self.transfer_id, error_kind, error, copy_s))

    def __repr__(self) -> str:
        return f"IncomingTransfer(source={self.source!r}, id={self.transfer_id}, num_blocks={self.num_blocks})"
