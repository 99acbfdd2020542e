"""The small messages channels post to each other's mailboxes (JSON, one datagram each).

Block data never travels in a message, only where to find it::

    sender                                   receiver
      transfer(blocks, "decode")
        stage blocks in own segment ------>  TRANSFER {id, segment, offset, n, geometry, metadata}
                                             receive() -> IncomingTransfer
                                             accept(dst_blocks): copy out of the segment
        free the run, complete handle <----  ACK {id, ok | error kind + message, copy seconds}
      close()  ----------------------------> BYE   (pending transfers to a closed peer fail)

JSON rather than pickle: anything on the machine can post to a mailbox, and
unpickling would let it run code. Malformed messages decode to None and are
dropped.

The TCP channel sends the same messages as frames, plus two of its own: a
dialling sender opens with HELLO {namespace}, and a receiver that will not
talk to it (another namespace: another deployment) answers REFUSE {reason}
and hangs up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sagellm.kv_transfer.kv_blocks import BlockGeometry

VERSION = 1
INLINE_METADATA_BYTES = 16 * 1024  # larger metadata is staged after the blocks


@dataclass(frozen=True, slots=True)
class TransferMsg:
    src: str
    transfer_id: int
    segment: str  # "" when the transfer stages nothing (no blocks, small metadata)
    offset: int
    num_blocks: int
    geometry: BlockGeometry
    metadata: Any = None  # inline metadata (JSON value), or None
    metadata_nbytes: int = 0  # > 0: metadata staged right after the blocks


@dataclass(frozen=True, slots=True)
class AckMsg:
    src: str
    transfer_id: int
    error_kind: str | None = None  # None: the blocks landed; else "shape", "rejected", "closed"
    error: str = ""
    copy_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ByeMsg:
    src: str


@dataclass(frozen=True, slots=True)
class HelloMsg:
    src: str
    namespace: str


@dataclass(frozen=True, slots=True)
class RefuseMsg:
    src: str
    reason: str


Message = TransferMsg | AckMsg | ByeMsg | HelloMsg | RefuseMsg


def encode(msg: Message) -> bytes:
    if isinstance(msg, TransferMsg):
        body: dict[str, Any] = {
            "kind": "transfer",
            "id": msg.transfer_id,
            "segment": msg.segment,
            "offset": msg.offset,
            "n": msg.num_blocks,
            "geometry": msg.geometry.to_wire(),
            "metadata": msg.metadata,
            "metadata_nbytes": msg.metadata_nbytes,
        }
    elif isinstance(msg, AckMsg):
        body = {"kind": "ack", "id": msg.transfer_id, "error_kind": msg.error_kind, "error": msg.error}
        body["copy_s"] = msg.copy_s
    elif isinstance(msg, HelloMsg):
        body = {"kind": "hello", "namespace": msg.namespace}
    elif isinstance(msg, RefuseMsg):
        body = {"kind": "refuse", "reason": msg.reason}
    else:
        body = {"kind": "bye"}
    body["v"] = VERSION
    body["src"] = msg.src
    return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> Message | None:
    try:
        body = json.loads(data)
        if body.get("v") != VERSION:
            return None
        kind, src = body["kind"], str(body["src"])
        if kind == "transfer":
            return TransferMsg(
                src,
                int(body["id"]),
                str(body["segment"]),
                int(body["offset"]),
                int(body["n"]),
                BlockGeometry.from_wire(body["geometry"]),
                body.get("metadata"),
                int(body.get("metadata_nbytes", 0)),
            )
        if kind == "ack":
            error_kind = body.get("error_kind")
            return AckMsg(
                src,
                int(body["id"]),
                None if error_kind is None else str(error_kind),
                str(body.get("error", "")),
                float(body.get("copy_s", 0.0)),
            )
        if kind == "bye":
            return ByeMsg(src)
        if kind == "hello":
            return HelloMsg(src, str(body["namespace"]))
        if kind == "refuse":
            return RefuseMsg(src, str(body["reason"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None
