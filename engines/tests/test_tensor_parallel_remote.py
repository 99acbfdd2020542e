"""Tensor-parallel ranks on other hosts: ``sagellm tp-worker`` joining ``sagellm serve -tp 2 --remote-ranks 1``.

One host stands in for two: rank 1 is a ``sagellm tp-worker`` process that
dials rank 0 over TCP and joins the gloo collectives at an explicit
rendezvous, as it would from another machine. Refusals are checked before
any weight loads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from server_helpers import cli_process, serve_process

from sagellm.core.ports import ephemeral_port
from sagellm.core.types import SamplingParams
from sagellm.engines import LLM
from sagellm.engines.cli.main import main

TOKEN = "test-token"
PROMPT = "The capital of France is"


@contextlib.contextmanager
def _two_hosts() -> Iterator[tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]]:
    """Rank 0 serving, rank 1 a tp-worker that dialled in; yields (server, worker, base URL)."""
    listen, rendezvous = ephemeral_port(), ephemeral_port()
    env = {**os.environ, "SAGELLM_WORKER_TOKEN": TOKEN}
    worker_argv = ["tp-worker", "--rank", "1", "--connect", f"127.0.0.1:{listen}", "--threads", "1"]
    serve_argv = ["-tp", "2", "--remote-ranks", "1", "--worker-listen", f"127.0.0.1:{listen}", "--worker-token", TOKEN]
    serve_argv += ["--dist-init-method", f"tcp://127.0.0.1:{rendezvous}", "--threads", "1", "--dtype", "float32"]
    serve_argv += ["--num-blocks", "64", "--served-model-name", "smol", "--log-level", "warning"]
    with cli_process(worker_argv, env) as worker, serve_process(serve_argv) as (server, base):
        yield server, worker, base


def _complete(base: str) -> httpx.Response:
    body = {"model": "smol", "prompt": PROMPT, "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    return httpx.post(f"{base}/v1/completions", json=body, timeout=60)


@pytest.mark.slow
def test_a_remote_rank_serves_the_same_tokens_and_stops_with_rank_0(llm: LLM) -> None:
    with _two_hosts() as (server, worker, base):
        response = _complete(base)
        (expected,) = llm.generate([PROMPT], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
        assert response.status_code == 200 and response.json()["choices"][0]["text"] == expected.text
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert worker.wait(timeout=30) == 0


@pytest.mark.slow
def test_losing_a_remote_rank_fails_the_next_step_and_exits_1() -> None:
    with _two_hosts() as (server, worker, base):
        assert _complete(base).status_code == 200
        worker.kill()
        worker.wait()
        failed = _complete(base)
        assert failed.status_code == 500 and "rank 1" in failed.json()["error"]["message"]
        assert server.wait(timeout=30) == 1
        err = server.stderr.read().decode() if server.stderr else ""
        assert "rank 1" in err.split("sagellm: error:")[-1]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--remote-ranks", "1", "--worker-listen", "127.0.0.1:7000"], "above 1"),
        (["-tp", "2", "--remote-ranks", "2", "--worker-listen", "127.0.0.1:7000"], "among 1..1"),
        (["-tp", "2", "--remote-ranks", "one"], "rank numbers"),
        (["-tp", "2", "--remote-ranks", "1"], "worker_listen"),
        (["-tp", "2", "--remote-ranks", "1", "--worker-listen", "127.0.0.1:7000"], "init_method"),
        (
            ["-tp", "2", "--remote-ranks", "1", "--worker-listen", "127.0.0.1:7000", "--collective-backend", "shm"]
            + ["--dist-init-method", "tcp://127.0.0.1:29500"],
            "one host",
        ),
        (["--worker-listen", "127.0.0.1:7000"], "only apply with"),
    ],
)
def test_serve_refuses_remote_ranks_it_could_not_use(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAGELLM_WORKER_TOKEN", TOKEN)
    started = time.monotonic()
    assert main(["serve", "--port", str(ephemeral_port()), *argv]) == 2
    assert time.monotonic() - started < 15
    assert match in capsys.readouterr().err


def test_serve_refuses_remote_ranks_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAGELLM_WORKER_TOKEN", raising=False)
    argv = ["-tp", "2", "--remote-ranks", "1", "--worker-listen", "127.0.0.1:7000"]
    argv += ["--dist-init-method", "tcp://127.0.0.1:29500"]
    assert main(["serve", "--port", str(ephemeral_port()), *argv]) == 2
    assert "shared token" in capsys.readouterr().err


def test_tp_worker_gives_up_when_no_rank_0_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["tp-worker", "--rank", "1", "--connect", "127.0.0.1:1", "--worker-token", TOKEN, "--connect-timeout", "1"]
        )
        == 2
    )
    assert "no coordinator answered" in capsys.readouterr().err
