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


# ------------------------------------------------------------------------------------------------------ tools
WEATHER = {
    "name": "get_weather",
    "description": "Current weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 24}, "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _is_weather_call(block: object) -> bool:
    call = block  # a ToolUseBlock of the SDK
    arguments = getattr(call, "input", None)
    return (
        getattr(call, "type", None) == "tool_use"
        and getattr(call, "name", None) == "get_weather"
        and str(getattr(call, "id", "")).startswith("toolu_")
        and isinstance(arguments, dict)
        and set(arguments) == {"city", "unit"}
        and isinstance(arguments["city"], str)
        and len(arguments["city"]) <= 24
        and arguments["unit"] in ("celsius", "fahrenheit")
    )


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}], ids=["any", "named"])
def test_a_forced_tool_call_is_a_tool_use_block(client: anthropic.Anthropic, model: str, choice: dict) -> None:  # type: ignore[type-arg]
    message = client.messages.create(
        model=model,
        max_tokens=64,
        messages=ASK,
        tools=[WEATHER],
        tool_choice=choice,
        **GREEDY,  # type: ignore[arg-type]
    )
    assert message.stop_reason == "tool_use"
    assert len(message.content) == 1 and _is_weather_call(message.content[0]), message.content


def test_a_streamed_tool_call_arrives_as_one_input_json_delta(
    server: RunningServer, client: anthropic.Anthropic, model: str
) -> None:
    request = {"model": model, "max_tokens": 64, "messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "any"}}
    with client.messages.stream(**request, **GREEDY) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and _is_weather_call(final.content[0]), final.content
    body = {**request, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.base_url}/v1/messages", json=body, timeout=60) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    events = [__import__("json").loads(line.removeprefix("data: ")) for line in lines]
    kinds = [e["type"] for e in events]
    assert kinds == ["message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                     "message_delta", "message_stop"], kinds  # fmt: skip
    assert events[2]["content_block"]["type"] == "tool_use" and events[3]["delta"]["type"] == "input_json_delta"


def test_tool_results_continue_the_conversation(client: anthropic.Anthropic, model: str) -> None:
    """An earlier call and its result (Anthropic's blocks) render into the prompt; the reply is text or a call."""
    called = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18 C, sunny"}]}
    messages = [*ASK, {"role": "assistant", "content": [called]}, {"role": "user", "content": [result]}]
    reply = client.messages.create(model=model, max_tokens=24, messages=messages, tools=[WEATHER], **GREEDY)  # type: ignore[arg-type]
    assert reply.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert reply.content[0].type == "text" or _is_weather_call(reply.content[0])
    auto = client.messages.create(model=model, max_tokens=24, messages=ASK, tools=[WEATHER], **GREEDY)  # type: ignore[arg-type]
    assert (auto.stop_reason == "tool_use") is (auto.content[0].type == "tool_use")


@pytest.mark.parametrize(
    "extra",
    [
        {"tool_choice": {"type": "any"}},  # no tools
        {"tools": [WEATHER], "tool_choice": {"type": "tool"}},  # no name
        {"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}},
        {"tools": [{"name": "x"}]},  # no input_schema
        {"tools": [WEATHER], "messages": [*ASK, {"role": "assistant", "content": "It is"}]},  # prefill with tools
    ],
)
def test_bad_tool_requests_are_400(server: RunningServer, model: str, extra: dict) -> None:  # type: ignore[type-arg]
    body = {"model": model, "max_tokens": 4, "messages": ASK, **extra}
    response = httpx.post(f"{server.base_url}/v1/messages", json=body, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
