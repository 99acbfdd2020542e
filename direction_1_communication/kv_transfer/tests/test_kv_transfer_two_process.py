"""Real transfers between two processes (multiprocessing spawn), and no shared memory left behind."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from kv_transfer_helpers import NAMESPACE, channel, fill, make_kv, receiver_main, sender_main, unique, value_of

from sagellm.kv_transfer import sweep_stale
from sagellm.kv_transfer.segment import shm_dir

pytestmark = pytest.mark.slow
CTX = mp.get_context("spawn")


def test_parent_sends_child_receives() -> None:
    node = unique("child")
    events, results = CTX.Queue(), CTX.Queue()
    child = CTX.Process(target=receiver_main, args=(NAMESPACE, node, 2, events, results))
    child.start()
    try:
        assert events.get(timeout=120) == "ready"
        kv = make_kv(8)
        for block in range(8):
            fill(kv, block, block + 1)
        with channel(unique("parent"), kv, 256) as src:
            first = src.transfer([7, 0, 5], node, metadata={"request_id": "a"})
            second = src.transfer([2], node, metadata={"request_id": "b", "tokens": list(range(9000))})
            got = results.get(timeout=60)
            first.wait(30)
            second.wait(30)
            assert first.done() and second.done()
            assert first.result().copy_s > 0
        events.put("checked")
        child.join(60)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
    assert got[0] == ({"request_id": "a"}, [8.0, 1.0, 6.0])
    assert got[1][0]["request_id"] == "b" and len(got[1][0]["tokens"]) == 9000
    assert got[1][1] == [3.0]


def test_child_sends_parent_receives_and_its_segment_is_unlinked_at_exit() -> None:
    kv = make_kv(8)
    with channel(unique("parent"), kv) as dst:
        results = CTX.Queue()
        child = CTX.Process(target=sender_main, args=(NAMESPACE, unique("child"), dst.node, results, None))
        child.start()
        try:
            incoming = dst.receive(timeout=120)
            assert incoming is not None and incoming.num_blocks == 2
            incoming.accept([0, 4])
            assert [value_of(kv, 0), value_of(kv, 4)] == [13.0, 11.0]
            _, _, segment = results.get(timeout=60)
            assert results.get(timeout=60) == ("done", True)
            child.join(60)
            assert child.exitcode == 0
        finally:
            if child.is_alive():
                child.kill()
    assert segment and not (shm_dir() / segment).exists()


def test_a_killed_senders_segment_is_swept() -> None:
    with channel(unique("parent"), make_kv(8)) as dst:
        results, hold = CTX.Queue(), CTX.Queue()
        child = CTX.Process(target=sender_main, args=(NAMESPACE, unique("child"), dst.node, results, hold))
        child.start()
        try:
            _, pid, segment = results.get(timeout=120)
            assert (shm_dir() / segment).exists()
        finally:
            child.kill()
            child.join(30)
        assert segment in sweep_stale()
        assert not (shm_dir() / segment).exists()
