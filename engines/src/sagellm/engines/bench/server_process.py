"""Start an OpenAI-compatible server as a child process, wait until it is healthy, stop it after.

Peers are compared as users run them, as servers (``llama-server`` with
parallel slots, ``vllm serve``, ``sagellm serve``), through the same
streaming client. The child's output goes to a log file whose tail is
quoted when it fails to start, so a broken peer says why instead of hanging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sagellm.core.errors import SageLLMError

STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 2000


class ServerStartError(SageLLMError):
    """The server process exited or never became healthy; the message quotes its log."""


@dataclass(frozen=True, slots=True)
class ServerCommand:
    """How to run one server: ``argv`` listens on ``port``; healthy when ``health_path`` answers 200."""

    name: str
    argv: tuple[str, ...]
    port: int
    health_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 600.0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextmanager
def running_server(command: ServerCommand, log_dir: Path | None = None) -> Iterator[str]:
    """Yield the OpenAI base URL of a healthy ``command``; SIGTERM (then SIGKILL) it on exit."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="sagellm-peer-"))
    log_path = log_dir / f"{command.name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **command.env},
            start_new_session=True,  # a Ctrl-C of the benchmark reaches us, and we stop it cleanly
        )
        try:
            _wait_healthy(command, process, log_path)
            yield command.base_url
        finally:
            _stop(process)


def _wait_healthy(command: ServerCommand, process: subprocess.Popen[bytes], log_path: Path) -> None:
    url = f"http://127.0.0.1:{command.port}{command.health_path}"
    deadline = time.monotonic() + command.startup_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"{command.name} exited with code {process.returncode}: {_tail(log_path)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServerStartError(f"{command.name} was not healthy after {command.startup_timeout_s:.0f} s: {_tail(log_path)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(log_path: Path) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return text[-LOG_TAIL_CHARS:].strip() or "(no output)"
