"""A node's address on this machine: a Unix datagram socket that other channels post messages to.

Datagrams fit the job: messages are small and self-contained, the kernel
keeps their boundaries and order, and posting needs no connection set-up.
On Linux the socket lives in the *abstract* namespace (no file to leak:
the name disappears with the last descriptor, even after ``kill -9``);
elsewhere it is a socket file under the temp directory.

One daemon thread per mailbox blocks in ``recv`` and hands each message to
the channel; posting uses a second, unbound socket with a send timeout, so
a peer that stops draining its mailbox surfaces as an error instead of a
hang.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from sagellm.core.errors import ConfigError
from sagellm.kv_transfer.errors import NodeNameInUseError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_MESSAGE_BYTES = 64 * 1024
ABSTRACT = sys.platform.startswith("linux")

log = logging.getLogger(__name__)


class Unreachable(Exception):
    """Nothing listens at the target's address (not yet, never, or no more)."""


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{kind} {name!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
    return name


def address(namespace: str, node: str) -> str | bytes:
    if ABSTRACT:
        return f"\0sagellm-kv/{namespace}/{node}".encode()
    return str(Path(tempfile.gettempdir()) / f"sagellm-kv-{namespace}" / f"{node}.sock")


class Mailbox:
    """Receives datagrams addressed to ``(namespace, node)`` on a thread; posts to other nodes."""

    def __init__(
        self, namespace: str, node: str, on_message: Callable[[bytes], None], send_timeout_s: float = 10.0
    ) -> None:
        self.namespace = check_name("namespace", namespace)
        self.node = check_name("node", node)
        self._on_message = on_message
        self._address = address(namespace, node)
        self._inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._bind()
        except BaseException:
            self._inbox.close()
            raise
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.settimeout(send_timeout_s)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"sagellm-kv-mailbox-{node}", daemon=True)
        self._thread.start()

    def post(self, target: str, data: bytes) -> None:
        """Send one message; Unreachable if no mailbox has that name; TimeoutError if it stays full."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
        try:
            self._outbox.sendto(data, address(self.namespace, target))
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise Unreachable(target) from exc
        except TimeoutError as exc:
            raise TimeoutError(f"node {target!r} has not drained its mailbox") from exc

    def stop(self) -> None:
        """Stop receiving: every message delivered so far is handled, later posts to this node fail.

        The wake-up is an empty datagram to ourselves, queued behind whatever
        already arrived; what slips in after it is drained here, so no
        sender is left waiting on a message nobody will read.
        """
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError):
            self._outbox.sendto(b"", self._address)
        self._thread.join(timeout=5.0)
        self._inbox.setblocking(False)
        while True:
            try:
                data = self._inbox.recv(MAX_MESSAGE_BYTES)
            except OSError:  # BlockingIOError: nothing left
                break
            if data:
                self._handle(data)
        self._inbox.close()
        if not ABSTRACT:
            with contextlib.suppress(OSError):
                Path(str(self._address)).unlink()

    def close(self) -> None:
        self.stop()
        self._outbox.close()

    def _bind(self) -> None:
        if not ABSTRACT:
            path = Path(str(self._address))
            path.parent.mkdir(mode=0o700, exist_ok=True)
            if path.exists() and not _listening(path):  # a crashed channel's leftover
                path.unlink()
        try:
            self._inbox.bind(self._address)
        except OSError as exc:
            raise NodeNameInUseError(
                f"node name {self.node!r} is already taken in namespace {self.namespace!r} by a live channel"
            ) from exc

    def _run(self) -> None:
        while True:
            try:
                data = self._inbox.recv(MAX_MESSAGE_BYTES)
            except OSError:
                return
            if data:
                self._handle(data)
            elif self._stopped:
                return

    def _handle(self, data: bytes) -> None:
        try:
            self._on_message(data)
        except Exception:  # one bad message must not take the mailbox down with it
            log.exception("sagellm-kv mailbox %s: message handler failed", self.node)


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True
