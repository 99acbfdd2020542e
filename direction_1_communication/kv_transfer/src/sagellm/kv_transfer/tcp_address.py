"""``host:port`` node addresses of the TCP channel: parsed, resolved through ``peers``, bound.

Checked when the channel is built or a transfer named, so a typo is a
ConfigError at once, never a connect that hangs.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from sagellm.core.errors import ConfigError
from sagellm.kv_transfer.errors import NodeNameInUseError


@dataclass(frozen=True, slots=True)
class Address:
    """Where a TCP channel listens (``port`` 0: any free port, for tests and benchmarks)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, what: str = "address") -> Address:
        """``"10.0.0.2:5555"``, ``"node-a:5555"`` or ``"[::1]:5555"``; ConfigError for anything else."""
        if not isinstance(text, str) or ":" not in text:
            raise ConfigError(f"KV transfer {what} must be 'host:port', got {text!r}")
        host, _, port_text = text.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]  # a bracketed IPv6 literal
        if not host or any(c.isspace() for c in host):
            raise ConfigError(f"KV transfer {what} {text!r} has no host")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"KV transfer {what} {text!r}: port {port_text!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"KV transfer {what} {text!r}: port {port} is outside 0-65535")
        return cls(host, port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def resolve(name: str, peers: Mapping[str, str], what: str = "target node") -> Address:
    """A node's address: its entry in ``peers`` (``{"decode": "10.0.0.2:5555"}``), else the name itself."""
    if name in peers:
        return Address.parse(peers[name], f"address of peer {name!r}")
    if not isinstance(name, str) or ":" not in name:
        raise ConfigError(
            f"KV transfer {what} {name!r} is neither 'host:port' nor a name in kv_transfer.options.peers "
            f"(known: {sorted(peers) or 'none'})"
        )
    return Address.parse(name, what)


def open_listener(address: Address, accept_timeout_s: float) -> socket.socket:
    """A listening socket on ``address``; NodeNameInUseError if taken, ConfigError if not bindable here."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"KV transfer listen address {address}: cannot resolve {address.host!r} ({exc})") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restarted worker may rebind at once
        sock.bind(sockaddr)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NodeNameInUseError(f"KV transfer address {address} is already in use") from None
        raise ConfigError(f"KV transfer channel cannot listen on {address}: {exc.strerror or exc}") from None
    sock.settimeout(accept_timeout_s)  # accept() wakes up to notice a close
    return sock


def check_peers(peers: Mapping[str, str] | None) -> Mapping[str, str]:
    if peers is None:
        return {}
    if not isinstance(peers, Mapping):
        raise ConfigError(f"kv_transfer peers must map node names to 'host:port', got {type(peers).__name__}")
    for name, addr in peers.items():
        Address.parse(addr, f"address of peer {name!r}")
    return peers  # kept, not copied: a directory that learns addresses later is consulted at each transfer
