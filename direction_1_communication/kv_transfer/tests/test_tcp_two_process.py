"""Real TCP transfers between two processes (multiprocessing spawn), and a sender killed mid-way."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
from kv_transfer_helpers import fill, make_kv, value_of
from tcp_helpers import tcp_channel, tcp_idle_receiver_main, tcp_receiver_main, tcp_sender_main

from sagellm.kv_transfer import PeerClosedError, TcpKVChannel

pytestmark = pytest.mark.slow
CTX = mp.get_context("spawn")


def test_parent_sends_child_receives() -> None:
    events, results = CTX.Queue(), CTX.Queue()
    child = CTX.Process(target=tcp_receiver_main, args=(2, events, results))
    child.start()
    try:
        target = events.get(timeout=120)  # the child's host:port
        kv = make_kv(8)
        for block in range(8):
            fill(kv, block, block + 1)
        with tcp_channel("parent", kv, 256) as src:
            first = src.transfer([7, 0, 5], target, metadata={"request_id": "a"})
            second = src.transfer([2], target, metadata={"request_id": "b", "tokens": list(range(9000))})
            got = results.get(timeout=60)
            assert first.result(30).copy_s > 0 and second.result(30).num_blocks == 1
        events.put("checked")
        child.join(60)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
    assert got[0] == ({"request_id": "a"}, [8.0, 1.0, 6.0])
    assert got[1][0]["request_id"] == "b" and len(got[1][0]["tokens"]) == 9000
    assert got[1][1] == [3.0]


def test_child_sends_parent_receives() -> None:
    kv = make_kv(8)
    with tcp_channel("parent", kv) as dst:
        results = CTX.Queue()
        child = CTX.Process(target=tcp_sender_main, args=(dst.node, results, None))
        child.start()
        try:
            incoming = dst.receive(timeout=120)
            assert incoming is not None and incoming.num_blocks == 2
            _, sender = results.get(timeout=60)
            assert incoming.metadata == {"from": sender} and incoming.source == sender
            incoming.accept([0, 4])
            assert [value_of(kv, 0), value_of(kv, 4)] == [13.0, 11.0]
            assert results.get(timeout=60) == ("done", True)
            child.join(60)
            assert child.exitcode == 0
        finally:
            if child.is_alive():
                child.kill()


def test_a_killed_senders_transfer_is_void_at_the_receiver() -> None:
    with tcp_channel("parent", make_kv(8)) as dst:
        results, hold = CTX.Queue(), CTX.Queue()
        child = CTX.Process(target=tcp_sender_main, args=(dst.node, results, hold))
        child.start()
        try:
            incoming = dst.receive(timeout=120)
            assert incoming is not None
        finally:
            child.kill()  # no goodbye: the connection just drops
            child.join(30)
        for _ in range(100):  # the reader thread notices the end of the stream
            if incoming.void:
                break
            time.sleep(0.05)
        with pytest.raises(PeerClosedError):
            incoming.accept([0, 1])


def test_a_killed_receiver_fails_the_pending_transfers_and_new_ones() -> None:
    events = CTX.Queue()
    child = CTX.Process(target=tcp_idle_receiver_main, args=(events,))
    child.start()
    try:
        target = events.get(timeout=120)
        with tcp_channel("parent", make_kv(8), connect_timeout_s=2.0) as src:
            handle = src.transfer([1, 2], target)
            deadline = time.monotonic() + 30
            while not _connected(src) and time.monotonic() < deadline:  # the frame is on its way
                time.sleep(0.02)
            child.kill()  # no goodbye: the kernel resets the connection
            child.join(30)
            with pytest.raises(PeerClosedError):
                handle.wait(10)
            with pytest.raises(PeerClosedError):
                src.transfer([0], target)  # it has gone: said at once, not on the handle
            assert src.num_pending() == 0
    finally:
        if child.is_alive():
            child.kill()


def _connected(src: TcpKVChannel) -> bool:
    return any(link.connection is not None for link in src._links.values())
