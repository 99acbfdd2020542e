"""Bad input gets a 4xx in OpenAI's error shape, a full queue gets 429 + Retry-After, and the server keeps serving.

The module's server has a one-slot batch and a one-request waiting queue,
so overload is easy to arrange: one request running, one waiting, the next
one refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from server_helpers import RunningServer, start_server, wait_until

from sagellm.core.errors import ServerOverloadedError
from sagellm.core.types import SamplingParams
from sagellm.engines import LLMEngine
from sagellm.engines.server import ServerOptions


@pytest.fixture(scope="module")
def server(make_engine: Callable[..., LLMEngine]) -> Iterator[RunningServer]:
    engine = make_engine(scheduler_ir={"max_num_seqs": 1, "max_waiting": 1})
    running = start_server(engine, ServerOptions(served_model_name="tiny", retry_after_s=2))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0, timeout=60)


def post(server: RunningServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", timeout=30, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param
    return dict(error)


def test_engine_bounds_its_waiting_queue(make_engine: Callable[..., LLMEngine]) -> None:
    """The bound the server's 429 rests on: waiting requests count, running ones do not."""
    engine = make_engine(scheduler_ir={"max_waiting": 2, "max_num_seqs": 1})
    params = SamplingParams(max_tokens=2)
    engine.add_request("one", params)
    engine.add_request("two", params)
    with pytest.raises(ServerOverloadedError) as caught:
        engine.add_request("three", params)
    assert caught.value.http_status == 429
    engine.step()  # "one" starts running: a waiting slot frees up
    assert engine.num_running == 1
    engine.add_request("three", params)
    while engine.has_unfinished():
        engine.step()


def test_served_name_and_model_name_are_both_accepted(server: RunningServer, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny"]
    for name in ("tiny", server.engine.model_name):
        response = client.completions.create(model=name, prompt="Hi", max_tokens=2, temperature=0)
        assert response.model == name


def test_unknown_model_is_404(server: RunningServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert caught.value.code == "model_not_found"
    assert_openai_error(httpx.get(f"{server.base_url}/v1/models/gpt-9"), 404, "model")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": "Hi", "max_tokens": -1}, "max_tokens"),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": "5"}, "max_tokens"),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": True}, "max_tokens"),
        ("/v1/completions", {"prompt": "Hi", "temperature": -0.5}, "temperature"),
        ("/v1/completions", {"prompt": 42}, None),
        ("/v1/completions", {"prompt": ""}, "prompt"),
        ("/v1/completions", {"prompt": [999999999]}, None),
        ("/v1/completions", {"prompt": "Hi", "logprobs": 6}, "logprobs"),
        ("/v1/completions", {"max_tokens": 2}, "prompt"),
        ("/v1/chat/completions", {"messages": []}, "messages"),
        ("/v1/chat/completions", {"messages": "Hi"}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "Hi"}]}, None),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "top_logprobs": 3}, "top_logprobs"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "n": 0}, "n"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"1": 5}}, None),
        ("/v1/chat/completions", [1, 2], None),
    ],
)
def test_bad_input_is_400(server: RunningServer, path: str, body: Any, param: str | None) -> None:
    error = assert_openai_error(post(server, path, json=body), 400, param)
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": "Hi", "guided_grammar": "root ::= 'a'"}, "guided_grammar"),
        ("/v1/completions", {"prompt": "Hi", "min_tokens": 4}, "min_tokens"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "store": True}, "store"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Hi"}], "include_stop_str_in_output": True},
            "include_stop_str_in_output",
        ),
    ],
)
def test_unknown_parameters_are_400_not_ignored(server: RunningServer, path: str, body: Any, param: str) -> None:
    error = assert_openai_error(post(server, path, json=body), 400, param)
    assert "Unsupported parameter" in error["message"] and param in error["message"]


def test_unknown_keys_inside_messages_are_tolerated(server: RunningServer) -> None:
    """Clients echo earlier replies back with fields such as refusal: null; that must not fail the turn."""
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "refusal": None, "annotations": [], "tool_calls": None},
        {"role": "user", "content": "And again?"},
    ]
    response = post(server, "/v1/chat/completions", json={"messages": history, "max_tokens": 2})
    assert response.status_code == 200


def test_malformed_json_is_400(server: RunningServer) -> None:
    headers = {"Content-Type": "application/json"}
    response = post(server, "/v1/chat/completions", content=b'{"messages": [', headers=headers)
    assert "Malformed JSON" in assert_openai_error(response, 400)["message"]


def test_too_long_prompt_is_400(server: RunningServer, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="hello " * 9000, max_tokens=4)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in str(caught.value)


def test_sdk_reports_negative_max_tokens(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="Hi", max_tokens=-3)
    assert caught.value.status_code == 400 and caught.value.param == "max_tokens"


def test_unknown_route_is_openai_shaped_404(server: RunningServer) -> None:
    assert_openai_error(httpx.get(f"{server.base_url}/v1/nothing-here"), 404)


def test_full_waiting_queue_is_429_with_retry_after(server: RunningServer, client: openai.OpenAI) -> None:
    running = client.completions.create(
        model="tiny", prompt="Count:", max_tokens=500, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    next(iter(running))  # the one batch slot is taken
    waiting: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: waiting.update(r=client.completions.create(model="tiny", prompt="Hi", max_tokens=2)),
    )
    thread.start()
    wait_until(lambda: server.metric("sagellm:num_requests_waiting") == 1, 10, "second request never queued")
    rejected = post(server, "/v1/completions", json={"model": "tiny", "prompt": "Hi", "max_tokens": 2})
    assert rejected.headers["Retry-After"] == "2"
    assert assert_openai_error(rejected, 429)["type"] == "rate_limit_error"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert server.metric("sagellm:http_rejected_total") == 2
    running.close()  # frees the slot: the waiting request runs
    thread.join(timeout=30)
    assert waiting["r"].choices[0].finish_reason in ("stop", "length")


def test_engine_failure_is_a_json_500_and_the_server_recovers(
    server: RunningServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_step() -> None:
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(server.engine, "step", broken_step)
    response = post(server, "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert assert_openai_error(response, 500)["type"] == "internal_error"
    body = {"prompt": "Hi", "max_tokens": 2, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/completions", json=body, timeout=30) as stream:
        lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert "simulated kernel failure" in lines[0] and lines[-1] == "data: [DONE]"
    monkeypatch.undo()
    assert server.metric("sagellm:num_requests_running") == 0 and server.metric("sagellm:num_requests_waiting") == 0
    assert client.completions.create(model="tiny", prompt="Hi", max_tokens=2).choices[0].text is not None


def test_server_still_serves_after_errors(server: RunningServer, client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    )
    assert response.choices[0].message.content
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    assert server.metric("sagellm:http_errors_total") >= 20
    assert server.metric("sagellm:num_requests_running") == 0 and server.metric("sagellm:num_requests_waiting") == 0
