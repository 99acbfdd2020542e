"""Disaggregated prefill/decode behind the HTTP server: ``sagellm serve --disaggregated``.

The engine under test is a real pair of worker processes (float32, one
torch thread each, KV over the tcp channel here; test_disagg covers shm);
the session's colocated ``llm`` is the reference for greedy tokens; the
prefill worker stages KV on an overlap thread (``overlap_pipeline:
threads``; test_disagg covers inline staging). Aborts
are checked where they matter: a request dropped in either phase leaves no
running sequence and no held KV block in the decode worker.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from engines_helpers import EXACT_MODEL
from server_helpers import RunningServer, children_of, serve_process, start_server, wait_until

from sagellm.core.config import load_config
from sagellm.core.errors import ContextLengthExceededError, InvalidRequestError
from sagellm.core.ports import ephemeral_port
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines import LLM
from sagellm.engines.cli.main import main
from sagellm.engines.disagg.disaggregated_engine import DisaggregatedEngine

pytestmark = pytest.mark.slow

GREEDY = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
LONG = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def pd_engine(model_path: Path) -> Iterator[DisaggregatedEngine]:
    config = load_config(
        model={**EXACT_MODEL, "path": str(model_path)},
        kv_pool={"num_blocks": 160},
        kv_transfer={"implementation": "tcp"},
        overlap_pipeline={"implementation": "threads"},
    )
    engine = DisaggregatedEngine(config)
    yield engine
    engine.close()


def _run(engine: DisaggregatedEngine, until: set[str], timeout_s: float = 120.0) -> dict[str, list[StepOutput]]:
    """Step until every request in ``until`` finished; every output seen, by request."""
    seen: dict[str, list[StepOutput]] = {}
    deadline = time.monotonic() + timeout_s
    while not until <= {rid for rid, outs in seen.items() if outs[-1].finished}:
        assert time.monotonic() < deadline, f"unfinished after {timeout_s} s: {until - set(seen)}"
        for output in engine.step():
            seen.setdefault(output.request_id, []).append(output)
    return seen


def _idle(engine: DisaggregatedEngine) -> bool:
    load = engine.load()
    return load.num_running == load.num_waiting == 0 and load.kv_free_blocks == load.kv_total_blocks


def test_engine_checks_requests_before_handing_them_over(pd_engine: DisaggregatedEngine) -> None:
    with pytest.raises(ContextLengthExceededError, match="maximum context length"):
        pd_engine.add_request([100] * 10, SamplingParams(max_tokens=100_000), "too-long")
    with pytest.raises(InvalidRequestError, match="at least one token"):
        pd_engine.add_request([], GREEDY, "empty")
    with pytest.raises(InvalidRequestError, match="token ids"):
        pd_engine.add_request([10**9], GREEDY, "out-of-vocab")
    assert not pd_engine.has_unfinished()


def test_an_abort_while_prefilling_leaves_nothing_behind(
    pd_engine: DisaggregatedEngine, prompts: list[list[int]]
) -> None:
    pd_engine.add_request(prompts[0], LONG, "dropped-early")
    assert pd_engine.abort_request("dropped-early")
    assert not pd_engine.abort_request("dropped-early")  # already gone
    pd_engine.add_request(prompts[1], GREEDY, "kept")
    seen = _run(pd_engine, {"kept"})
    assert set(seen) == {"kept"} and seen["kept"][-1].num_output_tokens == GREEDY.max_tokens
    assert _idle(pd_engine)
    prefill = pd_engine.coordinator.stats()["prefill"]  # no server yet: this thread may read the events
    # "kept" staged on the overlap thread (and "dropped-early" too when its prefill beat the abort: refused then)
    assert prefill["num_transfers"] in (1, 2) and prefill["bytes_sent"] > 0


def test_an_abort_while_decoding_frees_the_decode_workers_blocks(
    pd_engine: DisaggregatedEngine, prompts: list[list[int]]
) -> None:
    pd_engine.add_request(prompts[2], LONG, "dropped-late")
    deadline = time.monotonic() + 120
    decoded = 0
    while decoded < 3:  # the decode worker is generating it
        assert time.monotonic() < deadline
        decoded = max([decoded, *(o.num_output_tokens for o in pd_engine.step())])
    assert pd_engine.load().num_running == 1
    assert pd_engine.abort_request("dropped-late")
    pd_engine.add_request(prompts[3], GREEDY, "after")
    seen = _run(pd_engine, {"after"})
    assert set(seen) == {"after"}  # nothing more of the aborted one reached the caller
    assert _idle(pd_engine)  # reported by the decode worker after its last step: the aborted one holds nothing


@pytest.fixture(scope="module")
def served(pd_engine: DisaggregatedEngine) -> Iterator[RunningServer]:
    running = start_server(pd_engine)
    yield running
    running.stop()


def _complete(base: str, prompt: list[int], **body: Any) -> httpx.Response:
    payload = {"prompt": prompt, "max_tokens": 8, "temperature": 0, "ignore_eos": True, **body}
    return httpx.post(f"{base}/v1/completions", json=payload, timeout=120)


def test_served_greedy_completions_equal_the_colocated_engine(
    served: RunningServer, llm: LLM, prompts: list[list[int]]
) -> None:
    batch = prompts[:4]
    with ThreadPoolExecutor(len(batch)) as pool:  # at once: the workers batch them
        responses = list(pool.map(lambda p: _complete(served.base_url, p), batch))
    expected = llm.generate(batch, GREEDY)
    assert [r.status_code for r in responses] == [200] * len(batch)
    assert [r.json()["choices"][0]["text"] for r in responses] == [e.text for e in expected]
    assert [r.json()["usage"]["prompt_tokens"] for r in responses] == [len(p) for p in batch]
    assert all(r.json()["usage"]["completion_tokens"] == GREEDY.max_tokens for r in responses)


def test_a_client_that_leaves_mid_stream_is_aborted_in_the_workers(served: RunningServer) -> None:
    aborted = served.metric("sagellm:requests_aborted_total")
    body = {"messages": [{"role": "user", "content": "Count to a thousand."}], "max_tokens": 400}
    body |= {"temperature": 0, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{served.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        chunks = [next(lines) for _ in range(6)]  # the role chunk, then tokens
    assert response.status_code == 200 and any("content" in c for c in chunks)
    wait_until(lambda: served.metric("sagellm:requests_aborted_total") == aborted + 1, 30, "no abort seen")
    assert _complete(served.base_url, [1, 2, 3]).status_code == 200
    wait_until(lambda: served.metric("sagellm:num_requests_running") == 0, 30, "a request still runs")
    assert served.metric("sagellm:kv_used_blocks") == 0  # the decode worker freed the aborted request's KV


def test_served_errors_are_openai_style(served: RunningServer) -> None:
    response = _complete(served.base_url, [100] * 10, max_tokens=100_000)
    assert response.status_code == 400 and "maximum context length" in response.json()["error"]["message"]
    assert httpx.get(f"{served.base_url}/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--kv-transfer", "tcp"], "only apply with --disaggregated"),
        (["--prefill-threads", "2"], "only apply with --disaggregated"),
        (["--disaggregated", "--tensor-parallel-size", "2"], "cannot be combined"),
        (["--disaggregated", "--kv-transfer", "carrier-pigeon"], "not installed"),
        (["--disaggregated", "--no-prefix-cache"], "prefix cache"),
        (["--disaggregated", "--threads", "2"], "--prefill-threads"),
        (["--overlap-pipeline", "threads"], "only apply with --disaggregated"),
        (["--disaggregated", "--overlap-pipeline", "telepathy"], "not installed"),
    ],
)
def test_what_cannot_work_is_refused_before_loading(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(["serve", "--port", str(ephemeral_port()), *argv]) == 2
    assert time.monotonic() - started < 10
    assert match in capsys.readouterr().err


def test_serve_disaggregated_answers_then_exits_1_when_a_worker_dies() -> None:
    argv = ["--disaggregated", "--dtype", "float32", "--num-blocks", "64", "--served-model-name", "smol"]
    with serve_process([*argv, "--log-level", "warning"]) as (process, base):
        body = {"model": "smol", "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}
        first = httpx.post(f"{base}/v1/completions", json=body, timeout=60)
        assert first.status_code == 200 and first.json()["choices"][0]["text"]
        workers = [pid for pid in children_of(process.pid) if b"spawn_main" in _cmdline(pid)]
        assert len(workers) == 2
        os.kill(workers[-1], signal.SIGKILL)
        assert process.wait(timeout=30) == 1  # found while idle: no request needed to notice
        err = process.stderr.read().decode() if process.stderr else ""
        reason = err.split("sagellm: error:")[-1]
        assert "worker exited unexpectedly" in reason and "Traceback" not in reason


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()
