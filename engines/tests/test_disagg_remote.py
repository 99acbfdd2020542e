"""Disaggregated workers on other hosts: ``sagellm pd-worker`` joining ``sagellm serve --disaggregated``.

One host stands in for two: the decode worker runs as its own
``sagellm pd-worker`` process that dials the server, and KV crosses over
tcp at fixed 127.0.0.1 ports, exactly as it would between machines. The
link's refusals (wrong token, a role nobody wants, nobody listening) are
checked without loading a model.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from server_helpers import cli_process, serve_process

from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.core.ports import ephemeral_port
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.cli.main import main
from sagellm.engines.disagg import WorkerError
from sagellm.engines.disagg.remote_worker_main import run_remote_worker
from sagellm.engines.disagg.remote_workers import RemoteWorkers, join_remote_workers
from sagellm.engines.engine.worker_link import WorkerListener, dial

TOKEN = "test-token"
PROMPT = "The capital of France is"


def _tcp_flags(prefill_port: int, decode_port: int) -> list[str]:
    peers = f'peers={{prefill: "127.0.0.1:{prefill_port}", decode: "127.0.0.1:{decode_port}"}}'
    return ["--kv-transfer", "tcp", "--kv-transfer-option", peers]


@contextlib.contextmanager
def _remote_deployment() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]]:
    """A server whose decode worker is a ``sagellm pd-worker`` process; yields (server, worker, base URL)."""
    listen, prefill_port, decode_port = ephemeral_port(), ephemeral_port(), ephemeral_port()
    env = {**os.environ, "SAGELLM_WORKER_TOKEN": TOKEN}
    worker_argv = ["pd-worker", "--role", "decode", "--connect", f"127.0.0.1:{listen}", "--threads", "1"]
    serve_argv = ["--disaggregated", "--remote-workers", "decode", "--worker-listen", f"127.0.0.1:{listen}"]
    serve_argv += ["--worker-token", TOKEN, *_tcp_flags(prefill_port, decode_port)]
    serve_argv += ["--dtype", "float32", "--ggml-activations", "float32"]  # as conftest's llm (EXACT_MODEL)
    serve_argv += ["--num-blocks", "64", "--served-model-name", "smol", "--log-level", "warning"]
    with cli_process(worker_argv, env) as worker, serve_process(serve_argv) as (server, base):
        yield server, worker, base


def _complete(base: str) -> str:
    body = {"model": "smol", "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    response = httpx.post(f"{base}/v1/completions", json=body, timeout=60)
    assert response.status_code == 200
    return str(response.json()["choices"][0]["text"])


@pytest.mark.slow
def test_a_remote_decode_worker_serves_and_stops_with_the_server(llm: LLM) -> None:
    with _remote_deployment() as (server, worker, base):
        (expected,) = llm.generate([PROMPT], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
        assert _complete(base) == expected.text  # fp32 on both sides: the same tokens
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert worker.wait(timeout=60) == 0  # told to shut down, not orphaned


@pytest.mark.slow
def test_losing_a_remote_worker_stops_the_server_with_exit_1() -> None:
    with _remote_deployment() as (server, worker, base):
        assert _complete(base)
        worker.kill()
        assert server.wait(timeout=30) == 1
        err = server.stderr.read().decode() if server.stderr else ""
        assert "the decode worker at 127.0.0.1" in err.split("sagellm: error:")[-1]


def test_a_worker_with_the_wrong_token_is_refused_at_once() -> None:
    listener = WorkerListener(("127.0.0.1", 0), TOKEN.encode())
    try:
        started = time.monotonic()
        with pytest.raises(ConfigError, match="refused this worker"):
            dial(listener.address, b"wrong", timeout_s=30)
        assert time.monotonic() - started < 5
    finally:
        listener.close()


def test_dialling_nobody_gives_up_after_the_timeout() -> None:
    with pytest.raises(ConfigError, match="no coordinator answered"):
        dial(("127.0.0.1", ephemeral_port()), TOKEN.encode(), timeout_s=1.0)


def test_a_worker_offering_a_role_nobody_wants_is_told_so() -> None:
    config = load_config(
        kv_transfer={"implementation": "tcp", "options": {"peers": {"prefill": "a:1", "decode": "b:2"}}}
    )
    listen = ephemeral_port()
    spec = RemoteWorkers(("decode",), f"127.0.0.1:{listen}", TOKEN)
    outcome: queue.Queue[Any] = queue.Queue()

    def coordinator() -> None:
        try:
            outcome.put(join_remote_workers(spec, config, queue.Queue(), timeout_s=3.0))
        except WorkerError as exc:
            outcome.put(exc)

    thread = threading.Thread(target=coordinator)
    thread.start()
    with pytest.raises(ConfigError, match="did not take this worker as prefill"):
        run_remote_worker("prefill", f"127.0.0.1:{listen}", TOKEN, {}, connect_timeout_s=10)
    thread.join(timeout=10)
    result = outcome.get_nowait()
    assert isinstance(result, WorkerError) and "no decode worker joined" in str(result)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--remote-workers", "decode"], "only apply with --disaggregated"),
        (["--disaggregated", "--remote-workers", "decode", "--worker-listen", "127.0.0.1:7000"], "tcp"),
        (["--disaggregated", "--remote-workers", "decode"], "--worker-listen"),
        (["--disaggregated", "--remote-workers", "middle", "--worker-listen", "127.0.0.1:7000"], "roles"),
    ],
)
def test_serve_refuses_remote_workers_it_could_not_use(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGELLM_WORKER_TOKEN", TOKEN)
    assert main(["serve", "--port", str(ephemeral_port()), *argv]) == 2
    assert match in capsys.readouterr().err


def test_serve_refuses_remote_workers_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAGELLM_WORKER_TOKEN", raising=False)
    argv = ["--disaggregated", "--remote-workers", "decode", "--worker-listen", "127.0.0.1:7000", *_tcp_flags(1, 2)]
    assert main(["serve", "--port", str(ephemeral_port()), *argv]) == 2
    assert "shared token" in capsys.readouterr().err


def test_pd_worker_refuses_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pd-worker", "--role", "decode", "--connect", "nohost", "--worker-token", TOKEN]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
