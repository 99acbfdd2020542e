"""SharedMemoryKVChannel passes the core DuplexKVChannel conformance suite in bf16, fp16 and fp32."""

from __future__ import annotations

import torch
from kv_transfer_helpers import channel, fill, make_kv, value_of

from sagellm.core.protocols import KVTransferChannel
from sagellm.core.testing import DuplexKVChannelConformance
from sagellm.kv_transfer import SharedMemoryKVChannel


class _ShmHarness(DuplexKVChannelConformance):
    dtype = torch.bfloat16

    def make_channel(self, node: str, num_blocks: int, staging_blocks: int) -> KVTransferChannel:
        return channel(node, make_kv(num_blocks, self.dtype), staging_blocks)

    def make_mismatched_channel(self, node: str, num_blocks: int) -> KVTransferChannel | None:
        return channel(node, make_kv(num_blocks, self.dtype, dim=16), 4)

    def fill_block(self, channel: KVTransferChannel, block: int, value: float) -> None:
        assert isinstance(channel, SharedMemoryKVChannel)
        fill(channel.kv.layers, block, value)  # type: ignore[arg-type]

    def read_block(self, channel: KVTransferChannel, block: int) -> float | None:
        assert isinstance(channel, SharedMemoryKVChannel)
        return value_of(channel.kv.layers, block)  # type: ignore[arg-type]


class TestShmChannelBfloat16(_ShmHarness):
    dtype = torch.bfloat16


class TestShmChannelFloat16(_ShmHarness):
    dtype = torch.float16


class TestShmChannelFloat32(_ShmHarness):
    dtype = torch.float32
