"""KVTransferChannelConformance is consistent (a plain reference passes) and sharp (bugs fail).

The reference is an in-process channel: a dict of nodes, numpy blocks (one
number each for keys and values), a staging budget counted in blocks.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from sagellm.core.errors import InvalidRequestError, OutOfBlocksError, SageLLMError
from sagellm.core.protocols import KVTransferChannel
from sagellm.core.testing import KVTransferChannelConformance
from sagellm.core.types import BlockId


class Handle:
    def __init__(self) -> None:
        self.error: SageLLMError | None = None
        self.finished = False

    def done(self) -> bool:
        return self.finished

    def wait(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class RefChannel:
    """Transfers are queued at the receiver; staging is freed when the receiver accepts."""

    def __init__(self, hub: dict[str, RefChannel], node: str, num_blocks: int, staging: int, dim: int = 1) -> None:
        self.hub, self.node, self.staging, self.dim = hub, node, staging, dim
        self.kv = np.zeros((num_blocks, 2, dim))
        self.staged = 0
        self.inbox: deque[tuple[RefChannel, np.ndarray, Handle]] = deque()
        self.pending: list[tuple[str, Handle, int]] = []
        self.next_free = 0
        self.closed = False
        hub[node] = self

    def transfer(self, blocks: Sequence[BlockId], target_node: str) -> Handle:
        if self.closed:
            raise SageLLMError("closed")
        target = self.hub.get(target_node)
        if target is None or target.closed:
            raise SageLLMError(f"no node {target_node}")
        if any(not 0 <= b < len(self.kv) for b in blocks):
            raise SageLLMError("bad block id")
        if self.staged + len(blocks) > self.staging:
            raise OutOfBlocksError("staging full")
        self.staged += len(blocks)
        handle = Handle()
        self.pending.append((target_node, handle, len(blocks)))
        target.inbox.append((self, self.kv[list(blocks)].copy(), handle))
        return handle

    def receive(self) -> list[int] | None:
        if not self.inbox:
            return None
        sender, data, handle = self.inbox.popleft()
        if data.shape[2] != self.dim:
            handle.error = InvalidRequestError("shape mismatch")
            handle.finished = True
            raise InvalidRequestError("shape mismatch")
        blocks = [(self.next_free + i) % len(self.kv) for i in range(len(data))]
        self.next_free += len(data)
        self.kv[blocks] = data
        sender.settle(handle, None)
        return blocks

    def settle(self, handle: Handle, error: SageLLMError | None) -> None:
        for entry in self.pending:
            if entry[1] is handle:
                self.pending.remove(entry)
                self.staged -= entry[2]
        handle.error, handle.finished = error, True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for sender, _, handle in self.inbox:
            sender.settle(handle, SageLLMError("receiver closed"))
        self.inbox.clear()


class ReferenceSuite(KVTransferChannelConformance):
    channel_class: type[RefChannel] = RefChannel

    def setup_method(self, method: object = None) -> None:
        super().setup_method(method)
        self.hub: dict[str, RefChannel] = {}

    def make_channel(self, node: str, num_blocks: int, staging_blocks: int) -> KVTransferChannel:
        return self.channel_class(self.hub, node, num_blocks, staging_blocks)

    def make_mismatched_channel(self, node: str, num_blocks: int) -> KVTransferChannel | None:
        return self.channel_class(self.hub, node, num_blocks, 4, dim=2)

    def fill_block(self, channel: Any, block: int, value: float) -> None:
        channel.kv[block, 0] = value
        channel.kv[block, 1] = -value

    def read_block(self, channel: Any, block: int) -> float | None:
        keys, values = channel.kv[block]
        x = float(keys.flat[0])
        return x if bool((keys == x).all() and (values == -x).all()) else None

    def receive(self, channel: Any, timeout: float) -> list[int] | None:
        result: list[int] | None = channel.receive()
        return result

    def close(self, channel: Any) -> None:
        channel.close()


class TestReferenceChannel(ReferenceSuite):
    pass


class ReversesBlocks(RefChannel):
    def transfer(self, blocks: Sequence[BlockId], target_node: str) -> Handle:
        return super().transfer(list(reversed(blocks)), target_node)


class NeverFull(RefChannel):
    def transfer(self, blocks: Sequence[BlockId], target_node: str) -> Handle:
        self.staging = 10**9
        return super().transfer(blocks, target_node)


class ForgetsPendingOnClose(RefChannel):
    def close(self) -> None:
        self.closed = True
        self.inbox.clear()


class IgnoresShapes(RefChannel):
    def receive(self) -> list[int] | None:
        if self.inbox and self.inbox[0][1].shape[2] != self.dim:
            sender, _, handle = self.inbox.popleft()
            sender.settle(handle, None)
            return []
        return super().receive()


@pytest.mark.parametrize(
    ("broken", "test_name"),
    [
        (ReversesBlocks, "test_blocks_arrive_intact_in_transfer_order"),
        (NeverFull, "test_full_staging_raises_out_of_blocks_then_recovers"),
        (ForgetsPendingOnClose, "test_a_pending_transfer_fails_when_its_receiver_closes"),
        (IgnoresShapes, "test_mismatched_block_shapes_fail_on_both_sides"),
    ],
)
def test_suite_catches_broken_channel(broken: type[RefChannel], test_name: str) -> None:
    suite = type(f"Broken{uuid.uuid4().hex[:6]}", (ReferenceSuite,), {"channel_class": broken})()
    suite.setup_method()
    try:
        with pytest.raises(AssertionError):
            getattr(suite, test_name)()
    finally:
        suite.teardown_method()


def test_hooks_must_be_overridden() -> None:
    suite = KVTransferChannelConformance()
    suite.setup_method()
    with pytest.raises(NotImplementedError):
        suite.test_implements_the_protocol()
