"""SharedMemoryKVChannel: ships KV blocks between processes on one machine through shared memory.

Each channel is one *node* (``"prefill-0"``, ``"decode-0"``) in a
*namespace*, bound to the KV store it sends from and receives into. Sending
stages the blocks in the sender's own shared-memory segment and posts a
small message to the target's mailbox; receiving maps that segment and
copies the blocks into blocks the receiver chose::

    prefill process                                  decode process
    KV pool --gather--> [staging segment, /dev/shm] --scatter--> KV pool
        transfer(blocks, "decode")  --TRANSFER msg-->  receive() / accept(blocks)
        handle completes            <----ACK msg----

Two copies instead of one, deliberately: the sender's pool block is free
again as soon as ``transfer`` returns (the prefill worker keeps computing),
and the receiver copies when it has room, without either pool being
mapped into the other process. The sender owns its staging segment, so
allocating staging space needs no cross-process lock; the receiver's
acknowledgement frees it. A slow receiver fills the staging area, and the
next ``transfer`` raises :class:`StagingFullError` (after ``full_timeout_s``
of waiting for room, if set): back-pressure, not unbounded memory.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError, InvalidRequestError
from sagellm.kv_transfer.channel_config import channel_from_config
from sagellm.kv_transfer.channel_stats import ChannelStats
from sagellm.kv_transfer.errors import ChannelClosedError, PeerClosedError, UnknownTargetError
from sagellm.kv_transfer.extents import ExtentAllocator
from sagellm.kv_transfer.handle import TransferHandle
from sagellm.kv_transfer.in_flight import InFlight
from sagellm.kv_transfer.incoming import IncomingTransfer
from sagellm.kv_transfer.kv_blocks import BlockGeometry, KVBlocks
from sagellm.kv_transfer.mailbox import Mailbox, Unreachable, check_name
from sagellm.kv_transfer.segment import Segment
from sagellm.kv_transfer.waits import wait_until
from sagellm.kv_transfer.wire import INLINE_METADATA_BYTES, AckMsg, ByeMsg, Message, TransferMsg, decode, encode

# ChannelStats moved to channel_stats.py; it stays importable from here, where it was first defined.
__all__ = ["DEFAULT_STAGING_MB", "ChannelStats", "SharedMemoryKVChannel"]

DEFAULT_STAGING_MB = 256.0


class SharedMemoryKVChannel:
    """A :class:`~sagellm.core.protocols.KVTransferChannel` between processes of one machine.

    ``kv``: the KV store to send from and receive into (a pool with
    ``layout`` and ``kv_tensors(layer)``, or per-layer ``(key, value)``
    tensors ``[num_blocks, block_size, kv_heads, head_dim]``, any float dtype).
    ``node``: this channel's name; others ``transfer(..., target_node=node)``.
    ``staging_mb``: shared memory for blocks sent but not yet acknowledged.
    ``full_timeout_s``: how long ``transfer`` waits for staging room before
    raising StagingFullError (0: at once). ``send_timeout_s``: how long a post
    may wait on a peer's full mailbox before the peer counts as gone.
    """

    def __init__(
        self,
        kv: Any,
        node: str,
        *,
        namespace: str = "default",
        staging_mb: float = DEFAULT_STAGING_MB,
        full_timeout_s: float = 0.0,
        send_timeout_s: float = 10.0,
    ) -> None:
        if not staging_mb > 0 or full_timeout_s < 0 or not send_timeout_s > 0:
            raise ConfigError("staging_mb and send_timeout_s must be > 0, full_timeout_s >= 0")
        self.kv = KVBlocks.of(kv)
        self.node = check_name("node", node)
        self.namespace = check_name("namespace", namespace)
        self.full_timeout_s = full_timeout_s
        self.stats = ChannelStats()
        self._staging_bytes = int(staging_mb * 2**20)
        self._segment: Segment | None = None  # created on the first transfer that stages anything
        self._lock = threading.Lock()
        self._in_flight = InFlight(self._lock, self._staging_bytes, self._check_open)
        self._arrivals = threading.Condition(self._lock)
        self._incoming: deque[IncomingTransfer] = deque()
        self._unanswered: dict[tuple[str, int], IncomingTransfer] = {}  # handed out by receive(), not answered
        self._attached: dict[str, tuple[str, Segment]] = {}  # segment name -> (sender, mapping)
        self._peers: set[str] = set()  # nodes we have exchanged messages with
        self._ids = itertools.count(1)
        self.closed = False
        self._mailbox = Mailbox(self.namespace, self.node, self._on_message, send_timeout_s)

    @classmethod
    def from_config(cls, section: Section, **deps: Any) -> SharedMemoryKVChannel:
        """Registry hook: ``kv`` and ``node`` come as dependencies (or ``node`` as an option)."""
        missing = "the shm KV transfer channel needs kv= (the KV pool) and node= (its name)"
        return channel_from_config(cls, section, deps, missing)

    @property
    def geometry(self) -> BlockGeometry:
        return self.kv.geometry

    @property
    def staging_capacity(self) -> int:
        """Bytes of staging area (rounded down to its alignment)."""
        return ExtentAllocator(self._staging_bytes).capacity

    def __enter__(self) -> SharedMemoryKVChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending
    def transfer(self, blocks: Sequence[int], target_node: str, *, metadata: Any = None) -> TransferHandle:
        """Stage ``blocks`` (every layer's K and V) and post them to ``target_node``; returns at once.

        ``metadata``: any JSON value the receiver gets with the blocks (which
        request they belong to, its tokens...). The blocks are copied before
        this returns, so the caller may free or overwrite them right away.
        """
        self._check_open()
        check_name("target node", target_node)
        ids = self.kv.check_ids(blocks)
        try:
            meta = b"" if metadata is None else json.dumps(metadata, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"transfer metadata must be JSON-serialisable: {exc}") from exc
        staged_meta = len(meta) > INLINE_METADATA_BYTES
        block_bytes = len(ids) * self.geometry.bytes_per_block
        nbytes = block_bytes + (len(meta) if staged_meta else 0)
        started = time.perf_counter()
        offset = self._reserve(nbytes) if nbytes else None
        handle = TransferHandle(next(self._ids), target_node, len(ids), block_bytes)
        try:
            if offset is not None:
                assert self._segment is not None and self._segment.data is not None
                run = self._segment.data[offset : offset + nbytes]
                self.kv.gather(ids, run)
                if staged_meta:
                    run[block_bytes:].copy_(torch.frombuffer(bytearray(meta), dtype=torch.uint8))
            handle.stage_s = time.perf_counter() - started
            msg = TransferMsg(
                self.node,
                handle.transfer_id,
                "" if offset is None or self._segment is None else self._segment.name,
                offset or 0,
                len(ids),
                self.geometry,
                None if staged_meta else metadata,
                len(meta) if staged_meta else 0,
            )
            with self._lock:
                self._in_flight.add(handle, offset, started, target_node)
            self._post(target_node, msg)
        except BaseException:
            with self._lock:
                self._in_flight.abandon(handle.transfer_id, offset)
            raise
        with self._lock:
            self.stats.count_sent(block_bytes, handle.stage_s)
        return handle

    def num_pending(self) -> int:
        """Transfers sent and not yet answered by their receivers."""
        with self._lock:
            return len(self._in_flight)

    def _reserve(self, nbytes: int) -> int:
        with self._lock:
            if self._segment is None:
                self._segment = Segment.create(self._staging_bytes)
            return self._in_flight.reserve(nbytes, self.full_timeout_s)

    def _post(self, target: str, msg: Message) -> None:
        try:
            self._mailbox.post(target, encode(msg))
        except Unreachable:
            if target in self._peers:
                raise PeerClosedError(f"node {target!r} has closed its channel") from None
            raise UnknownTargetError(
                f"no node {target!r} listens in KV transfer namespace {self.namespace!r}"
            ) from None
        except TimeoutError as exc:
            raise PeerClosedError(str(exc)) from exc
        with self._lock:
            self._peers.add(target)

    # ---------------------------------------------------------------- receiving
    def receive(self, timeout: float | None = None) -> IncomingTransfer | None:
        """The next transfer posted to this node, in arrival order; None if none came within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if not wait_until(self._arrivals, lambda: bool(self._incoming), deadline, self._check_open):
                    return None
                incoming = self._incoming.popleft()
                self._unanswered[(incoming.source, incoming.transfer_id)] = incoming
            try:
                incoming.load_staged_metadata()
            except PeerClosedError:
                continue  # its sender is gone, and with it the metadata
            return incoming

    def staged_run(self, msg: TransferMsg) -> torch.Tensor:
        """The flat uint8 bytes a transfer staged (mapping the sender's segment on first use)."""
        with self._lock:
            entry = self._attached.get(msg.segment)
        if entry is None:
            segment = Segment.attach(msg.segment)
            with self._lock:
                entry = self._attached.setdefault(msg.segment, (msg.src, segment))
        data = entry[1].data
        if data is None:
            raise PeerClosedError(f"staging segment {msg.segment} was released")
        nbytes = msg.num_blocks * msg.geometry.bytes_per_block + msg.metadata_nbytes
        if msg.offset < 0 or msg.offset + nbytes > data.numel():
            raise PeerClosedError(f"transfer {msg.transfer_id} from {msg.src!r} points outside its segment")
        return data[msg.offset : msg.offset + nbytes]

    def answer(self, incoming: IncomingTransfer, ack: AckMsg) -> None:
        """Tell a sender what became of its transfer (a gone sender needs no answer)."""
        with self._lock:
            self._unanswered.pop((incoming.source, incoming.transfer_id), None)
        with contextlib.suppress(UnknownTargetError, PeerClosedError):
            self._post(incoming.source, ack)

    def count_received(self, nbytes: int, copy_s: float) -> None:
        with self._lock:
            self.stats.count_received(nbytes, copy_s)

    # ---------------------------------------------------------- mailbox thread
    def _on_message(self, data: bytes) -> None:
        msg = decode(data)
        if isinstance(msg, TransferMsg):
            with self._lock:
                self._peers.add(msg.src)  # even when closing: it must hear our goodbye
                if self.closed:
                    return
                self._incoming.append(IncomingTransfer(self, msg, functools.partial(self.staged_run, msg)))
                self._arrivals.notify_all()
        elif isinstance(msg, AckMsg):
            self._on_ack(msg)
        elif isinstance(msg, ByeMsg):
            self._on_bye(msg.src)

    def _on_ack(self, msg: AckMsg) -> None:
        with self._lock:
            pending = self._in_flight.answered(msg, msg.src)  # None: unknown, or not from the node we sent it to
        if pending is not None:
            pending.settle(msg)

    def _on_bye(self, src: str) -> None:
        """A peer closed: our transfers to it fail, and its transfers to us are void."""
        with self._lock:
            failed = self._in_flight.lost(src)
            for incoming in [*self._incoming, *self._unanswered.values()]:
                if incoming.source == src:
                    incoming.void = True
            self._incoming = deque(i for i in self._incoming if i.source != src)
            for name in [n for n, (sender, _) in self._attached.items() if sender == src]:
                self._attached.pop(name)[1].close()
        for pending in failed:
            pending.handle._fail(PeerClosedError(f"node {src!r} closed before accepting transfer"))

    # ------------------------------------------------------------------ closing
    def close(self, drain_timeout_s: float = 0.0) -> None:
        """Leave: optionally wait for pending transfers to be answered, say goodbye, release shared memory.

        Transfers still unanswered then fail with ChannelClosedError; the
        staging segment is unlinked (receivers that mapped it keep their
        mapping until they let go of it).
        """
        with self._lock:
            if self.closed:
                return
            pending = self._in_flight.close(drain_timeout_s)
            self.closed = True
            self._incoming.clear()
            self._arrivals.notify_all()
        self._mailbox.stop()  # from here on, posts to this node fail at once
        with self._lock:
            peers = sorted(self._peers)
        for peer in peers:
            with contextlib.suppress(Unreachable, TimeoutError, OSError):
                self._mailbox.post(peer, encode(ByeMsg(self.node)))
        self._mailbox.close()
        for p in pending:
            p.handle._fail(ChannelClosedError(f"channel {self.node!r} closed before {p.handle.target!r} answered"))
        with self._lock:
            if self._segment is not None:
                self._segment.close()
            for _, segment in self._attached.values():
                segment.close()
            self._attached.clear()

    def _check_open(self) -> None:
        if self.closed:
            raise ChannelClosedError(f"KV transfer channel {self.node!r} is closed")

    def __repr__(self) -> str:
        return f"SharedMemoryKVChannel(node={self.node!r}, namespace={self.namespace!r}, {self.geometry.describe()})"
