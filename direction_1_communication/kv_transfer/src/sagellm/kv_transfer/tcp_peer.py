"""The sending half of the TCP channel towards one target: dial it, then post staged transfers in order.

``transfer`` stages the blocks and queues them here; this link's thread
dials the target (once, bounded by ``connect_timeout_s``) and writes the
frames, so the caller never waits on the network and a peer that cannot be
reached fails the queued handles within the timeout instead of hanging::

    transfer() --stage--> queue --[link thread: dial, send frame]--> receiver
                                   ACK / BYE <--[connection's reader thread]--
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sagellm.core.errors import SageLLMError
from sagellm.kv_transfer.errors import PeerClosedError, PeerMismatchError, UnknownTargetError
from sagellm.kv_transfer.tcp_address import Address
from sagellm.kv_transfer.tcp_connection import Connection
from sagellm.kv_transfer.wire import ByeMsg, HelloMsg, Message, RefuseMsg, TransferMsg


@dataclass(slots=True)
class Outgoing:
    """One staged transfer waiting for the link: its message and the staged bytes (a view, not a copy)."""

    msg: TransferMsg
    payload: memoryview | None


def dial(address: Address, timeout_s: float, io_timeout_s: float) -> socket.socket:
    """A connected socket to ``address``; UnknownTargetError if nothing answers within ``timeout_s``."""
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
    except OSError as exc:  # refused, unreachable, timed out, unknown host name
        raise UnknownTargetError(
            f"no KV transfer channel reachable at {address} within {timeout_s:g} s ({_why(exc)})"
        ) from None
    tune(sock, io_timeout_s)
    return sock


SOCKET_BUFFER_BYTES = 4 * 2**20  # fewer wake-ups per MiB on both ends; the kernel may cap it
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 3}  # a silent dead host is noticed in ~20 s
REASON_WAIT_S = 1.0  # how long a failed write waits for the reader to bring the peer's reason


def tune(sock: socket.socket, io_timeout_s: float) -> None:
    """Settings of every channel connection, dialled or accepted.

    No Nagle delay (ACKs are tiny and latency-bound); keepalive probes, so a
    peer host that dies without a FIN still fails its pending transfers
    instead of leaving them waiting for an ACK forever; ``io_timeout_s`` on
    every read and write.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE.items():
        if hasattr(socket, name):  # Linux names; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    sock.settimeout(io_timeout_s)


class PeerLink:
    """The outbound connection to one target and the queue of transfers waiting to be written on it.

    ``on_reply(link, msg)`` gets the receiver's ACKs; ``on_lost(link,
    error)`` runs exactly once when the link dies for any reason: the target
    cannot be reached (UnknownTargetError), said BYE, or the connection
    broke (PeerClosedError). ``said_bye`` and ``connected`` tell them apart.
    """

    def __init__(
        self,
        target: str,
        address: Address,
        *,
        connect_timeout_s: float,
        io_timeout_s: float,
        on_reply: Callable[[PeerLink, Message], None],
        on_lost: Callable[[PeerLink, Exception], None],
        hello: HelloMsg,
        sock: socket.socket | None = None,
    ) -> None:
        self.target = target
        self._hello = hello  # the first frame on the connection: who we are, in which namespace
        self.address = address
        self.connection: Connection | None = None
        self._connect_timeout_s = connect_timeout_s
        self._io_timeout_s = io_timeout_s
        self._on_reply = on_reply
        self._on_lost = on_lost
        self._sock = sock  # already dialled by the caller (a peer that had left is re-dialled at once)
        self._queue: deque[Outgoing] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self.failed = False
        self.error: Exception | None = None  # why it failed
        self.said_bye = False
        self.connected = False
        self._thread = threading.Thread(target=self._run, name=f"sagellm-kv-tcp-send-{address}", daemon=True)
        self._thread.start()

    def post(self, item: Outgoing) -> None:
        with self._ready:
            self._queue.append(item)
            self._ready.notify()

    def stop(self) -> None:
        """Stop the send thread after the frame it is writing (queued ones are dropped)."""
        with self._ready:
            self._stopping = True
            self._queue.clear()
            self._ready.notify()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            sock = self._sock or dial(self.address, self._connect_timeout_s, self._io_timeout_s)
            connection = Connection(sock, str(self.address), self._on_frame, self._on_end)
            with self._ready:
                self.connected = True
                self.connection = connection
                if self._stopping:
                    connection.close()
                    return
            connection.start()
            connection.send(self._hello)
            while (item := self._next()) is not None:
                try:
                    connection.send(item.msg, item.payload)
                except OSError as exc:
                    if self._reader_knows_why():  # a REFUSE or BYE read just before the pipe broke: keep it
                        return
                    raise PeerClosedError(
                        f"lost the connection to {self.target!r} mid-transfer ({_why(exc)})"
                    ) from None
        except Exception as exc:  # noqa: BLE001 - every failure ends the link and reaches its handles
            if not isinstance(exc, SageLLMError):
                why = _why(exc) if isinstance(exc, OSError) else repr(exc)
                exc = PeerClosedError(f"lost the connection to {self.target!r} ({why})")
            self._lose(exc)

    def _reader_knows_why(self) -> bool:
        """After a failed write: whether the reader thread has (or, within a moment, gets) the peer's reason.

        A peer that refuses us sends its REFUSE and closes at once; our write
        can hit the broken pipe before our reader has parsed that frame, and
        the reason would be lost behind a bare "broken pipe".
        """
        with self._ready:
            return self._ready.wait_for(lambda: self.failed, timeout=REASON_WAIT_S)

    def _on_frame(self, connection: Connection, msg: Message, payload: memoryview) -> None:
        if isinstance(msg, ByeMsg):
            self._lose(PeerClosedError(f"node {self.target!r} closed its channel"), said_bye=True)
            connection.close()  # our end of the closing handshake: the receiver waits for it
        elif isinstance(msg, RefuseMsg):
            self._lose(PeerMismatchError(f"{self.target!r} refused this channel: {msg.reason}"))
            connection.close()
        else:
            self._on_reply(self, msg)

    def _on_end(self, connection: Connection, error: str | None) -> None:
        why = f"lost the connection to {self.target!r} ({error})" if error else f"{self.target!r} closed the connection"
        self._lose(PeerClosedError(why))

    def _lose(self, exc: Exception, said_bye: bool = False) -> None:
        with self._ready:
            if self.failed:
                return
            self.failed = True
            self.error = exc
            self.said_bye = said_bye
            self._stopping = True
            self._queue.clear()
            self._ready.notify()
        self._on_lost(self, exc)

    def _next(self) -> Outgoing | None:
        with self._ready:
            while not self._queue and not self._stopping:
                self._ready.wait()
            return None if self._stopping else self._queue.popleft()


def _why(exc: OSError) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
