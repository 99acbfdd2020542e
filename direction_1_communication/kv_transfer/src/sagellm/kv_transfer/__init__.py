"""sagellm-kv-transfer: ships KV blocks between prefill and decode workers.

``SharedMemoryKVChannel`` (registry name ``shm``) implements
:class:`sagellm.core.protocols.KVTransferChannel` between processes of one
machine: blocks are staged in shared memory, small JSON messages over Unix
datagram sockets say where.
"""

from sagellm.kv_transfer.channel import ChannelStats, SharedMemoryKVChannel
from sagellm.kv_transfer.errors import (
    ChannelClosedError,
    KVTransferError,
    NodeNameInUseError,
    PeerClosedError,
    ShapeMismatchError,
    StagingFullError,
    TransferRejectedError,
    UnknownTargetError,
)
from sagellm.kv_transfer.handle import TransferHandle, TransferResult
from sagellm.kv_transfer.incoming import IncomingTransfer
from sagellm.kv_transfer.kv_blocks import BlockGeometry, KVBlocks
from sagellm.kv_transfer.segment import live_segments, sweep_stale
from sagellm.kv_transfer.version import __version__

__all__ = [
    "BlockGeometry",
    "ChannelClosedError",
    "ChannelStats",
    "IncomingTransfer",
    "KVBlocks",
    "KVTransferError",
    "NodeNameInUseError",
    "PeerClosedError",
    "ShapeMismatchError",
    "SharedMemoryKVChannel",
    "StagingFullError",
    "TransferHandle",
    "TransferRejectedError",
    "TransferResult",
    "UnknownTargetError",
    "__version__",
    "live_segments",
    "sweep_stale",
]
