"""``sagellm serve``: its arguments, and a real process's graceful shutdown on SIGTERM.

The shutdown test runs the CLI in a subprocess (its own model load, one
torch thread), streams two requests, sends SIGTERM, and checks that the
short one finishes normally, the long one is aborted when the grace period
ends, new connections are refused, and the process exits 0.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from typing import Any

import httpx
import openai
import pytest
from server_helpers import serve_process

from sagellm.engines.cli.main import main

GRACE_S = 8.0  # generous: the short request must finish inside it even on a loaded CI machine


def test_help_explains_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--host",
        "--port",
        "--served-model-name",
        "--max-waiting",
        "--shutdown-grace",
        "--model",
        "--threads",
    ):
        assert option in text


@pytest.mark.parametrize(
    "argv",
    [["--port", "70000"], ["--port", "http"], ["--max-waiting", "0"], ["--shutdown-grace", "-1"], ["--bogus"]],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", *argv])
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_port_in_use_exits_2_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        started = time.monotonic()
        assert main(["serve", "--port", str(sock.getsockname()[1])]) == 2
    assert time.monotonic() - started < 5
    assert "in use" in capsys.readouterr().err


def _stream(client: openai.OpenAI, max_tokens: int, first: threading.Event, out: dict[str, Any]) -> None:
    chunks = []
    for chunk in client.completions.create(
        model="smol", prompt="Once", max_tokens=max_tokens, temperature=0, stream=True, extra_body={"ignore_eos": True}
    ):
        chunks.append(chunk)
        first.set()
    out["text"] = "".join(c.choices[0].text for c in chunks if c.choices)
    out["finish_reason"] = chunks[-1].choices[0].finish_reason
    out["ended"] = time.monotonic()


def test_sigterm_drains_then_aborts_and_exits_0() -> None:
    argv = ["--threads", "1", "--dtype", "float32", "--num-blocks", "128", "--served-model-name", "smol"]
    argv += ["--shutdown-grace", str(GRACE_S), "--log-level", "warning"]
    with serve_process(argv, startup_s=120) as (process, base):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=60)
        short: dict[str, Any] = {}
        long: dict[str, Any] = {}
        events = [threading.Event(), threading.Event()]
        threads = [
            threading.Thread(target=_stream, args=(client, 8, events[0], short)),
            threading.Thread(target=_stream, args=(client, 2000, events[1], long)),
        ]
        for thread in threads:
            thread.start()
        assert all(event.wait(60) for event in events)
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        time.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health", timeout=5)  # no longer accepting
        for thread in threads:
            thread.join(timeout=60)
        assert short["finish_reason"] == "length"  # in-flight work finished within the grace period
        assert long["finish_reason"] == "abort"  # the rest was aborted when it ran out
        assert GRACE_S - 0.5 < long["ended"] - sent < GRACE_S + 5
        assert process.wait(timeout=30) == 0
