"""The Anthropic Messages API (``POST /v1/messages``), driven by the official ``anthropic`` SDK."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from server_helpers import RunningServer

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM

QUESTION = "What is the capital of France?"
# This SDK version no longer takes temperature/top_p/top_k as arguments; the API (and this server) still do.
GREEDY = {"extra_body": {"temperature": 0}}
EVENT_ORDER = ["message_start", "content_block_start", "ping", "content_block_stop", "message_delta", "message_stop"]


@pytest.fixture(scope="module")
def client(server: RunningServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_message_equals_llm_chat(client: anthropic.Anthropic, model: str, llm: LLM) -> None:
    system = "You are terse."
    expected = llm.chat(
        [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}],
        SamplingParams(max_tokens=8, temperature=0.0),
    )
    message = client.messages.create(
        model=model,
        max_tokens=8,
        system=system,
        messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}],
        **GREEDY,
    )
    assert message.type == "message" and message.role == "assistant" and message.model == model
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == expected.text  # type: ignore[union-attr]
    assert message.stop_reason == ("max_tokens" if expected.finish_reason == "length" else "end_turn")
    assert message.usage.input_tokens == len(expected.prompt_token_ids)
    assert message.usage.output_tokens == len(expected.token_ids)


def test_stop_sequence_is_reported(client: anthropic.Anthropic, model: str) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=16,
        stop_sequences=["3"],
        messages=[{"role": "user", "content": "Count from 1 to 10, one number per line."}],
        **GREEDY,
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "3"
    assert "3" not in message.content[0].text  # type: ignore[union-attr]


def test_streaming_event_sequence(server: RunningServer, client: anthropic.Anthropic, model: str) -> None:
    request = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": QUESTION}], **GREEDY}
    plain = client.messages.create(**request)  # type: ignore[arg-type]
    with client.messages.stream(**request) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.content[0].text == plain.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == plain.stop_reason
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    # The SDK hides pings; the wire must carry Anthropic's exact event sequence.
    body = {**request, **GREEDY["extra_body"], "stream": True}
    del body["extra_body"]
    with httpx.stream("POST", f"{server.base_url}/v1/messages", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        names = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert [n for n in names if n != "content_block_delta"] == EVENT_ORDER
    assert names[3:-3] == ["content_block_delta"] * (len(names) - 6) and len(names) > 6


def test_errors_use_anthropic_shape(server: RunningServer, client: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-9", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=model, max_tokens=-1, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.status_code == 400
    response = httpx.post(f"{server.base_url}/v1/messages", json={"model": model, "max_tokens": 4, "messages": []})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}}
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=model, max_tokens=4, messages=[{"role": "user", "content": [image]}])
    ok = client.messages.create(model=model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert ok.usage.output_tokens >= 1


def test_unknown_parameters_are_400_in_anthropic_shape(server: RunningServer, model: str) -> None:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    response = httpx.post(f"{server.base_url}/v1/messages", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "thinking" in error["message"]
