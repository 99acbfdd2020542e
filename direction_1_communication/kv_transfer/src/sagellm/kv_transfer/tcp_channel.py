"""TcpKVChannel: ships KV blocks between processes on any hosts over TCP.

The same contract as the shared-memory channel (core's ``DuplexKVChannel``),
with nodes addressed as ``host:port`` (or by name through a ``peers`` map)::

    prefill process (10.0.0.1)                           decode process (10.0.0.2:5555)
    KV pool --gather--> [private staging] ==TRANSFER frame==> buffer --scatter--> KV pool
        transfer(blocks, "10.0.0.2:5555")                 receive() / accept(blocks)
        handle completes, staging freed   <==ACK frame=====

The sender dials each target once and keeps the connection; the receiver
answers on that same connection. ``transfer`` returns once the blocks are
staged (the caller may reuse them at once); a link thread writes the frame,
so a slow network never blocks the prefill worker, and the staging area
(freed by the receiver's ACK) bounds what is in flight: back-pressure, as
with shm. The receiver reads every frame into memory as it arrives, so a
sender is never stalled by a receiver that has not called ``receive`` yet.

No authentication or encryption: listen on a trusted network only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import mmap
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.kv_transfer.buffer_pool import BufferPool
from sagellm.kv_transfer.channel_config import channel_from_config
from sagellm.kv_transfer.channel_stats import ChannelStats
from sagellm.kv_transfer.errors import ChannelClosedError, PeerClosedError, UnknownTargetError
from sagellm.kv_transfer.frames import MAX_HEADER_BYTES
from sagellm.kv_transfer.handle import TransferHandle
from sagellm.kv_transfer.in_flight import InFlight
from sagellm.kv_transfer.incoming import IncomingTransfer
from sagellm.kv_transfer.kv_blocks import BlockGeometry, KVBlocks
from sagellm.kv_transfer.mailbox import check_name
from sagellm.kv_transfer.tcp_address import Address, check_peers, open_listener, resolve
from sagellm.kv_transfer.tcp_connection import Connection
from sagellm.kv_transfer.tcp_peer import Outgoing, PeerLink, dial, tune
from sagellm.kv_transfer.waits import wait_until
from sagellm.kv_transfer.wire import AckMsg, ByeMsg, HelloMsg, Message, RefuseMsg, TransferMsg

DEFAULT_STAGING_MB = 256.0
ACCEPT_POLL_S = 0.5  # how often the listener thread checks for close (shutdown usually wakes it sooner)


class TcpKVChannel:
    """A :class:`~sagellm.core.protocols.DuplexKVChannel` between processes on any hosts.

    ``kv``: the KV store to send from and receive into (as for shm).
    ``node``: ``"host:port"`` to listen on (port 0: any free port; the
    channel's ``node`` then names the port it got), or a name in ``peers``.
    ``listen``: the address to bind when it differs from the one peers dial
    (``"0.0.0.0:5555"``). ``peers``: node name -> ``"host:port"``, so a
    deployment can say ``transfer(..., "decode")`` (any mapping, read at
    each transfer: a directory may learn addresses later). ``namespace``:
    channels talk only within one (a sender of another deployment that
    dials this port by mistake is refused with PeerMismatchError).
    ``staging_mb`` / ``full_timeout_s``: in-flight bytes and how long
    ``transfer`` waits for room, as for shm. ``connect_timeout_s``: how long
    dialling a target may take before its transfers fail.
    ``io_timeout_s``: how long a frame may stall half-written or half-read.
    ``close_timeout_s``: how long ``close`` waits for peers to acknowledge
    its goodbye.
    """

    def __init__(
        self,
        kv: Any,
        node: str,
        *,
        listen: str | None = None,
        peers: Mapping[str, str] | None = None,
        namespace: str = "default",
        staging_mb: float = DEFAULT_STAGING_MB,
        full_timeout_s: float = 0.0,
        connect_timeout_s: float = 5.0,
        io_timeout_s: float = 30.0,
        close_timeout_s: float = 2.0,
    ) -> None:
        timeouts = (connect_timeout_s, io_timeout_s, close_timeout_s)
        if not staging_mb > 0 or full_timeout_s < 0 or not all(t > 0 for t in timeouts):
            raise ConfigError("staging_mb and the connect/io/close timeouts must be > 0, full_timeout_s >= 0")
        self.peers = check_peers(peers)
        self.namespace = check_name("namespace", namespace)
        self.kv = KVBlocks.of(kv)
        address = Address.parse(listen, "listen address") if listen else resolve(node, self.peers, "node")
        self._listener = open_listener(address, ACCEPT_POLL_S)
        self.address = Address(address.host, int(self._listener.getsockname()[1]))
        self.node = node if listen or node in self.peers else str(self.address)
        self.full_timeout_s = full_timeout_s
        self.stats = ChannelStats()
        self._connect_timeout_s = connect_timeout_s
        self._io_timeout_s = io_timeout_s
        self._close_timeout_s = close_timeout_s
        self._staging_bytes = int(staging_mb * 2**20)
        self._staging: mmap.mmap | None = None  # anonymous memory, mapped on the first transfer that stages blocks
        self._staged: torch.Tensor | None = None  # the same bytes as a uint8 tensor (no copy)
        self._lock = threading.Lock()
        self._in_flight = InFlight(self._lock, self._staging_bytes, self._check_open)  # peer: link
        self._arrivals = threading.Condition(self._lock)
        self._links: dict[Address, PeerLink] = {}  # outbound, one per target
        self._departed: set[Address] = set()  # targets that said goodbye or dropped their connection
        self._inbound: set[Connection] = set()  # senders that dialled us
        self._incoming: deque[tuple[IncomingTransfer, Connection]] = deque()
        self._unanswered: dict[IncomingTransfer, Connection] = {}  # handed out by receive(), not answered
        self._payloads: dict[IncomingTransfer, bytearray] = {}  # the receive buffer of each, reused once answered
        self._buffers = BufferPool(self._staging_bytes)
        self._ids = itertools.count(1)
        self.closed = False
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"sagellm-kv-tcp-{self.address}", daemon=True)
        self._acceptor.start()

    @classmethod
    def from_config(cls, section: Section, **deps: Any) -> TcpKVChannel:
        """Registry hook: ``kv`` and ``node`` come as dependencies (or ``node`` as an option)."""
        missing = "the tcp KV transfer channel needs kv= (the KV pool) and node= (host:port or a peer)"
        return channel_from_config(cls, section, deps, missing)

    @property
    def geometry(self) -> BlockGeometry:
        return self.kv.geometry

    def __enter__(self) -> TcpKVChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def transfer(self, blocks: Sequence[int], target_node: str, *, metadata: Any = None) -> TransferHandle:
        """Stage ``blocks`` (every layer's K and V) for ``target_node`` and queue them; returns at once.

        The blocks are copied before this returns, so the caller may reuse
        them. A target that cannot be reached fails the handle (within
        ``connect_timeout_s``); one that has left raises PeerClosedError here.
        """
        self._check_open()
        address = resolve(target_node, self.peers)
        if address.port == 0:
            raise ConfigError(
                f"KV transfer target {target_node!r} is at port 0, which cannot be dialled (a node given port 0 "
                "listens wherever the system puts it); give every node in kv_transfer.options.peers a fixed port"
            )
        ids = self.kv.check_ids(blocks)
        _check_metadata(metadata)
        block_bytes = len(ids) * self.geometry.bytes_per_block
        started = time.perf_counter()
        link = self._link_to(target_node, address)
        offset = self._reserve(block_bytes) if block_bytes else None
        handle = TransferHandle(next(self._ids), target_node, len(ids), block_bytes)
        try:
            payload = None
            if offset is not None:
                assert self._staged is not None and self._staging is not None
                self.kv.gather(ids, self._staged[offset : offset + block_bytes])
                payload = memoryview(self._staging)[offset : offset + block_bytes]
            handle.stage_s = time.perf_counter() - started
            msg = TransferMsg(self.node, handle.transfer_id, "", 0, len(ids), self.geometry, metadata)
            with self._lock:
                self._check_open()
                lost = link.error if link.failed else None
                if lost is None:
                    self._in_flight.add(handle, offset, started, link)
                    self.stats.count_sent(block_bytes, handle.stage_s)
                else:  # it died (e.g. could not dial) before this transfer was registered: fail it as it would have
                    self._in_flight.free(offset)
            if lost is not None:
                handle._fail(type(lost)(str(lost)))
                return handle
            link.post(Outgoing(msg, payload))
        except BaseException:
            with self._lock:
                self._in_flight.abandon(handle.transfer_id, offset)
            raise
        return handle

    def num_pending(self) -> int:
        """Transfers sent and not yet answered by their receivers."""
        with self._lock:
            return len(self._in_flight)

    def _link_to(self, target: str, address: Address) -> PeerLink:
        """The live link to ``address``; a target that left is re-dialled here, so its absence raises now."""
        with self._lock:
            link = self._links.get(address)
            if link is not None and not link.failed:
                return link
            departed = address in self._departed
        sock = None
        if departed:
            try:
                sock = dial(address, self._connect_timeout_s, self._io_timeout_s)
            except UnknownTargetError as exc:
                raise PeerClosedError(f"node {target!r} has closed its channel ({exc})") from None
        with self._lock:
            self._check_open()
            self._departed.discard(address)
            link = PeerLink(
                target,
                address,
                connect_timeout_s=self._connect_timeout_s,
                io_timeout_s=self._io_timeout_s,
                on_reply=self._on_reply,
                on_lost=self._on_lost,
                hello=HelloMsg(self.node, self.namespace),
                sock=sock,
            )
            self._links[address] = link
            return link

    def _reserve(self, nbytes: int) -> int:
        with self._lock:
            if self._staging is None:
                self._staging = mmap.mmap(-1, self._staging_bytes)  # pages come on first touch, unlike a bytearray
                self._staged = torch.frombuffer(self._staging, dtype=torch.uint8)
            return self._in_flight.reserve(nbytes, self.full_timeout_s)

    def _on_reply(self, link: PeerLink, msg: Message) -> None:
        if not isinstance(msg, AckMsg):
            return  # a receiver only ever answers
        with self._lock:
            pending = self._in_flight.answered(msg, link)  # None: unknown, or not from the node we sent it to
        if pending is not None:
            pending.settle(msg)

    def _on_lost(self, link: PeerLink, error: Exception) -> None:
        """A link died: its unanswered transfers fail with why; a target that was there counts as departed."""
        with self._lock:
            if self._links.get(link.address) is link:
                del self._links[link.address]
            if link.connected and not self.closed:
                self._departed.add(link.address)
            failed = self._in_flight.lost(link)
        for pending in failed:
            pending.handle._fail(type(error)(str(error)))

    # ---------------------------------------------------------------- receiving
    def receive(self, timeout: float | None = None) -> IncomingTransfer | None:
        """The next transfer posted to this node, in arrival order; None if none came within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if not wait_until(self._arrivals, lambda: bool(self._incoming), deadline, self._check_open):
                return None
            incoming, connection = self._incoming.popleft()
            self._unanswered[incoming] = connection
            return incoming

    def answer(self, incoming: IncomingTransfer, ack: AckMsg) -> None:
        """Tell a sender what became of its transfer, on the connection it came by (a gone sender needs none)."""
        with self._lock:
            connection = self._unanswered.pop(incoming, None)
            buffer = self._payloads.pop(incoming, None)
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.send(ack)
        if buffer is not None:  # answered: accept() has copied out of it, nothing reads it again
            self._buffers.give(buffer)

    def count_received(self, nbytes: int, copy_s: float) -> None:
        with self._lock:
            self.stats.count_received(nbytes, copy_s)

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            tune(sock, self._io_timeout_s)
            connection = Connection(sock, f"{peer[0]}:{peer[1]}", self._on_request, self._on_inbound_end, self._buffers)
            with self._lock:
                if self.closed:
                    connection.close()
                    return
                self._inbound.add(connection)
            connection.start()

    def _on_request(self, connection: Connection, msg: Message, payload: memoryview) -> None:
        if not connection.greeted:
            self._greet(connection, msg)
        elif isinstance(msg, ByeMsg):
            connection.said_bye = True
            self._void_from(connection)
            connection.close()  # our end of the closing handshake: the sender waits for it
        elif isinstance(msg, TransferMsg):
            buffer = payload.obj
            assert isinstance(buffer, bytearray)
            nbytes = payload.nbytes
            staged = (
                torch.frombuffer(buffer, dtype=torch.uint8, count=nbytes)
                if nbytes
                else torch.empty(0, dtype=torch.uint8)
            )
            incoming = IncomingTransfer(self, msg, lambda: staged)
            with self._lock:
                if self.closed:
                    return
                if nbytes:
                    self._payloads[incoming] = buffer
                self._incoming.append((incoming, connection))
                self._arrivals.notify_all()

    def _greet(self, connection: Connection, msg: Message) -> None:
        """The first frame must be the sender's HELLO from this namespace; anything else is refused."""
        if isinstance(msg, HelloMsg) and msg.namespace == self.namespace:
            connection.greeted = True
            return
        if isinstance(msg, HelloMsg):
            reason = f"{self.node!r} is in KV transfer namespace {self.namespace!r}, {msg.src!r} in {msg.namespace!r}"
        else:
            reason = f"{self.node!r} expected HELLO as the first frame, got {type(msg).__name__}"
        with contextlib.suppress(OSError):
            connection.send(RefuseMsg(self.node, reason))
        connection.close()

    def _on_inbound_end(self, connection: Connection, error: str | None) -> None:
        self._void_from(connection)

    def _void_from(self, connection: Connection) -> None:
        """A sender left (BYE, or its connection broke): its transfers can no longer be answered."""
        with self._lock:
            self._inbound.discard(connection)
            for incoming, origin in [*self._incoming, *self._unanswered.items()]:
                if origin is connection:
                    incoming.void = True
                    self._unanswered.pop(incoming, None)
                    self._payloads.pop(incoming, None)  # not reused: a caller may still hold its view
            self._incoming = deque(pair for pair in self._incoming if pair[1] is not connection)

    # ------------------------------------------------------------------ closing
    def close(self, drain_timeout_s: float = 0.0) -> None:
        """Leave: optionally wait for pending transfers to be answered, say goodbye to every peer, stop listening.

        Transfers still unanswered then fail with ChannelClosedError on this
        side, and with PeerClosedError on the peers' (their handles, or their
        unaccepted incoming transfers). Closing twice is harmless.
        """
        with self._lock:
            if self.closed:
                return
            pending = self._in_flight.close(drain_timeout_s)
            self.closed = True
            self._incoming.clear()
            self._payloads.clear()
            self._arrivals.notify_all()
            links = list(self._links.values())
            inbound = list(self._inbound)
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for link in links:
            link.stop()
        for p in pending:
            p.handle._fail(ChannelClosedError(f"channel {self.node!r} closed before {p.handle.target!r} answered"))
        self._say_goodbye([link.connection for link in links if link.connection is not None] + inbound)
        self._acceptor.join(ACCEPT_POLL_S * 2)

    def _say_goodbye(self, connections: list[Connection]) -> None:
        """BYE on every connection, then wait (bounded) for each peer to close its end: after this, peers know."""
        bye = ByeMsg(self.node)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.send(bye)
                connection.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + self._close_timeout_s
        for connection in connections:
            connection.ended.wait(max(0.0, deadline - time.monotonic()))
            connection.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ChannelClosedError(f"KV transfer channel {self.node!r} is closed")

    def __repr__(self) -> str:
        return (
            f"TcpKVChannel(node={self.node!r}, address={str(self.address)!r}, namespace={self.namespace!r}, "
            f"{self.geometry.describe()})"
        )


def _check_metadata(metadata: Any) -> None:
    """Metadata rides in the frame header as JSON: it must serialise, and fit the header limit."""
    try:
        nbytes = len(json.dumps(metadata, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"transfer metadata must be JSON-serialisable: {exc}") from exc
    if nbytes > MAX_HEADER_BYTES - 4096:
        raise InvalidRequestError(f"transfer metadata of {nbytes} bytes exceeds the TCP channel's header limit")
