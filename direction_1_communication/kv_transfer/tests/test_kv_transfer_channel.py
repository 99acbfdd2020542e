"""SharedMemoryKVChannel beyond the conformance suite: metadata, back-pressure, errors, cleanup, registry."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import torch
from kv_transfer_helpers import NAMESPACE, channel, fill, make_kv, numbered_kv, unique, value_of

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError, InvalidRequestError, KVBlockError, NotSupportedError, OutOfBlocksError
from sagellm.kv_transfer import (
    ChannelClosedError,
    KVBlocks,
    NodeNameInUseError,
    PeerClosedError,
    SharedMemoryKVChannel,
    StagingFullError,
    TransferRejectedError,
    UnknownTargetError,
    live_segments,
    sweep_stale,
)
from sagellm.kv_transfer.mailbox import address
from sagellm.kv_transfer.segment import PREFIX, Segment, shm_dir


@pytest.fixture
def pair():
    src_kv, dst_kv = numbered_kv(8, first=1.0), make_kv(8)
    src, dst = channel(unique("src"), src_kv, 4), channel(unique("dst"), dst_kv, 4)
    yield src, dst
    src.close()
    dst.close()


def test_metadata_travels_inline_and_staged() -> None:
    with channel(unique("a"), make_kv(4), 512) as src, channel(unique("b"), make_kv(8)) as dst:
        _metadata_round_trip(src, dst)


def _metadata_round_trip(src: SharedMemoryKVChannel, dst: SharedMemoryKVChannel) -> None:
    small = {"request_id": "r1", "tokens": [1, 2, 3]}
    big = {"request_id": "r2", "tokens": list(range(20_000))}  # ~110 KB of JSON: staged after the blocks
    h1 = src.transfer([0], dst.node, metadata=small)
    h2 = src.transfer([], dst.node, metadata=big)
    first, second = dst.receive(5), dst.receive(5)
    assert first is not None and second is not None
    assert first.metadata == small and second.metadata == big
    first.accept([5])
    second.accept([])
    h1.wait(5)
    h2.wait(5)
    assert h1.done() and h2.done()


def test_unserialisable_metadata_is_an_invalid_request(pair) -> None:
    src, dst = pair
    with pytest.raises(InvalidRequestError):
        src.transfer([0], dst.node, metadata={"x": object()})


def test_source_blocks_may_be_reused_once_transfer_returns(pair) -> None:
    src, dst = pair
    handle = src.transfer([2], dst.node)
    fill(src.kv.layers, 2, 99.0)  # overwrite the source before the receiver copies
    incoming = dst.receive(5)
    assert incoming is not None
    incoming.accept([0])
    assert value_of(dst.kv.layers, 0) == 3.0
    result = handle.result(5)
    assert result.num_blocks == 1 and result.num_bytes == src.geometry.bytes_per_block
    assert result.latency_s >= result.stage_s >= 0 and result.copy_s >= 0


def test_reject_fails_the_senders_handle(pair) -> None:
    src, dst = pair
    handle = src.transfer([0, 1], dst.node)
    incoming = dst.receive(5)
    assert incoming is not None
    incoming.reject("no room")
    with pytest.raises(TransferRejectedError, match="no room"):
        handle.wait(5)
    with pytest.raises(InvalidRequestError):
        incoming.accept([0, 1])  # answered already
    assert src.num_pending() == 0


def test_accept_needs_one_block_per_transferred_block(pair) -> None:
    src, dst = pair
    src.transfer([0, 1], dst.node)
    incoming = dst.receive(5)
    assert incoming is not None
    with pytest.raises(InvalidRequestError):
        incoming.accept([0])
    with pytest.raises(KVBlockError):
        incoming.accept([0, 99])
    incoming.accept([0, 1])


def test_full_staging_error_is_typed_and_full_timeout_waits_for_room(pair) -> None:
    src, dst = pair
    src.transfer([0, 1, 2, 3], dst.node)
    with pytest.raises(StagingFullError) as info:
        src.transfer([4], dst.node)
    assert isinstance(info.value, OutOfBlocksError)

    def drain() -> None:
        time.sleep(0.2)
        incoming = dst.receive(5)
        assert incoming is not None
        incoming.accept([0, 1, 2, 3])

    src.full_timeout_s = 5.0
    thread = threading.Thread(target=drain)
    thread.start()
    start = time.perf_counter()
    handle = src.transfer([4], dst.node)  # waits until the drain frees the staging area
    assert time.perf_counter() - start >= 0.1
    thread.join()
    incoming = dst.receive(5)
    assert incoming is not None
    incoming.accept([4])
    handle.wait(5)
    assert handle.done() and value_of(dst.kv.layers, 4) == 5.0


def test_unknown_and_closed_targets_are_told_apart(pair) -> None:
    src, dst = pair
    with pytest.raises(UnknownTargetError):
        src.transfer([0], unique("nobody"))
    handle = src.transfer([0], dst.node)
    dst.close()
    with pytest.raises(PeerClosedError):
        handle.wait(5)  # the receiver left without taking it
    with pytest.raises(PeerClosedError):
        src.transfer([0], dst.node)
    with pytest.raises(ChannelClosedError):
        dst.receive(0.01)


def test_sender_closing_voids_its_unaccepted_transfers(pair) -> None:
    src, dst = pair
    handle = src.transfer([0], dst.node)
    deadline = time.monotonic() + 5
    while not dst._incoming and time.monotonic() < deadline:  # the mailbox thread queues it
        time.sleep(0.01)
    src.close()
    with pytest.raises(ChannelClosedError):
        handle.wait(1)
    deadline = time.monotonic() + 5
    while dst._incoming and time.monotonic() < deadline:  # the goodbye travels on dst's mailbox thread
        time.sleep(0.01)
    assert dst.receive(0.2) is None  # dropped when the sender said goodbye


def test_shape_mismatch_raises_on_both_sides() -> None:
    with channel(unique("a"), make_kv(4)) as src, channel(unique("b"), make_kv(4, torch.float32)) as dst:
        handle = src.transfer([0], dst.node)
        incoming = dst.receive(5)
        assert incoming is not None
        with pytest.raises(InvalidRequestError, match="bfloat16"):  # ShapeMismatchError is an InvalidRequestError
            incoming.accept([0])
        with pytest.raises(InvalidRequestError):
            handle.wait(5)


def test_close_unlinks_the_staging_segment_and_leaves_nothing_behind() -> None:
    before = set(live_segments())
    with channel(unique("a"), make_kv(4)) as src, channel(unique("b"), make_kv(4)) as dst:
        src.transfer([0, 1], dst.node)
        incoming = dst.receive(5)
        assert incoming is not None
        incoming.accept([2, 3])
        assert len(set(live_segments()) - before) == 1  # the sender's staging segment
    assert set(live_segments()) == before


def test_segments_of_dead_processes_are_swept() -> None:
    stale = shm_dir() / f"{PREFIX}999999999-0123456789ab"  # no such pid
    stale.write_bytes(b"x" * 16)
    assert stale.name in sweep_stale()
    assert not stale.exists()


def test_attach_refuses_names_that_are_not_staging_segments() -> None:
    with pytest.raises(PeerClosedError):
        Segment.attach("../../etc/passwd")


def test_node_name_can_be_taken_once() -> None:
    node = unique("dup")
    with channel(node, make_kv(2)), pytest.raises(NodeNameInUseError):
        channel(node, make_kv(2))
    with channel(node, make_kv(2)):  # free again after close
        pass


def test_bad_names_and_options_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        channel("bad/name", make_kv(2))
    with pytest.raises(ConfigError):
        SharedMemoryKVChannel(make_kv(2), unique("n"), staging_mb=0)


def test_int8_kv_needs_its_scales() -> None:
    kv = [(torch.zeros(2, 4, 2, 8, dtype=torch.int8), torch.zeros(2, 4, 2, 8, dtype=torch.int8))]
    with pytest.raises(NotSupportedError, match="scales"):
        SharedMemoryKVChannel(kv, unique("n"), namespace=NAMESPACE)
    with pytest.raises(NotSupportedError, match="float32"):
        KVBlocks(kv, [(torch.zeros(2), torch.zeros(3))])
    with pytest.raises(NotSupportedError, match="int8"):
        KVBlocks(make_kv(2), [(torch.zeros(2), torch.zeros(2))] * 2)


def int8_kv(num_blocks: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    shape = (num_blocks, 4, 2, 8)
    codes = [(torch.zeros(shape, dtype=torch.int8), torch.zeros(shape, dtype=torch.int8)) for _ in range(2)]
    scales = [(torch.zeros(num_blocks), torch.zeros(num_blocks)) for _ in range(2)]
    return codes, scales


def test_int8_blocks_travel_with_their_scales() -> None:
    (src_codes, src_scales), (dst_codes, dst_scales) = int8_kv(4), int8_kv(6)
    for layer in range(2):
        for kind in range(2):
            src_codes[layer][kind][2].fill_(10 * layer + kind + 1)
            src_scales[layer][kind][2] = 0.5 + layer + kind / 4
    with (
        SharedMemoryKVChannel(KVBlocks(src_codes, src_scales), unique("a"), namespace=NAMESPACE) as src,
        SharedMemoryKVChannel(KVBlocks(dst_codes, dst_scales), unique("b"), namespace=NAMESPACE) as dst,
    ):
        assert src.geometry.dtype == "int8" and src.geometry.bytes_per_block == 2 * 2 * 64 + 2 * 2 * 4
        handle = src.transfer([2], dst.node)
        incoming = dst.receive(5)
        assert incoming is not None
        incoming.accept([5])
        handle.wait(5)
    for layer in range(2):
        for kind in range(2):
            assert bool((dst_codes[layer][kind][5] == 10 * layer + kind + 1).all())
            assert float(dst_scales[layer][kind][5]) == 0.5 + layer + kind / 4
            assert float(dst_scales[layer][kind][:5].abs().sum()) == 0.0  # nothing else written


def test_junk_datagrams_are_ignored(pair) -> None:
    src, dst = pair
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for junk in (b"not json", b'{"v": 1, "kind": "transfer"}', b'{"v": 99}', b"\xff\xfe"):
        sock.sendto(junk, address(NAMESPACE, dst.node))
    sock.close()
    handle = src.transfer([0], dst.node)  # still works afterwards
    incoming = dst.receive(5)
    assert incoming is not None
    incoming.accept([1])
    handle.wait(5)
    assert handle.done()


def test_close_can_wait_for_pending_transfers(pair) -> None:
    src, dst = pair
    handle = src.transfer([0], dst.node)

    def drain() -> None:
        incoming = dst.receive(5)
        assert incoming is not None
        time.sleep(0.1)
        incoming.accept([0])

    thread = threading.Thread(target=drain)
    thread.start()
    src.close(drain_timeout_s=5)
    thread.join()
    handle.wait(0)
    assert handle.done()


def test_registry_builds_the_channel_from_config() -> None:
    config = SageLLMConfig(kv_transfer={"implementation": "shm", "options": {"namespace": NAMESPACE, "staging_mb": 1}})
    built = registry.create_kv_transfer_channel(config, kv=make_kv(4), node=unique("reg"))
    try:
        assert isinstance(built, SharedMemoryKVChannel)
        assert built.namespace == NAMESPACE and built.staging_capacity == 2**20
    finally:
        built.close()
    with pytest.raises(ConfigError):
        registry.create_kv_transfer_channel(config, node=unique("reg"))  # no kv
    bad = SageLLMConfig(kv_transfer={"implementation": "shm", "options": {"bogus": 1}})
    with pytest.raises(ConfigError):
        registry.create_kv_transfer_channel(bad, kv=make_kv(4), node=unique("reg"))


def test_a_pool_like_object_is_accepted_as_kv() -> None:
    layers = make_kv(4)

    class Layout:
        num_layers = len(layers)

    class Pool:
        layout = Layout()

        def kv_tensors(self, layer: int):
            return layers[layer]

    with SharedMemoryKVChannel(Pool(), unique("pool"), namespace=NAMESPACE, staging_mb=1) as ch:
        assert ch.kv.num_blocks == 4 and ch.geometry.num_layers == len(layers)
