"""One TCP connection between two channels: framed writes from any thread, one reader thread.

Both directions use the same object: a sender dials the receiver and posts
TRANSFER frames on it, and the receiver answers ACKs on the *same*
connection, so a receiver never needs to reach its senders (they may sit
behind NAT or listen on another interface). Closing is a handshake: each
side says BYE and shuts its write half; a reader that reaches the end of the
stream has seen everything the peer will ever send.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

from sagellm.kv_transfer.buffer_pool import BufferPool
from sagellm.kv_transfer.frames import FrameError, IdleEnd, read_into, read_prefix, send_frame
from sagellm.kv_transfer.wire import Message, TransferMsg, decode, encode

FrameHandler = Callable[["Connection", Message, memoryview], None]
EndHandler = Callable[["Connection", "str | None"], None]


class Connection:
    """A framed, bidirectional link; ``on_frame`` and ``on_end`` run on its reader thread.

    ``on_frame(conn, msg, payload)``: ``payload`` is a view of a buffer from
    ``buffers`` (``payload.obj``), which the handler gives back when done.

    ``on_end(conn, error)`` runs exactly once, when the stream ends: error
    None for a clean close, else what broke (a peer gone mid-transfer, a
    foreign protocol, a reset).
    """

    def __init__(
        self,
        sock: socket.socket,
        peer: str,
        on_frame: FrameHandler,
        on_end: EndHandler,
        buffers: BufferPool | None = None,
    ) -> None:
        self.sock = sock
        self.peer = peer  # "host:port" of the other side, for messages
        self.said_bye = False  # the peer said BYE before its stream ended
        self.greeted = False  # a receiver's side: the sender's HELLO was accepted
        self._on_frame = on_frame
        self._on_end = on_end
        self._buffers = buffers  # where payloads land (None: a fresh buffer each)
        self._send_lock = threading.Lock()
        self.ended = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._read_loop, name=f"sagellm-kv-tcp-{peer}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, msg: Message, payload: memoryview | None = None) -> None:
        """Write one frame; OSError (a reset, a timeout) if the connection broke."""
        header = encode(msg)
        with self._send_lock:
            send_frame(self.sock, header, payload)

    def finish(self, bye: Message | None, timeout_s: float) -> None:
        """Say ``bye`` (if given), stop writing, and wait up to ``timeout_s`` for the peer to stop too."""
        if bye is not None:
            with contextlib.suppress(OSError):
                self.send(bye)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.ended.wait(timeout_s)
        self.close()

    def close(self) -> None:
        """Drop the connection at once (the reader thread ends at its next wake-up)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()

    def _read_loop(self) -> None:
        error: str | None = None
        try:
            while not self._stopping:
                prefix = read_prefix(self.sock)
                if prefix is None:
                    continue  # idle: check whether we are closing, then keep listening
                header = bytearray(prefix[0])
                read_into(self.sock, memoryview(header))
                msg = decode(bytes(header))
                if msg is None:
                    raise FrameError("the peer sent a header this side cannot decode (another protocol version?)")
                if prefix[1] != _payload_nbytes(msg):
                    raise FrameError(
                        f"a {type(msg).__name__} frame carries {prefix[1]} payload bytes, which its header contradicts"
                    )
                buffer = self._buffers.take(prefix[1]) if self._buffers and prefix[1] else bytearray(prefix[1])
                payload = memoryview(buffer)[: prefix[1]]
                if prefix[1]:
                    read_into(self.sock, payload)
                self._on_frame(self, msg, payload)
        except IdleEnd:
            pass
        except (FrameError, OSError) as exc:
            error = None if self._stopping else str(exc) or type(exc).__name__
        finally:
            self.close()  # the peer will send nothing more (or nothing we can read): hang up
            self.ended.set()
            self._on_end(self, error)


def _payload_nbytes(msg: Message) -> int:
    """What a frame's header promises: a TRANSFER's blocks (in the sender's geometry), nothing else."""
    if not isinstance(msg, TransferMsg):
        return 0
    try:
        return msg.num_blocks * msg.geometry.bytes_per_block + msg.metadata_nbytes
    except KeyError:  # a dtype this side does not know: the receiver refuses the frame, not the process
        return -1
