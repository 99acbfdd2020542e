"""TCP channels over small KV stores for the tests, reaching each other by name through one shared directory."""

from __future__ import annotations

from typing import Any

from kv_transfer_helpers import make_kv, numbered_kv, receive_into_consecutive

from sagellm.kv_transfer import KVBlocks, TcpKVChannel
from sagellm.kv_transfer.extents import DEFAULT_ALIGNMENT as ALIGN

LOCAL = "127.0.0.1:0"  # any free port on the loopback


def tcp_channel(
    node: str, kv: Any, staging_blocks: int = 16, directory: dict[str, str] | None = None, **options: Any
) -> TcpKVChannel:
    """A channel on a free loopback port; with ``directory``, also registered there under ``node``."""
    nbytes = staging_blocks * KVBlocks.of(kv).geometry.bytes_per_block
    staging_mb = -(-nbytes // ALIGN) * ALIGN / 2**20  # room for exactly staging_blocks, whatever the alignment
    if directory is None:
        return TcpKVChannel(kv, LOCAL, staging_mb=staging_mb, **options)
    ch = TcpKVChannel(kv, node, listen=LOCAL, peers=directory, staging_mb=staging_mb, **options)
    directory[node] = str(ch.address)
    return ch


# ---------------------------------------------------------------- child processes (spawn imports this module)
def tcp_receiver_main(num_transfers: int, events: Any, results: Any) -> None:
    """Listen on a free port, say which, receive ``num_transfers`` into consecutive blocks, report them."""
    kv = make_kv(16)
    with TcpKVChannel(kv, LOCAL, staging_mb=1) as ch:
        events.put(ch.node)
        results.put(receive_into_consecutive(ch, kv, num_transfers))
        events.get(timeout=60)  # stay until the parent has checked its handles


def tcp_sender_main(target: str, results: Any, hold: Any) -> None:
    """Send blocks 3 and 1 to ``target``; report the outcome (or wait on ``hold`` to be killed mid-way)."""
    with TcpKVChannel(numbered_kv(8, first=10.0), LOCAL, staging_mb=1) as ch:
        handle = ch.transfer([3, 1], target, metadata={"from": ch.node})
        results.put(("sent", ch.node))
        if hold is not None:
            hold.get(timeout=60)  # the parent kills us while we wait here
        handle.wait(60)
        results.put(("done", handle.done()))


def tcp_idle_receiver_main(events: Any) -> None:
    """Listen, say where, and never take anything (the parent kills us with transfers pending)."""
    with TcpKVChannel(make_kv(16), LOCAL, staging_mb=1) as ch:
        events.put(ch.node)
        events.get(timeout=120)
