"""SagePorts: distinct free ports, skipping ones in use, clear errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from sagellm.core.errors import ConfigError
from sagellm.core.ports import SagePorts, ephemeral_port, is_port_free


def _free_range(width: int) -> tuple[int, int]:
    """A window of ``width`` ports that are free right now (start from an OS-chosen one)."""
    for _ in range(50):
        start = ephemeral_port()
        if start + width < 65536 and all(is_port_free(p) for p in range(start, start + width)):
            return start, start + width - 1
    pytest.skip("no window of free ports found")


@pytest.fixture
def listening() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield int(sock.getsockname()[1])
    sock.close()


def test_allocates_distinct_free_ports() -> None:
    start, end = _free_range(6)
    ports = SagePorts(start=start, end=end)
    got = [ports.allocate() for _ in range(4)]
    assert len(set(got)) == 4
    assert all(start <= p <= end for p in got)


def test_allocated_port_can_be_bound() -> None:
    start, end = _free_range(3)
    port = SagePorts(start=start, end=end).allocate()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_bound_port_is_skipped(listening: int) -> None:
    assert not is_port_free(listening)
    ports = SagePorts(start=listening, end=min(listening + 20, 65535))
    assert ports.allocate() != listening


def test_bound_but_not_listening_port_is_skipped() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        assert not is_port_free(port)


def test_preferred_port_first_and_fallback(listening: int) -> None:
    start, end = _free_range(4)
    ports = SagePorts(start=start, end=end)
    assert ports.allocate(preferred=end) == end
    assert ports.allocate(preferred=end) != end, "already handed out"
    assert ports.allocate(preferred=listening) != listening, "in use by another socket"


def test_release_makes_port_available_again() -> None:
    start, _ = _free_range(1)
    ports = SagePorts(start=start, end=start)
    port = ports.allocate()
    with pytest.raises(ConfigError, match="no free port"):
        ports.allocate()
    ports.release(port)
    assert ports.allocate() == port
    ports.release(12345)  # releasing an unknown port is harmless


def test_exhausted_range(listening: int) -> None:
    with pytest.raises(ConfigError, match=f"no free port in {listening}..{listening}"):
        SagePorts(start=listening, end=listening).allocate()


@pytest.mark.parametrize(("start", "end"), [(0, 10), (-1, 10), (9000, 8999), (65000, 65536), (70000, 70001)])
def test_bad_range(start: int, end: int) -> None:
    with pytest.raises(ConfigError, match="port range"):
        SagePorts(start=start, end=end)


def test_concurrent_allocation_never_duplicates() -> None:
    start, end = _free_range(16)
    ports = SagePorts(start=start, end=end)
    got: list[int] = []
    lock = threading.Lock()

    def grab() -> None:
        port = ports.allocate()
        with lock:
            got.append(port)

    threads = [threading.Thread(target=grab) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == len(set(got)) == 12


def test_ephemeral_port_is_in_range() -> None:
    assert 0 < ephemeral_port() < 65536
