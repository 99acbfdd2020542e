"""Typed failures of a KV transfer, each also an instance of the core error a caller would catch.

A caller that only knows :mod:`sagellm.core.errors` still handles every
case sensibly (a full staging area *is* an :class:`OutOfBlocksError`, an
unknown target a :class:`LookupError`); one that imports this package can
tell them apart.
"""

from __future__ import annotations

from sagellm.core.errors import ConfigError, InvalidRequestError, OutOfBlocksError, SageLLMError


class KVTransferError(SageLLMError):
    """Base class of every error this package raises on purpose."""


class StagingFullError(KVTransferError, OutOfBlocksError):
    """The sender's shared-memory staging area has no room for the transfer (the receiver lags behind)."""


class UnknownTargetError(KVTransferError, LookupError):
    """No channel of that node name is listening in this namespace (never was, as far as we know)."""


class PeerClosedError(KVTransferError, ConnectionError):
    """The other side closed (or vanished) before the transfer completed."""


class ChannelClosedError(KVTransferError):
    """This channel was closed; it neither sends nor receives any more."""


class ShapeMismatchError(KVTransferError, InvalidRequestError):
    """Sender and receiver KV blocks differ in layers, block size, heads, head dim or dtype."""


class TransferRejectedError(KVTransferError):
    """The receiver refused the transfer (for instance it could not allocate blocks for it)."""


class PeerMismatchError(KVTransferError, ConfigError):
    """The peer refused this channel: it belongs to another namespace (another deployment)."""


class NodeNameInUseError(KVTransferError, ConfigError):
    """Another live channel already listens under this node name in this namespace."""


ACK_ERRORS: dict[str, type[KVTransferError]] = {
    "shape": ShapeMismatchError,
    "rejected": TransferRejectedError,
    "closed": PeerClosedError,
}
"""The error a sender's handle fails with, by the ``error_kind`` of the receiver's ACK (any channel)."""
