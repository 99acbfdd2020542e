"""Conformance suite for :class:`sagellm.core.protocols.KVTransferChannel`.

The protocol only names the sending half (``transfer(blocks, target_node)``);
how a receiver takes delivery, and what the blocks are made of, belong to the
implementation. So the suite drives both halves through hooks the
implementer writes, and sees block contents only as numbers: core stays
free of torch. A block "holds ``x``" when every key element of it, in every
layer, equals ``x`` and every value element equals ``-x``. The suite uses
small integers, exact in any float dtype.

The suite names the nodes itself (unique per test), and closes every
channel it made when a test ends.
"""

from __future__ import annotations

import uuid

from sagellm.core.errors import OutOfBlocksError, SageLLMError
from sagellm.core.protocols import CompletionHandle, KVTransferChannel
from sagellm.core.testing.raises import raises

NUM_BLOCKS = 8
STAGING_BLOCKS = 4  # a channel can have this many blocks in flight
WAIT_S = 10.0


class KVTransferChannelConformance:
    """Inherit and implement the hooks below (:meth:`make_mismatched_channel` is optional)."""

    def make_channel(self, node: str, num_blocks: int, staging_blocks: int) -> KVTransferChannel:
        """A channel named ``node`` over a fresh KV store of ``num_blocks`` blocks.

        It can have ``staging_blocks`` blocks sent but not yet received
        (more raises OutOfBlocksError); channels made by one test reach each
        other by node name.
        """
        raise NotImplementedError

    def make_mismatched_channel(self, node: str, num_blocks: int) -> KVTransferChannel | None:
        """A channel whose blocks differ in shape from :meth:`make_channel`'s; None skips the test."""
        return None

    def fill_block(self, channel: KVTransferChannel, block: int, value: float) -> None:
        """Make ``block`` of the channel's KV hold ``value`` (keys ``value``, values ``-value``, every layer)."""
        raise NotImplementedError

    def read_block(self, channel: KVTransferChannel, block: int) -> float | None:
        """The value ``block`` holds, or None if its elements are not uniform in that sense."""
        raise NotImplementedError

    def receive(self, channel: KVTransferChannel, timeout: float) -> list[int] | None:
        """Take the next transfer into blocks the receiver picks; their ids in transfer order.

        None if nothing arrived within ``timeout``; raise what the
        implementation raises for a transfer it cannot take.
        """
        raise NotImplementedError

    def close(self, channel: KVTransferChannel) -> None:
        """Release the channel (closing twice must be harmless)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ helpers
    def setup_method(self, method: object = None) -> None:
        self._made: list[KVTransferChannel] = []

    def teardown_method(self, method: object = None) -> None:
        for channel in reversed(getattr(self, "_made", [])):
            self.close(channel)

    def _node(self, role: str) -> str:
        return f"{role}-{uuid.uuid4().hex[:12]}"

    def _channel(self, role: str, staging_blocks: int = STAGING_BLOCKS) -> tuple[KVTransferChannel, str]:
        node = self._node(role)
        channel = self.make_channel(node, NUM_BLOCKS, staging_blocks)
        if not hasattr(self, "_made"):
            self._made = []
        self._made.append(channel)
        return channel, node

    def _pair(self, staging_blocks: int = STAGING_BLOCKS) -> tuple[KVTransferChannel, KVTransferChannel, str]:
        sender, _ = self._channel("send", staging_blocks)
        receiver, target = self._channel("recv", staging_blocks)
        return sender, receiver, target

    def _filled(self, channel: KVTransferChannel) -> None:
        for block in range(NUM_BLOCKS):
            self.fill_block(channel, block, float(block + 1))

    def _received(self, receiver: KVTransferChannel) -> list[int]:
        blocks = self.receive(receiver, WAIT_S)
        assert blocks is not None, "nothing arrived"
        return blocks

    def _completes(self, handle: CompletionHandle) -> None:
        handle.wait(WAIT_S)
        assert handle.done()

    # -------------------------------------------------------------------- tests
    def test_implements_the_protocol(self) -> None:
        channel, _ = self._channel("node")
        assert isinstance(channel, KVTransferChannel)

    def test_blocks_arrive_intact_in_transfer_order(self) -> None:
        sender, receiver, target = self._pair()
        self._filled(sender)
        handle = sender.transfer([4, 1, 3], target)
        assert isinstance(handle, CompletionHandle)
        blocks = self._received(receiver)
        assert [self.read_block(receiver, b) for b in blocks] == [5.0, 2.0, 4.0]
        self._completes(handle)

    def test_transfers_arrive_in_the_order_sent(self) -> None:
        sender, receiver, target = self._pair()
        self._filled(sender)
        handles = [sender.transfer([b], target) for b in (6, 0, 2)]
        got = [self.read_block(receiver, self._received(receiver)[0]) for _ in handles]
        assert got == [7.0, 1.0, 3.0]
        for handle in handles:
            self._completes(handle)

    def test_two_senders_reach_one_receiver(self) -> None:
        first, receiver, target = self._pair()
        second, _ = self._channel("send")
        self.fill_block(first, 0, 11.0)
        self.fill_block(second, 0, 22.0)
        handles = [first.transfer([0], target), second.transfer([0], target)]
        got = sorted(self.read_block(receiver, self._received(receiver)[0]) or 0.0 for _ in handles)
        assert got == [11.0, 22.0]
        for handle in handles:
            self._completes(handle)

    def test_an_empty_transfer_completes(self) -> None:
        sender, receiver, target = self._pair()
        handle = sender.transfer([], target)
        assert self._received(receiver) == []
        self._completes(handle)

    def test_nothing_to_receive_times_out_with_none(self) -> None:
        _, receiver, _ = self._pair()
        assert self.receive(receiver, 0.05) is None

    def test_unknown_target_raises(self) -> None:
        sender, _ = self._channel("send")
        with raises(SageLLMError):
            sender.transfer([0], self._node("nobody"))

    def test_block_id_outside_the_kv_raises(self) -> None:
        sender, _, target = self._pair()
        with raises(SageLLMError):
            sender.transfer([NUM_BLOCKS], target)

    def test_full_staging_raises_out_of_blocks_then_recovers(self) -> None:
        sender, receiver, target = self._pair()
        self._filled(sender)
        first = sender.transfer([0, 1, 2], target)
        with raises(OutOfBlocksError):
            sender.transfer([3, 4], target)
        assert [self.read_block(receiver, b) for b in self._received(receiver)] == [1.0, 2.0, 3.0]
        self._completes(first)
        again = sender.transfer([3, 4], target)  # the room came back once the receiver took the blocks
        assert [self.read_block(receiver, b) for b in self._received(receiver)] == [4.0, 5.0]
        self._completes(again)

    def test_a_transfer_larger_than_the_staging_area_raises_out_of_blocks(self) -> None:
        sender, _, target = self._pair()
        with raises(OutOfBlocksError):
            sender.transfer(list(range(STAGING_BLOCKS + 1)), target)

    def test_sending_to_a_closed_peer_raises(self) -> None:
        sender, receiver, target = self._pair()
        self._completes_one(sender, receiver, target)
        self.close(receiver)
        with raises(SageLLMError):
            sender.transfer([0], target)

    def test_a_pending_transfer_fails_when_its_receiver_closes(self) -> None:
        sender, receiver, target = self._pair()
        handle = sender.transfer([0], target)
        self.close(receiver)
        with raises(SageLLMError):
            handle.wait(WAIT_S)
        assert handle.done()

    def test_a_closed_channel_refuses_to_send(self) -> None:
        sender, _, target = self._pair()
        self.close(sender)
        self.close(sender)  # twice is harmless
        with raises(SageLLMError):
            sender.transfer([0], target)

    def test_mismatched_block_shapes_fail_on_both_sides(self) -> None:
        sender, _ = self._channel("send")
        node = self._node("other")
        receiver = self.make_mismatched_channel(node, NUM_BLOCKS)
        if receiver is None:
            return
        self._made.append(receiver)
        handle = sender.transfer([0], node)
        with raises(SageLLMError):
            self.receive(receiver, WAIT_S)
        with raises(SageLLMError):
            handle.wait(WAIT_S)

    def _completes_one(self, sender: KVTransferChannel, receiver: KVTransferChannel, target: str) -> None:
        handle = sender.transfer([0], target)
        self._received(receiver)
        self._completes(handle)
