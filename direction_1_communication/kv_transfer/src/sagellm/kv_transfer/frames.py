"""Length-prefixed frames on a TCP stream: a fixed prefix, a JSON header, then the payload bytes.

::

    | magic "SGKV" | version u16 | flags u16 | header bytes u32 | payload bytes u64 |  (20 bytes, big-endian)
    | header: one wire message as JSON (TRANSFER / ACK / BYE)                         |
    | payload: a TRANSFER's staged run, layer-major (see kv_blocks), or nothing      |

The magic and version make a peer that is not a sageLLM KV channel of this
version fail at its first frame with a clear error, instead of being read as
a length. Reads of an idle connection wake up every ``io_timeout`` so a
reader can notice it is being closed; a timeout *inside* a frame means the
peer stalled mid-transfer, which is an error, never a hang.
"""

from __future__ import annotations

import socket
import struct

from sagellm.kv_transfer.errors import PeerClosedError

MAGIC = b"SGKV"
FRAME_VERSION = 1
PREFIX = struct.Struct("!4sHHIQ")
MAX_HEADER_BYTES = 64 * 2**20  # a header is JSON metadata; anything larger is junk or an attack


class FrameError(PeerClosedError):
    """The byte stream broke mid-frame, or is not a sageLLM KV channel's (the connection is dropped)."""


def send_frame(sock: socket.socket, header: bytes, payload: memoryview | None = None) -> None:
    """Write one frame (the caller serialises writers of one socket)."""
    nbytes = 0 if payload is None else payload.nbytes
    sock.sendall(PREFIX.pack(MAGIC, FRAME_VERSION, 0, len(header), nbytes) + header)
    if payload is not None and nbytes:
        sock.sendall(payload)


def read_prefix(sock: socket.socket) -> tuple[int, int] | None:
    """(header bytes, payload bytes) of the next frame; None if the connection stayed idle.

    IdleEnd at a clean end of stream; FrameError for a foreign stream or
    one that ends inside the prefix.
    """
    raw = bytearray(PREFIX.size)
    if not read_into(sock, memoryview(raw), idle_ok=True):
        return None
    magic, version, _, header_nbytes, payload_nbytes = PREFIX.unpack(raw)
    if magic != MAGIC:
        raise FrameError(f"the peer does not speak the sageLLM KV transfer protocol (got {bytes(raw[:4])!r})")
    if version != FRAME_VERSION:
        raise FrameError(f"the peer speaks KV transfer frame version {version}, this side {FRAME_VERSION}")
    if header_nbytes > MAX_HEADER_BYTES:
        raise FrameError(f"frame header of {header_nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    return header_nbytes, payload_nbytes


class IdleEnd(Exception):
    """The stream ended cleanly between frames (not an error)."""


def read_into(sock: socket.socket, view: memoryview, *, idle_ok: bool = False) -> bool:
    """Fill ``view`` from ``sock``; False if ``idle_ok`` and a timeout passed before the first byte.

    IdleEnd if the stream ends before the first byte with ``idle_ok`` (a
    clean close between frames); FrameError if it ends or stalls part-way.
    """
    got = 0
    while got < view.nbytes:
        try:
            n = sock.recv_into(view[got:])
        except TimeoutError:
            if idle_ok and got == 0:
                return False
            raise FrameError(f"the peer stalled mid-frame ({got} of {view.nbytes} bytes read)") from None
        if n == 0:
            if idle_ok and got == 0:
                raise IdleEnd
            raise FrameError(f"the peer closed the connection mid-transfer ({got} of {view.nbytes} bytes read)")
        got += n
    return True
