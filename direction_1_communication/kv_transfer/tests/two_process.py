"""Scaffolding for the tests that put one channel end in a spawned child process (shm and tcp alike)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from typing import Any

from sagellm.kv_transfer import TransferHandle

# spawn, not fork: the child starts with no copy of the parent's threads, sockets or mappings
CTX = mp.get_context("spawn")


@contextlib.contextmanager
def spawned(target: Callable[..., None], *args: Any) -> Iterator[BaseProcess]:
    """A started child running ``target(*args)``, killed on the way out if it is still alive (a failed test)."""
    child = CTX.Process(target=target, args=args)
    child.start()
    try:
        yield child
    finally:
        if child.is_alive():
            child.kill()


@contextlib.contextmanager
def killed_at_exit(target: Callable[..., None], *args: Any) -> Iterator[BaseProcess]:
    """A started child killed without warning (no goodbye) when the block ends: a peer that vanishes."""
    with spawned(target, *args) as child:
        try:
            yield child
        finally:
            child.kill()
            child.join(30)


def join_cleanly(child: BaseProcess) -> None:
    """The child finishes on its own and without an error."""
    child.join(60)
    assert child.exitcode == 0


def send_two(src: Any, target: str) -> tuple[TransferHandle, TransferHandle]:
    """Blocks 7, 0, 5 with small metadata, then block 2 with metadata too large to travel inline."""
    first = src.transfer([7, 0, 5], target, metadata={"request_id": "a"})
    second = src.transfer([2], target, metadata={"request_id": "b", "tokens": list(range(9000))})
    return first, second


def check_two_received(got: list[tuple[Any, list[float | None]]]) -> None:
    """What a child receiving ``send_two`` from a KV of ``numbered_kv(8, first=1.0)`` reports."""
    assert got[0] == ({"request_id": "a"}, [8.0, 1.0, 6.0])
    assert got[1][0]["request_id"] == "b" and len(got[1][0]["tokens"]) == 9000
    assert got[1][1] == [3.0]
