"""TcpKVChannel beyond the conformance suites: addresses, unreachable and vanishing peers, junk, int8, registry."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
import torch
from kv_transfer_helpers import fill, make_kv, numbered_kv, value_of
from tcp_helpers import LOCAL, tcp_channel

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError, InvalidRequestError, SageLLMError
from sagellm.kv_transfer import (
    ChannelClosedError,
    KVBlocks,
    NodeNameInUseError,
    PeerClosedError,
    PeerMismatchError,
    StagingFullError,
    TcpKVChannel,
    UnknownTargetError,
)
from sagellm.kv_transfer.frames import MAGIC, PREFIX
from sagellm.kv_transfer.wire import TransferMsg, encode

WAIT_S = 10.0


@pytest.fixture
def pair():
    src_kv, dst_kv = numbered_kv(8, first=1.0), make_kv(8)
    src, dst = tcp_channel("src", src_kv, 4), tcp_channel("dst", dst_kv, 4)
    yield src, dst
    src.close()
    dst.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_blocks_and_metadata_cross_and_the_source_may_be_reused(pair) -> None:
    src, dst = pair
    handle = src.transfer([6, 2], dst.node, metadata={"request_id": "r", "tokens": list(range(5000))})
    fill(src.kv.layers, 6, 99.0)  # type: ignore[arg-type]  # staged already: this must not travel
    incoming = dst.receive(WAIT_S)
    assert incoming is not None and incoming.source == src.node
    assert incoming.metadata["tokens"] == list(range(5000))
    assert incoming.accept([1, 0]) >= 0.0
    assert [value_of(dst.kv.layers, b) for b in (1, 0)] == [7.0, 3.0]  # type: ignore[arg-type]
    result = handle.result(WAIT_S)
    assert result.num_bytes == 2 * src.geometry.bytes_per_block and result.latency_s >= result.copy_s >= 0
    assert src.stats.bytes_sent == dst.stats.bytes_received == result.num_bytes


def test_an_unreachable_peer_fails_the_handle_within_the_connect_timeout() -> None:
    port = free_port()  # nobody listens there any more
    with tcp_channel("src", make_kv(4), connect_timeout_s=2.0) as src:
        start = time.monotonic()
        handle = src.transfer([0, 1], f"127.0.0.1:{port}")
        with pytest.raises(UnknownTargetError, match="no KV transfer channel reachable"):
            handle.wait(WAIT_S)
        assert handle.done() and time.monotonic() - start < 5.0
        assert src.num_pending() == 0
        handle = src.transfer([0, 1, 2, 3], f"127.0.0.1:{port}")  # the staging room came back
        with pytest.raises(SageLLMError):
            handle.wait(WAIT_S)


def test_a_silent_host_fails_the_handle_after_connect_timeout_s() -> None:
    # A listener whose backlog is full never completes the handshake: like a host that drops SYNs.
    with socket.socket() as server, tcp_channel("src", make_kv(4), connect_timeout_s=0.3) as src:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        target = f"127.0.0.1:{server.getsockname()[1]}"
        fillers = []
        for _ in range(4):  # fill the backlog until a connect attempt hangs
            try:
                fillers.append(socket.create_connection(server.getsockname(), timeout=0.2))
            except TimeoutError:
                break
        try:
            start = time.monotonic()
            handles = [src.transfer([0], target) for _ in range(3)]
            for handle in handles:
                with pytest.raises(SageLLMError):
                    handle.wait(WAIT_S)
            assert time.monotonic() - start < 5.0
        finally:
            for s in fillers:
                s.close()


def test_a_receiver_that_vanishes_mid_transfer_fails_the_handle() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    got = threading.Event()

    def half_read_then_drop() -> None:
        conn, _ = server.accept()
        conn.recv(PREFIX.size)  # the frame starts... and the receiver dies
        got.set()
        conn.close()

    threading.Thread(target=half_read_then_drop, daemon=True).start()
    with tcp_channel("src", make_kv(4), io_timeout_s=2.0) as src:
        handle = src.transfer([0, 1, 2], f"127.0.0.1:{server.getsockname()[1]}")
        with pytest.raises(PeerClosedError):
            handle.wait(WAIT_S)
        assert got.is_set()
    server.close()


def test_a_sender_that_vanishes_mid_frame_is_dropped_and_the_receiver_carries_on(pair) -> None:
    src, dst = pair
    host, port = dst.address.host, dst.address.port
    msg = TransferMsg("ghost", 1, "", 0, 2, dst.geometry)
    header = encode(msg)
    with socket.create_connection((host, port)) as ghost:
        ghost.sendall(PREFIX.pack(MAGIC, 1, 0, len(header), 2 * dst.geometry.bytes_per_block) + header + b"x" * 100)
    assert dst.receive(0.3) is None  # the half frame never surfaces
    handle = src.transfer([3], dst.node)
    incoming = dst.receive(WAIT_S)
    assert incoming is not None and incoming.source == src.node
    incoming.accept([5])
    handle.wait(WAIT_S)
    assert value_of(dst.kv.layers, 5) == 4.0  # type: ignore[arg-type]


def test_a_foreign_protocol_is_dropped(pair) -> None:
    src, dst = pair
    with socket.create_connection((dst.address.host, dst.address.port), timeout=WAIT_S) as junk:
        junk.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert junk.recv(100) == b""  # the channel hung up on it
    with socket.create_connection((dst.address.host, dst.address.port), timeout=WAIT_S) as junk:
        junk.sendall(struct.pack("!4sHHIQ", MAGIC, 99, 0, 2, 0) + b"{}")  # a future frame version
        assert junk.recv(100) == b""
    handle = src.transfer([0], dst.node)
    incoming = dst.receive(WAIT_S)
    assert incoming is not None
    incoming.accept([0])
    handle.wait(WAIT_S)


def test_a_sender_closing_voids_its_unaccepted_transfers(pair) -> None:
    src, dst = pair
    handle = src.transfer([1], dst.node)
    incoming = dst.receive(WAIT_S)
    assert incoming is not None
    src.close()
    with pytest.raises(ChannelClosedError):
        handle.wait(0)
    with pytest.raises(PeerClosedError):
        incoming.accept([0])


def test_a_receiver_that_left_and_came_back_is_reached_again() -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    with tcp_channel("src", make_kv(4)) as src:
        first = TcpKVChannel(make_kv(4), target, staging_mb=1)
        handle = src.transfer([0], target)
        incoming = first.receive(WAIT_S)
        assert incoming is not None
        incoming.accept([0])
        handle.wait(WAIT_S)
        first.close()
        with pytest.raises(PeerClosedError):
            src.transfer([0], target)
        with TcpKVChannel(make_kv(4), target, staging_mb=1) as second:  # restarted at the same address
            handle = src.transfer([1], target)
            incoming = second.receive(WAIT_S)
            assert incoming is not None
            incoming.accept([1])
            handle.wait(WAIT_S)


def test_peers_map_names_to_addresses_and_listen_binds_elsewhere() -> None:
    directory: dict[str, str] = {}
    with (
        tcp_channel("prefill", make_kv(4), 4, directory) as prefill,
        tcp_channel("decode", make_kv(4), 4, directory) as decode,
    ):
        assert decode.node == "decode" and directory["decode"] == str(decode.address)
        handle = prefill.transfer([2], "decode")
        incoming = decode.receive(WAIT_S)
        assert incoming is not None and incoming.source == "prefill"
        incoming.reject("full")
        with pytest.raises(SageLLMError, match="full"):
            handle.wait(WAIT_S)


def test_bad_addresses_and_options_are_config_errors() -> None:
    for node in ("decode", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ":5555"):
        with pytest.raises(ConfigError):
            TcpKVChannel(make_kv(2), node)
    with pytest.raises(ConfigError):
        TcpKVChannel(make_kv(2), LOCAL, peers={"decode": "nowhere"})
    with pytest.raises(ConfigError):
        TcpKVChannel(make_kv(2), LOCAL, connect_timeout_s=0)
    with pytest.raises(ConfigError):
        TcpKVChannel(make_kv(2), "203.0.113.7:0")  # not an address of this machine
    with tcp_channel("src", make_kv(2)) as src:
        with pytest.raises(ConfigError):
            src.transfer([0], "decode")  # neither host:port nor a known peer
        with pytest.raises(ConfigError, match="port 0, which cannot be dialled"):
            src.transfer([0], "127.0.0.1:0")
        with pytest.raises(NodeNameInUseError):
            TcpKVChannel(make_kv(2), str(src.address))
        with pytest.raises(InvalidRequestError):
            src.transfer([0], str(src.address), metadata={"x": object()})


def test_int8_blocks_travel_with_their_scales() -> None:
    def int8_kv(num_blocks: int) -> KVBlocks:
        shape = (num_blocks, 4, 2, 8)
        codes = [(torch.zeros(shape, dtype=torch.int8), torch.zeros(shape, dtype=torch.int8)) for _ in range(2)]
        return KVBlocks(codes, [(torch.zeros(num_blocks), torch.zeros(num_blocks)) for _ in range(2)])

    src_kv, dst_kv = int8_kv(4), int8_kv(6)
    for layer, (key, value) in enumerate(src_kv.layers):
        key[2].fill_(7 + layer)
        value[2].fill_(-3)
    for layer, pair in enumerate(src_kv.scales or []):
        for kind, scale in enumerate(pair):
            scale[2] = 0.5 + layer + kind / 4
    with tcp_channel("a", src_kv) as src, tcp_channel("b", dst_kv) as dst:
        handle = src.transfer([2], dst.node)
        incoming = dst.receive(WAIT_S)
        assert incoming is not None
        incoming.accept([5])
        handle.wait(WAIT_S)
    for layer, (key, value) in enumerate(dst_kv.layers):
        assert bool((key[5] == 7 + layer).all()) and bool((value[5] == -3).all())
    for layer, pair in enumerate(dst_kv.scales or []):
        for kind, scale in enumerate(pair):
            assert float(scale[5]) == 0.5 + layer + kind / 4
            assert float(scale[:5].abs().sum()) == 0.0  # nothing else written


def test_close_can_wait_for_pending_transfers(pair) -> None:
    src, dst = pair
    handle = src.transfer([0], dst.node)

    def accept_later() -> None:
        incoming = dst.receive(WAIT_S)
        assert incoming is not None
        time.sleep(0.1)
        incoming.accept([0])

    worker = threading.Thread(target=accept_later)
    worker.start()
    src.close(drain_timeout_s=WAIT_S)
    worker.join()
    handle.wait(0)
    assert handle.done()


def test_registry_builds_the_channel_from_config() -> None:
    config = SageLLMConfig(kv_transfer={"implementation": "tcp", "options": {"staging_mb": 1, "connect_timeout_s": 1}})
    built = registry.create_kv_transfer_channel(config, kv=make_kv(4), node=LOCAL)
    try:
        assert isinstance(built, TcpKVChannel) and built.address.port > 0
    finally:
        built.close()
        built.close()  # twice is harmless
    with pytest.raises(ConfigError):
        registry.create_kv_transfer_channel(config, node=LOCAL)  # no kv
    bad = SageLLMConfig(kv_transfer={"implementation": "tcp", "options": {"bogus": 1}})
    with pytest.raises(ConfigError):
        registry.create_kv_transfer_channel(bad, kv=make_kv(4), node=LOCAL)


def test_full_timeout_waits_for_the_receiver_to_make_room(pair) -> None:
    src, dst = pair  # 4 blocks of staging
    first = src.transfer([0, 1, 2, 3], dst.node)
    with pytest.raises(StagingFullError):
        src.transfer([4], dst.node)

    def accept_later() -> None:
        time.sleep(0.2)
        incoming = dst.receive(WAIT_S)
        assert incoming is not None
        incoming.accept([0, 1, 2, 3])

    worker = threading.Thread(target=accept_later)
    worker.start()
    src.full_timeout_s = WAIT_S
    second = src.transfer([4], dst.node)  # waits for the ACK that frees the room
    worker.join()
    first.wait(WAIT_S)
    incoming = dst.receive(WAIT_S)
    assert incoming is not None
    incoming.accept([7])
    second.wait(WAIT_S)
    assert value_of(dst.kv.layers, 7) == 5.0  # type: ignore[arg-type]


def test_many_transfers_from_two_threads_all_land(pair) -> None:
    src, dst = pair
    src.full_timeout_s = WAIT_S
    handles: list[object] = []

    def send(blocks: list[int]) -> None:
        for _ in range(20):
            handles.append(src.transfer(blocks, dst.node, metadata=blocks))

    senders = [threading.Thread(target=send, args=(b,)) for b in ([0, 1], [2])]
    for t in senders:
        t.start()
    for _ in range(40):
        incoming = dst.receive(WAIT_S)
        assert incoming is not None
        ids = [4, 5][: incoming.num_blocks]
        incoming.accept(ids)
        assert [value_of(dst.kv.layers, b) for b in ids] == [b + 1.0 for b in incoming.metadata]  # type: ignore[arg-type]
    for t in senders:
        t.join()
    for handle in handles:
        handle.wait(WAIT_S)  # type: ignore[attr-defined]
    assert src.num_pending() == 0 and dst.stats.num_received == 40


def test_a_sender_of_another_namespace_is_refused() -> None:
    with (
        TcpKVChannel(make_kv(4), LOCAL, namespace="deployment-a", staging_mb=1) as src,
        TcpKVChannel(make_kv(4), LOCAL, namespace="deployment-b", staging_mb=1) as dst,
    ):
        handle = src.transfer([0], dst.node)
        with pytest.raises(PeerMismatchError, match="deployment-b"):
            handle.wait(WAIT_S)
        assert isinstance(handle._error, ConfigError)
        assert dst.receive(0.1) is None


def test_the_disaggregation_coordinators_options_build_a_tcp_channel() -> None:
    # sagellm.engines.disagg adds namespace and full_timeout_s to whatever kv_transfer options it is given
    options = {"peers": {"prefill": LOCAL}, "namespace": "pd-123-abc", "full_timeout_s": 30.0}
    config = SageLLMConfig(kv_transfer={"implementation": "tcp", "options": options})
    built = registry.create_kv_transfer_channel(config, kv=make_kv(4), node="prefill")
    try:
        assert isinstance(built, TcpKVChannel) and built.namespace == "pd-123-abc" and built.node == "prefill"
    finally:
        built.close()
