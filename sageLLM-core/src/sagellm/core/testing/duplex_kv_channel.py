"""Conformance suite for :class:`sagellm.core.protocols.DuplexKVChannel`.

Everything :class:`KVTransferChannelConformance` checks, with receiving
and closing driven through the protocol itself (the implementer writes only
the channel factory and the block fill/read hooks), plus what
disaggregated serving relies on: metadata travels with the blocks, a
rejected transfer fails its sender, the handle reports its size and a
receipt, and a transfer is answered exactly once.
"""

from __future__ import annotations

from sagellm.core.errors import SageLLMError
from sagellm.core.protocols import DuplexKVChannel, IncomingKV, KVTransferChannel, KVTransferHandle, TransferReceipt
from sagellm.core.testing.kv_transfer import NUM_BLOCKS, WAIT_S, KVTransferChannelConformance
from sagellm.core.testing.raises import raises


class DuplexKVChannelConformance(KVTransferChannelConformance):
    """Inherit and implement :meth:`make_channel`, :meth:`fill_block`, :meth:`read_block`
    (and optionally :meth:`make_mismatched_channel`)."""

    def receive(self, channel: KVTransferChannel, timeout: float) -> list[int] | None:
        incoming = self._incoming(channel, timeout)
        if incoming is None:
            return None
        blocks = self._allocate(channel, incoming.num_blocks)
        incoming.accept(blocks)
        return blocks

    def close(self, channel: KVTransferChannel) -> None:
        assert isinstance(channel, DuplexKVChannel)
        channel.close()

    # ------------------------------------------------------------------ helpers
    def _incoming(self, channel: KVTransferChannel, timeout: float) -> IncomingKV | None:
        assert isinstance(channel, DuplexKVChannel)
        incoming = channel.receive(timeout)
        assert incoming is None or isinstance(incoming, IncomingKV)
        return incoming

    def _allocate(self, channel: KVTransferChannel, num_blocks: int) -> list[int]:
        """The suite's own receiver-side allocator: round robin over the KV's blocks."""
        if not hasattr(self, "_next_free"):
            self._next_free: dict[int, int] = {}
        start = self._next_free.get(id(channel), 0)
        self._next_free[id(channel)] = start + num_blocks
        return [(start + i) % NUM_BLOCKS for i in range(num_blocks)]

    def _duplex_pair(self) -> tuple[DuplexKVChannel, DuplexKVChannel, str]:
        sender, receiver, target = self._pair()
        assert isinstance(sender, DuplexKVChannel) and isinstance(receiver, DuplexKVChannel)
        return sender, receiver, target

    def _arrived(self, receiver: DuplexKVChannel) -> IncomingKV:
        incoming = self._incoming(receiver, WAIT_S)
        assert incoming is not None, "nothing arrived"
        return incoming

    # -------------------------------------------------------------------- tests
    def test_implements_the_duplex_protocol(self) -> None:
        channel, _ = self._channel("node")
        assert isinstance(channel, DuplexKVChannel)

    def test_metadata_travels_with_the_blocks(self) -> None:
        sender, receiver, target = self._duplex_pair()
        metadata = {"request_id": "r-1", "prompt": [1, 2, 3], "sampling": {"temperature": 0.5}}
        handle = sender.transfer([2, 5], target, metadata=metadata)
        incoming = self._arrived(receiver)
        assert incoming.num_blocks == 2
        assert incoming.metadata == metadata
        incoming.accept(self._allocate(receiver, 2))
        self._completes(handle)

    def test_the_handle_reports_size_and_a_receipt(self) -> None:
        sender, receiver, target = self._duplex_pair()
        self._filled(sender)
        handle = sender.transfer([0, 1, 2], target)
        assert isinstance(handle, KVTransferHandle)
        assert handle.num_blocks == 3 and handle.num_bytes > 0 and handle.stage_s >= 0.0
        self._arrived(receiver).accept(self._allocate(receiver, 3))
        receipt = handle.result(WAIT_S)
        assert isinstance(receipt, TransferReceipt)
        assert receipt.copy_s >= 0.0 and receipt.latency_s >= 0.0

    def test_an_empty_transfer_reports_no_bytes(self) -> None:
        sender, receiver, target = self._duplex_pair()
        handle = sender.transfer([], target, metadata={"only": "metadata"})
        assert handle.num_blocks == 0 and handle.num_bytes == 0
        incoming = self._arrived(receiver)
        assert incoming.metadata == {"only": "metadata"}
        incoming.accept([])
        self._completes(handle)

    def test_a_rejected_transfer_fails_its_sender_and_frees_the_room(self) -> None:
        sender, receiver, target = self._duplex_pair()
        self._filled(sender)
        handle = sender.transfer([0, 1, 2, 3], target)
        self._arrived(receiver).reject("no room here")
        with raises(SageLLMError):
            handle.wait(WAIT_S)
        assert handle.done()
        with raises(SageLLMError):
            handle.result(WAIT_S)
        again = sender.transfer([4, 5, 6, 7], target)  # the whole staging area is free again
        assert [self.read_block(receiver, b) for b in self._received(receiver)] == [5.0, 6.0, 7.0, 8.0]
        self._completes(again)

    def test_a_transfer_is_answered_once(self) -> None:
        sender, receiver, target = self._duplex_pair()
        handle = sender.transfer([0], target)
        incoming = self._arrived(receiver)
        incoming.accept(self._allocate(receiver, 1))
        with raises(SageLLMError):
            incoming.accept(self._allocate(receiver, 1))
        with raises(SageLLMError):
            incoming.reject()
        self._completes(handle)

    def test_accepting_into_the_wrong_number_of_blocks_raises(self) -> None:
        sender, receiver, target = self._duplex_pair()
        handle = sender.transfer([0, 1], target)
        incoming = self._arrived(receiver)
        with raises(SageLLMError):
            incoming.accept(self._allocate(receiver, 1))
        incoming.accept(self._allocate(receiver, 2))  # the transfer is still open
        self._completes(handle)
