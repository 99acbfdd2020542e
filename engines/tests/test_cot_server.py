"""The ``cot`` request option over HTTP: validated, refused where it cannot apply, streamed, reported.

Two servers: one around an engine with the scripted accelerator
(``cot_scripted.py``; every request exits at its second probe, 8 reasoning
tokens in), and the module's default one, which has none. Raw HTTP
(httpx), so the test sees exactly the status, the error body and each
streamed frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cot_scripted import SUFFIX, register
from server_helpers import RunningServer, start_server

from sagellm.engines import LLMEngine

register()

PROMPT = "Q: Tom has 3 apples and buys 5 more. How many apples does he have? A: Let's think."
CHAT = [{"role": "user", "content": "Tom has 3 apples and buys 5 more. How many apples does he have?"}]
EARLY_EXIT = {"early_exit": True}


@pytest.fixture(scope="module")
def cot_server(make_engine: Callable[..., LLMEngine]) -> Iterator[RunningServer]:
    options = {"answers": {4: "8", 8: "8"}, "stable": 2, "max_probe_tokens": 3}
    engine = make_engine(cot_acceleration={"implementation": "scripted", "options": options})
    running = start_server(engine)
    yield running
    running.stop()


def post(server: RunningServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=120)


def completion(**fields: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "max_tokens": 20, "temperature": 0, "ignore_eos": True, **fields}


def events(response: httpx.Response) -> list[dict[str, Any]]:
    frames = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    return [json.loads(frame) for frame in frames[:-1]]


def assert_bad_cot(response: httpx.Response, match: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and match in error["message"], error


def test_cot_needs_an_accelerator(server: RunningServer) -> None:
    response = post(server, "/v1/completions", completion(cot=EARLY_EXIT))
    assert_bad_cot(response, "--cot-acceleration")
    assert response.json()["error"]["param"] == "cot"


@pytest.mark.parametrize(
    "cot",
    [
        {"budget": 0},
        {"budget": "5"},
        {"self_consistency": 0},
        {"self_consistency": 65},
        {"early_exit": "yes"},
        {"x": 1},
    ],
)
def test_bad_cot_values_are_a_400(cot_server: RunningServer, cot: dict[str, Any]) -> None:
    response = post(cot_server, "/v1/chat/completions", {"messages": CHAT, "cot": cot})
    assert response.status_code == 400, response.text
    assert "cot" in json.dumps(response.json()["error"])


def test_self_consistency_does_not_stream(cot_server: RunningServer) -> None:
    response = post(cot_server, "/v1/completions", completion(stream=True, cot={"self_consistency": 3}))
    assert_bad_cot(response, "cannot stream")


def test_early_exit_streams_the_answer_last(cot_server: RunningServer) -> None:
    whole = post(cot_server, "/v1/completions", completion(cot=EARLY_EXIT)).json()
    choice = whole["choices"][0]
    assert choice["finish_reason"] == "stop" and SUFFIX in choice["text"]
    assert choice["reasoning"]["stopped_by"] == "probe" and choice["reasoning"]["reasoning_tokens"] == 8
    assert whole["usage"]["completion_tokens"] > 8

    streamed = post(cot_server, "/v1/completions", completion(stream=True, cot=EARLY_EXIT))
    chunks = [c["choices"][0] for c in events(streamed) if c["choices"]]
    assert "".join(c["text"] for c in chunks) == choice["text"]
    last = chunks[-1]
    assert last["finish_reason"] == "stop" and last["text"].endswith(choice["text"][choice["text"].index(SUFFIX) :])
    assert last["reasoning"]["stopped_by"] == "probe"
    assert all("reasoning" not in c for c in chunks[:-1])  # the report rides on the last chunk only


def test_plain_requests_carry_no_reasoning(cot_server: RunningServer) -> None:
    choice = post(cot_server, "/v1/completions", completion(max_tokens=4)).json()["choices"][0]
    assert "reasoning" not in choice


def test_chat_self_consistency_reports_the_vote(cot_server: RunningServer) -> None:
    body = {"messages": CHAT, "max_tokens": 6, "temperature": 0.8, "seed": 1, "cot": {"self_consistency": 4}}
    response = post(cot_server, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    report = choice["reasoning"]
    assert report["stopped_by"] in ("consistency", "samples") and 2 <= report["samples"] <= 4
    assert len(report["answers"]) >= 2 and choice["message"]["content"]


def test_chat_budget_is_in_the_prompt_and_caps_the_reply(cot_server: RunningServer) -> None:
    plain = post(cot_server, "/v1/chat/completions", {"messages": CHAT, "max_tokens": 2}).json()
    body = {"messages": CHAT, "max_tokens": 30, "temperature": 0, "cot": {"budget": 6}}
    capped = post(cot_server, "/v1/chat/completions", body).json()
    assert capped["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]  # "Think for at most 6 tokens."
    choice = capped["choices"][0]
    assert choice["reasoning"]["stopped_by"] == "budget" and choice["reasoning"]["reasoning_tokens"] == 6
    assert choice["finish_reason"] == "stop" and SUFFIX in choice["message"]["content"]
