"""Run a real uvicorn server on 127.0.0.1 in a background thread, around an engine the test built.

Each server test module starts one (module-scoped fixture) around an engine
from conftest's ``make_engine``, which reuses the session's loaded model:
a server costs milliseconds, not a model load. The test thread then talks
to it over real sockets with the official ``openai`` / ``anthropic`` SDKs.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from sagellm.core.ports import ephemeral_port
from sagellm.engines.server import ServerOptions, build_server, create_app
from sagellm.engines.server.launcher import GracefulServer
from sagellm.engines.server.served_engine import ServedEngine

STARTUP_TIMEOUT_S = 30.0


@dataclass
class RunningServer:
    base_url: str
    engine: ServedEngine
    server: GracefulServer
    thread: threading.Thread
    previous_threads: int

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def metric(self, name: str) -> float:
        """One sample of /metrics, e.g. ``metric("sagellm:num_requests_waiting")``, whatever its labels."""
        text = httpx.get(f"{self.base_url}/metrics", timeout=10).text
        found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        assert found is not None, f"{name} missing from /metrics"
        return float(found.group(1))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        torch.set_num_threads(self.previous_threads)
        assert not self.thread.is_alive(), "server did not shut down"


def start_server(engine: ServedEngine, options: ServerOptions | None = None, threads: int = 1) -> RunningServer:
    """Serve ``engine``; torch runs on ``threads`` threads meanwhile, so the machine stays usable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    port = ephemeral_port()
    server = build_server(create_app(engine, options), "127.0.0.1", port, log_level="warning")
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), STARTUP_TIMEOUT_S, "server did not start")
    assert server.started, "server thread died during startup (see the log above)"
    return RunningServer(f"http://127.0.0.1:{port}", engine, server, thread, previous)


def wait_until(condition: Callable[[], bool], timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


@contextlib.contextmanager
def serve_process(argv: list[str], startup_s: float = 180.0) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``sagellm serve`` with ``argv`` in a subprocess on a free port, healthy; yields it and its base URL.

    Killed on the way out if it is still running; its stderr is a pipe the test may read.
    """
    port = ephemeral_port()
    command = [sys.executable, "-m", "sagellm.engines.cli.main", "serve", "--port", str(port), *argv]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(base) or process.poll() is not None, startup_s, "server did not start")
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def cli_process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``sagellm`` with ``argv`` in a subprocess (a worker that dials in, say); killed on the way out."""
    process = subprocess.Popen([sys.executable, "-m", "sagellm.engines.cli.main", *argv], env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found
