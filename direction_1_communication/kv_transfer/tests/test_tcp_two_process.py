"""Real TCP transfers between two processes (multiprocessing spawn), and a sender killed mid-way."""

from __future__ import annotations

import time

import pytest
from kv_transfer_helpers import make_kv, numbered_kv, value_of
from tcp_helpers import tcp_channel, tcp_idle_receiver_main, tcp_receiver_main, tcp_sender_main
from two_process import CTX, check_two_received, join_cleanly, killed_at_exit, send_two, spawned

from sagellm.kv_transfer import PeerClosedError, TcpKVChannel

pytestmark = pytest.mark.slow


def test_parent_sends_child_receives() -> None:
    events, results = CTX.Queue(), CTX.Queue()
    with spawned(tcp_receiver_main, 2, events, results) as child:
        target = events.get(timeout=120)  # the child's host:port
        with tcp_channel("parent", numbered_kv(8, first=1.0), 256) as src:
            first, second = send_two(src, target)
            got = results.get(timeout=60)
            assert first.result(30).copy_s > 0 and second.result(30).num_blocks == 1
        events.put("checked")
        join_cleanly(child)
    check_two_received(got)


def test_child_sends_parent_receives() -> None:
    kv = make_kv(8)
    with tcp_channel("parent", kv) as dst:
        results = CTX.Queue()
        with spawned(tcp_sender_main, dst.node, results, None) as child:
            incoming = dst.receive(timeout=120)
            assert incoming is not None and incoming.num_blocks == 2
            _, sender = results.get(timeout=60)
            assert incoming.metadata == {"from": sender} and incoming.source == sender
            incoming.accept([0, 4])
            assert [value_of(kv, 0), value_of(kv, 4)] == [13.0, 11.0]
            assert results.get(timeout=60) == ("done", True)
            join_cleanly(child)


def test_a_killed_senders_transfer_is_void_at_the_receiver() -> None:
    with tcp_channel("parent", make_kv(8)) as dst:
        results, hold = CTX.Queue(), CTX.Queue()
        with killed_at_exit(tcp_sender_main, dst.node, results, hold):  # no goodbye: the connection just drops
            incoming = dst.receive(timeout=120)
            assert incoming is not None
        for _ in range(100):  # the reader thread notices the end of the stream
            if incoming.void:
                break
            time.sleep(0.05)
        with pytest.raises(PeerClosedError):
            incoming.accept([0, 1])


def test_a_killed_receiver_fails_the_pending_transfers_and_new_ones() -> None:
    events = CTX.Queue()
    with spawned(tcp_idle_receiver_main, events) as child:
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


def _connected(src: TcpKVChannel) -> bool:
    return any(link.connection is not None for link in src._links.values())
