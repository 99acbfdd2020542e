"""``serve()`` steps the engine on the thread that called it, and stops cleanly on Ctrl-C.

On CPU a second thread running torch ops gets its own OpenMP team; with more
OpenMP threads than cores libgomp stops spinning between parallel regions,
and batch-1 decode ran at half speed behind the HTTP server. So ``serve``
keeps the engine on the caller's thread (the one that loaded the model) and
runs HTTP on another. Signals reach only the main thread, which pytest's is,
so this test calls ``serve`` here and stops it with a real SIGINT.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from server_helpers import wait_until

from sagellm.core.ports import ephemeral_port
from sagellm.engines import LLMEngine
from sagellm.engines.server import create_app, serve


def test_engine_steps_on_the_serving_thread_and_ctrl_c_stops_it(make_engine: Callable[..., LLMEngine]) -> None:
    assert threading.current_thread() is threading.main_thread()
    engine = make_engine()
    stepped_on: set[str] = set()
    hook = engine.runner.model.register_forward_hook(lambda *_: stepped_on.add(threading.current_thread().name))
    port = ephemeral_port()
    outcome: dict[str, Any] = {}
    client = threading.Thread(target=_use_then_interrupt, args=(port, outcome), name="test-client")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        client.start()
        serve(create_app(engine), "127.0.0.1", port, log_level="warning")  # returns after the SIGINT
    finally:
        hook.remove()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.join(timeout=30)
    assert outcome.get("error") is None, outcome["error"]
    assert outcome["health"] == 200
    assert outcome["text"]
    assert stepped_on == {threading.main_thread().name}
    assert not engine.has_unfinished()


def _use_then_interrupt(port: int, outcome: dict[str, Any]) -> None:
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _status(f"{base}/health") == 200, 60, "server did not start")
        outcome["health"] = 200
        body = {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
        outcome["text"] = httpx.post(f"{base}/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    except Exception as exc:  # reported by the test thread, which owns the assertions
        outcome["error"] = exc
    finally:
        os.kill(os.getpid(), signal.SIGINT)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(autouse=True)
def _one_thread_for_torch() -> Any:
    """The session's other servers run torch on one thread; so does this one (the machine stays usable)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_torch_workers_yield_to_python_threads_while_serving() -> None:
    """Only threads Python did not start are lowered (torch's OpenMP pool), and they get their priority back."""
    import torch

    from sagellm.engines.server.worker_priority import (
        WORKER_NICE_INCREMENT,
        lower_native_worker_priority,
        restore_priority,
    )

    torch.set_num_threads(2)
    (torch.randn(512, 512) @ torch.randn(512, 512)).sum()  # the OpenMP pool exists from here on
    main_nice = os.getpriority(os.PRIO_PROCESS, threading.main_thread().native_id)
    previous = lower_native_worker_priority()
    try:
        assert previous, "torch started no worker thread"
        assert threading.main_thread().native_id not in previous
        assert os.getpriority(os.PRIO_PROCESS, threading.main_thread().native_id) == main_nice
        for tid, nice in previous.items():
            assert os.getpriority(os.PRIO_PROCESS, tid) == nice + WORKER_NICE_INCREMENT
    finally:
        restore_priority(previous)
