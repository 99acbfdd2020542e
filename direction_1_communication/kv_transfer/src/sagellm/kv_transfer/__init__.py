"""sagellm-kv-transfer: ships KV blocks between prefill and decode workers.

Two implementations of :class:`sagellm.core.protocols.DuplexKVChannel`:
``SharedMemoryKVChannel`` (registry name ``shm``) between processes of one
machine (blocks staged in shared memory, small JSON messages over Unix
datagram sockets say where), and ``TcpKVChannel`` (``tcp``) between
processes on any hosts (length-prefixed frames over TCP).
"""

from sagellm.kv_transfer.channel import SharedMemoryKVChannel
from sagellm.kv_transfer.channel_stats import ChannelStats
from sagellm.kv_transfer.errors import (
    ChannelClosedError,
    KVTransferError,
    NodeNameInUseError,
    PeerClosedError,
    PeerMismatchError,
    ShapeMismatchError,
    StagingFullError,
    TransferRejectedError,
    UnknownTargetError,
)
from sagellm.kv_transfer.handle import TransferHandle, TransferResult
from sagellm.kv_transfer.incoming import IncomingTransfer
from sagellm.kv_transfer.kv_blocks import BlockGeometry, KVBlocks
from sagellm.kv_transfer.segment import live_segments, sweep_stale
from sagellm.kv_transfer.tcp_channel import TcpKVChannel
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
    "PeerMismatchError",
    "ShapeMismatchError",
    "SharedMemoryKVChannel",
    "StagingFullError",
    "TcpKVChannel",
    "TransferHandle",
    "TransferRejectedError",
    "TransferResult",
    "UnknownTargetError",
    "__version__",
    "live_segments",
    "sweep_stale",
]
