"""SagePorts: hand out free TCP ports to servers and workers without clashes."""

from __future__ import annotations

import socket
import threading

from sagellm.core.errors import ConfigError


class SagePorts:
    """Allocates ports once per process, probing that each is actually free.

    Probing alone races with other processes; remembering what this process
    handed out at least keeps two of our own workers from colliding.
    """

    def __init__(self, host: str = "127.0.0.1", start: int = 8000, end: int = 8999) -> None:
        if not 0 < start <= end < 65536:
            raise ConfigError(f"port range must satisfy 0 < start <= end < 65536, got {start}..{end}")
        self.host, self.start, self.end = host, start, end
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self, preferred: int | None = None) -> int:
        with self._lock:
            candidates = ([preferred] if preferred else []) + list(range(self.start, self.end + 1))
            for port in candidates:
                if port not in self._taken and is_port_free(port, self.host):
                    self._taken.add(port)
                    return port
        raise ConfigError(f"no free port in {self.start}..{self.end} on {self.host}")

    def release(self, port: int) -> None:
        with self._lock:
            self._taken.discard(port)


def is_port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
