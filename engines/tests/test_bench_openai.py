"""The HTTP backend of ``sagellm bench`` against a minimal fake OpenAI SSE server started here.

The fake streams ``max_tokens`` canned chunks a few ms apart, then a usage
chunk with ``prompt_tokens_details.cached_tokens`` and ``[DONE]``, and
records every request body, so the test sees exactly what the bench sent.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.bench.backends.openai import OpenAIBackend
from sagellm.engines.bench.metrics import MetricContext, compute_metrics
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.cli.main import main as sagellm

TOKEN_GAP_S = 0.005
CACHED_TOKENS = 2


class FakeOpenAI(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        model = {"id": "fake-model", "object": "model", "max_model_len": 64}
        self._json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.received.append(body)
        if "FAIL" in str(body["prompt"]):
            self._json(500, {"error": {"message": "boom"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self._event(": keep-alive comment, ignored")
        n = int(body["max_tokens"])
        for i in range(n):
            time.sleep(TOKEN_GAP_S)
            finish = "length" if i == n - 1 else None
            self._event("data: " + json.dumps({"choices": [{"index": 0, "text": f"tok{i} ", "finish_reason": finish}]}))
        usage = {"prompt_tokens": 7, "completion_tokens": n, "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS}}
        self._event("data: " + json.dumps({"choices": [], "usage": usage}))
        self._event("data: [DONE]")

    def _event(self, line: str) -> None:
        self.wfile.write((line + "\n\n").encode())
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


class CharTokenizer:
    vocab_size = 0x110000

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]:
        return self.encode("".join(f"[{m['role']}] {m['content']}\n" for m in messages) + "[assistant] ")


def backend(base_url: str) -> OpenAIBackend:
    return OpenAIBackend(base_url, CharTokenizer())


def test_streams_are_timed_token_by_token_with_usage(base_url: str) -> None:
    FakeOpenAI.received.clear()
    requests = [BenchRequest(f"r{i}", 4, prompt_token_ids=tuple(b"hello")) for i in range(3)]
    outcome = backend(base_url).run("t", requests, concurrency=2)
    assert [r.request_id for r in outcome.records] == ["r0", "r1", "r2"]
    for record in outcome.records:
        assert record.ok and record.finish_reason == "length"
        assert len(record.token_times_s) == 4 and record.num_output_tokens == 4
        assert record.num_prompt_tokens == 7 and record.num_cached_tokens == CACHED_TOKENS  # the server's usage
        assert record.ttft_s is not None and record.ttft_s > 0
        assert record.tpot_s is not None and TOKEN_GAP_S * 0.5 < record.tpot_s < 0.5
    sent = FakeOpenAI.received[0]
    assert sent["model"] == "fake-model" and sent["prompt"] == "hello" and sent["max_tokens"] == 4
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True} and sent["ignore_eos"] is True
    metrics = compute_metrics(outcome, MetricContext())
    assert metrics["avg_prefix_hit_rate"] == pytest.approx(CACHED_TOKENS / 7, abs=1e-4)
    assert metrics["output_throughput_tps"] > 0 and metrics["error_rate"] == 0.0


def test_failures_become_error_records(base_url: str) -> None:
    requests = [
        BenchRequest("ok", 2, prompt_token_ids=tuple(b"fine")),
        BenchRequest("bad", 2, prompt_token_ids=tuple(b"FAIL")),
    ]
    outcome = backend(base_url).run("t", requests, concurrency=None)
    ok, bad = outcome.records
    assert ok.ok and not bad.ok and bad.error is not None and "HTTP 500" in bad.error
    assert compute_metrics(outcome, MetricContext())["error_rate"] == 0.5


def test_second_turn_carries_the_first_answer(base_url: str) -> None:
    FakeOpenAI.received.clear()
    first = BenchRequest("t1", 2, messages=({"role": "user", "content": "Hi"},))
    second = BenchRequest("t2", 2, messages=({"role": "user", "content": "More"},), follows="t1")
    backend(base_url).run("chat", [first, second], concurrency=1)
    prompts = [body["prompt"] for body in FakeOpenAI.received]
    assert prompts[1] == "[user] Hi\n[assistant] tok0 tok1 \n[user] More\n[assistant] "
    assert prompts[1].startswith(prompts[0].removesuffix("[assistant] "))


def test_context_length_comes_from_the_model_list_and_long_prompts_are_clipped(base_url: str) -> None:
    FakeOpenAI.received.clear()
    target = backend(base_url)
    assert target.info.max_model_len == 64
    outcome = target.run("clip", [BenchRequest("long", 4, prompt_token_ids=tuple(b"x" * 100))], concurrency=1)
    assert outcome.num_clipped == 1 and len(FakeOpenAI.received[0]["prompt"]) == 60


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InvalidRequestError, match="cannot list models"):
        OpenAIBackend(f"http://127.0.0.1:{port}/v1", CharTokenizer())


def test_cli_against_the_fake_server(base_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--backend", "openai", "--base-url", base_url, "--workload", "synthetic", "--num-requests", "3"]
    argv += ["--input-len", "8", "--output-len", "3", "--concurrency", "2", "--out", str(tmp_path), "--no-progress"]
    assert sagellm(["bench", *argv]) == 0
    assert "| synthetic | 8->3 | 2 conc. | 3 | 0 |" in capsys.readouterr().out
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["target"]["backend"] == "openai" and report["model"] == "fake-model"
    metrics = report["runs"][0]["metrics"]
    assert metrics["num_completed"] == 3 and metrics["total_output_tokens"] == 9
    assert metrics["peak_mem_mb"] is None and metrics["preemptions"] is None and metrics["comm_share"] is None
    assert (tmp_path / "bench.md").read_text().startswith("### sagellm bench: workload synthetic")
