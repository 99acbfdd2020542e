"""The link to a worker on another host: pickled messages over one authenticated TCP connection.

Used by disaggregation (a prefill or decode worker, ``sagellm pd-worker``)
and tensor parallelism (a rank, ``sagellm tp-worker``). A local
disaggregated worker is a spawned child fed through multiprocessing
queues; a remote one dials the coordinator instead and gets
the same messages over a ``multiprocessing.connection`` (HMAC challenge
with a shared token, then pickles). Each side sees the queue-shaped
objects it already uses, so the worker loop and the coordinator's polling
are the same code for both::

    coordinator host                                     worker host
    PDCoordinator ── RemoteWorker.put ──── TCP ────► LinkInbox.get ──► worker loop
        events queue ◄── reader thread ◄── TCP ◄──── LinkEvents.put ◄──┘

Pickles are trusted, so the token is what keeps strangers out: listen on
a trusted network only.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Client, Connection, Listener
from typing import Any, TypeVar

from sagellm.core.errors import ConfigError, SageLLMError

logger = logging.getLogger(__name__)
K = TypeVar("K")

RETRY_S = 0.5  # a worker started before its coordinator retries this often
GREETING_TIMEOUT_S = 10.0  # a connection that does not say who it is within this is dropped
TOKEN_ENV = "SAGELLM_WORKER_TOKEN"  # the shared token, when no --worker-token gives it


class LinkClosedError(SageLLMError):
    """The other end of a worker link went away."""


class LinkInbox:
    """Worker side: the coordinator's messages, read like a queue (``get`` / ``get_nowait``)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def get(self, timeout: float | None = None) -> Any:
        try:
            if not self._conn.poll(timeout):
                raise queue.Empty
            return self._conn.recv()
        except (EOFError, OSError):
            raise SystemExit(0) from None  # the coordinator is gone: nothing left to work for

    def get_nowait(self) -> Any:
        return self.get(0.0)


class LinkEvents:
    """Worker side: events to the coordinator (``put``), safe from any thread."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def put(self, event: Any) -> None:
        with self._lock:
            try:
                self._conn.send(event)
            except (EOFError, OSError):
                raise SystemExit(0) from None


class RemoteWorker:
    """Coordinator side: one joined worker; ``put`` sends, a reader thread forwards its events to ``events``."""

    def __init__(self, role: str, conn: Connection, peer: str, events: Any) -> None:
        self.role, self.peer = role, peer
        self._conn = conn
        self._events = events
        self._lock = threading.Lock()
        self.disconnected = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"sagellm-{role}-link", daemon=True)
        self._reader.start()

    def put(self, message: Any) -> None:
        with self._lock:
            try:
                self._conn.send(message)
            except (EOFError, OSError):
                self.disconnected.set()

    def close(self) -> None:
        self._conn.close()

    def _read(self) -> None:
        try:
            while True:
                self._events.put(self._conn.recv())
        except (EOFError, OSError):
            pass
        except Exception:  # an event that would not unpickle: the link is unusable
            logger.exception("the %s worker at %s sent something unreadable", self.role, self.peer)
        self.disconnected.set()


def check_token(token: str | None) -> bytes:
    """The token as the HMAC key; ConfigError when there is none (strangers could then run pickles here)."""
    if not token:
        raise ConfigError(f"workers on other hosts need a shared token (--worker-token or ${TOKEN_ENV})")
    return token.encode()


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)


def dial(address: tuple[str, int], token: bytes, timeout_s: float) -> Connection:
    """Connect to a coordinator, retrying while it is not up yet; a wrong token fails at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return Client(address, authkey=token)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"no coordinator answered at {address[0]}:{address[1]} within {timeout_s:.0f} s"
                ) from None
            time.sleep(RETRY_S)
        except Exception as exc:  # AuthenticationError and friends
            raise ConfigError(f"the coordinator at {address[0]}:{address[1]} refused this worker: {exc}") from None


class WorkerListener:
    """Where remote workers dial in; ``accept`` returns the next authenticated connection and its peer."""

    def __init__(self, address: tuple[str, int], token: bytes) -> None:
        try:
            self._listener = Listener(address, authkey=token)
        except OSError as exc:
            raise ConfigError(f"cannot listen for workers on {address[0]}:{address[1]}: {exc}") from None
        self.address: tuple[str, int] = self._listener.address
        self._joined: queue.Queue[tuple[Connection, str]] = queue.Queue()
        self._closed = False
        threading.Thread(target=self._accept_loop, name="sagellm-worker-listener", daemon=True).start()

    def accept(self, timeout_s: float) -> tuple[Connection, str] | None:
        try:
            return self._joined.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn = self._listener.accept()
            except OSError:
                if self._closed:
                    return
                continue
            except Exception as exc:  # a dialler with the wrong token: refuse it, keep listening
                logger.warning("refused a worker connection: %s", exc)
                continue
            self._joined.put((conn, _peer_of(self._listener)))


def _peer_of(listener: Listener) -> str:
    last = listener.last_accepted
    return f"{last[0]}:{last[1]}" if isinstance(last, tuple) else str(last)


def read_greeting(conn: Connection) -> Any:
    """A new connection's first message (who it is), or None if it says nothing in time or hangs up."""
    try:
        return conn.recv() if conn.poll(GREETING_TIMEOUT_S) else None
    except (EOFError, OSError):
        return None


def await_joins(
    address: tuple[str, int],
    token: bytes,
    wanted: Sequence[K],
    greet: Callable[[Connection, str, list[K]], K | None],
    timeout_s: float,
    missing: Callable[[list[K], str], Exception],
) -> dict[K, tuple[Connection, str]]:
    """Listen at ``address`` until one connection has joined for each of ``wanted``.

    ``greet(conn, peer, still_wanted)`` says which one a new connection is
    (None: it is none of them, and it has closed it). After ``timeout_s``,
    ``missing(absent, "HOST:PORT")`` is raised; on any failure every joined
    connection is closed. The listener is closed either way.
    """
    listener = WorkerListener(address, token)
    where = f"{listener.address[0]}:{listener.address[1]}"
    joined: dict[K, tuple[Connection, str]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(joined) < len(wanted):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise missing([k for k in wanted if k not in joined], where)
            got = listener.accept(min(remaining, 1.0))
            if got is None:
                continue
            conn, peer = got
            key = greet(conn, peer, [k for k in wanted if k not in joined])
            if key is not None:
                joined[key] = (conn, peer)
                logger.info("%s joined from %s", key, peer)
    except BaseException:
        for conn, _ in joined.values():
            conn.close()
        raise
    finally:
        listener.close()
    return joined
