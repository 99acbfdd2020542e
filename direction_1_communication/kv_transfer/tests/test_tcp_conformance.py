"""TcpKVChannel passes the core KVTransferChannel and DuplexKVChannel conformance suites.

The duplex suite inherits every test of the plain one and drives receiving
through the protocol; the plain suite runs too, with its own receive hook,
so both contracts are checked as written. bf16, fp16, fp32, and int8 codes
with their per-block scales.
"""

from __future__ import annotations

import torch
from kv_transfer_helpers import fill, make_kv, value_of
from tcp_helpers import tcp_channel

from sagellm.core.protocols import KVTransferChannel
from sagellm.core.testing import DuplexKVChannelConformance, KVTransferChannelConformance
from sagellm.kv_transfer import KVBlocks, TcpKVChannel


def _kv(num_blocks: int, dtype: torch.dtype, dim: int | None = None) -> KVBlocks:
    # int8 blocks carry 16 bytes of scales; wider heads keep the 256-byte staging alignment from dominating
    dim = dim or (64 if dtype == torch.int8 else 8)
    layers = make_kv(num_blocks, dtype, dim=dim)
    scales = [(torch.ones(num_blocks), torch.ones(num_blocks)) for _ in layers] if dtype == torch.int8 else None
    return KVBlocks(layers, scales)


class _TcpHooks:
    dtype = torch.bfloat16

    def make_channel(self, node: str, num_blocks: int, staging_blocks: int) -> KVTransferChannel:
        if not hasattr(self, "_directory"):
            self._directory: dict[str, str] = {}
        return tcp_channel(node, _kv(num_blocks, self.dtype), staging_blocks, self._directory)

    def make_mismatched_channel(self, node: str, num_blocks: int) -> KVTransferChannel | None:
        return tcp_channel(
            node, _kv(num_blocks, self.dtype, dim=16 if self.dtype != torch.int8 else 32), 4, self._directory
        )

    def fill_block(self, channel: KVTransferChannel, block: int, value: float) -> None:
        assert isinstance(channel, TcpKVChannel)
        fill(channel.kv.layers, block, value)  # type: ignore[arg-type]
        if channel.kv.scales is not None:  # int8: the scale travels too; make it tell blocks apart
            for key_scale, value_scale in channel.kv.scales:
                key_scale[block] = value
                value_scale[block] = -value

    def read_block(self, channel: KVTransferChannel, block: int) -> float | None:
        assert isinstance(channel, TcpKVChannel)
        value = value_of(channel.kv.layers, block)  # type: ignore[arg-type]
        scales = channel.kv.scales or []
        if any(float(k[block]) != value or float(v[block]) != -value for k, v in scales):
            return None  # int8: the codes arrived without their scales
        return value


class _TcpDuplex(_TcpHooks, DuplexKVChannelConformance):
    pass


class _TcpPlain(_TcpHooks, KVTransferChannelConformance):
    def receive(self, channel: KVTransferChannel, timeout: float) -> list[int] | None:
        assert isinstance(channel, TcpKVChannel)
        incoming = channel.receive(timeout)
        if incoming is None:
            return None
        blocks = list(range(incoming.num_blocks))
        incoming.accept(blocks)
        return blocks

    def close(self, channel: KVTransferChannel) -> None:
        assert isinstance(channel, TcpKVChannel)
        channel.close()


class TestTcpDuplexBfloat16(_TcpDuplex):
    dtype = torch.bfloat16


class TestTcpDuplexFloat16(_TcpDuplex):
    dtype = torch.float16


class TestTcpDuplexFloat32(_TcpDuplex):
    dtype = torch.float32


class TestTcpDuplexInt8WithScales(_TcpDuplex):
    dtype = torch.int8


class TestTcpPlainBfloat16(_TcpPlain):
    dtype = torch.bfloat16
