"""Real transfers between two processes (multiprocessing spawn), and no shared memory left behind."""

from __future__ import annotations

import pytest
from kv_transfer_helpers import (
    NAMESPACE,
    channel,
    make_kv,
    numbered_kv,
    receiver_main,
    sender_main,
    unique,
    value_of,
)
from two_process import CTX, check_two_received, join_cleanly, killed_at_exit, send_two, spawned

from sagellm.kv_transfer import sweep_stale
from sagellm.kv_transfer.segment import shm_dir

pytestmark = pytest.mark.slow


def test_parent_sends_child_receives() -> None:
    node = unique("child")
    events, results = CTX.Queue(), CTX.Queue()
    with spawned(receiver_main, NAMESPACE, node, 2, events, results) as child:
        assert events.get(timeout=120) == "ready"
        with channel(unique("parent"), numbered_kv(8, first=1.0), 256) as src:
            first, second = send_two(src, node)
            got = results.get(timeout=60)
            first.wait(30)
            second.wait(30)
            assert first.done() and second.done()
            assert first.result().copy_s > 0
        events.put("checked")
        join_cleanly(child)
    check_two_received(got)


def test_child_sends_parent_receives_and_its_segment_is_unlinked_at_exit() -> None:
    kv = make_kv(8)
    with channel(unique("parent"), kv) as dst:
        results = CTX.Queue()
        with spawned(sender_main, NAMESPACE, unique("child"), dst.node, results, None) as child:
            incoming = dst.receive(timeout=120)
            assert incoming is not None and incoming.num_blocks == 2
            incoming.accept([0, 4])
            assert [value_of(kv, 0), value_of(kv, 4)] == [13.0, 11.0]
            _, _, segment = results.get(timeout=60)
            assert results.get(timeout=60) == ("done", True)
            join_cleanly(child)
    assert segment and not (shm_dir() / segment).exists()


def test_a_killed_senders_segment_is_swept() -> None:
    with channel(unique("parent"), make_kv(8)) as dst:
        results, hold = CTX.Queue(), CTX.Queue()
        with killed_at_exit(sender_main, NAMESPACE, unique("child"), dst.node, results, hold):
            _, pid, segment = results.get(timeout=120)
            assert (shm_dir() / segment).exists()
        assert segment in sweep_stale()
        assert not (shm_dir() / segment).exists()
