"""API keys, CORS, and the /tokenize, /detokenize and /version routes.

One live server per module, started with a key and one allowed origin,
reached through real sockets and the official SDKs (which send the key
their own way: Bearer for openai, x-api-key for anthropic).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest
from server_helpers import RunningServer, start_server

from sagellm.engines import LLMEngine
from sagellm.engines.cli.main import main
from sagellm.engines.server import ServerOptions
from sagellm.engines.version import __version__

KEY = "sk-test-0123456789"
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def keyed(make_engine: Callable[..., LLMEngine]) -> Iterator[RunningServer]:
    running = start_server(make_engine(), ServerOptions(api_key=KEY, allowed_origins=(ORIGIN,)))
    yield running
    running.stop()


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("headers", [{}, _auth("sk-wrong"), {"Authorization": "Basic abc"}, {"x-api-key": "nope"}])
def test_requests_without_the_key_get_openais_401(keyed: RunningServer, headers: dict[str, str]) -> None:
    response = httpx.get(f"{keyed.base_url}/v1/models", headers=headers, timeout=10)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error" and error["message"]


def test_health_and_version_stay_open_and_metrics_too_by_default(keyed: RunningServer) -> None:
    assert httpx.get(f"{keyed.base_url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{keyed.base_url}/version", timeout=10).json() == {"version": __version__}
    assert httpx.get(f"{keyed.base_url}/metrics", timeout=10).status_code == 200


def test_the_sdks_send_the_key_their_own_way(keyed: RunningServer) -> None:
    client = openai.OpenAI(base_url=keyed.openai_base_url, api_key=KEY, max_retries=0)
    model = client.models.list().data[0].id
    completion = client.completions.create(model=model, prompt="Hello", max_tokens=2, temperature=0)
    assert completion.usage is not None and completion.usage.completion_tokens == 2
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.openai_base_url, api_key="sk-wrong", max_retries=0).models.list()
    message = anthropic.Anthropic(base_url=keyed.base_url, api_key=KEY, max_retries=0).messages.create(
        model=model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.usage.output_tokens == 2
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=keyed.base_url, api_key="wrong", max_retries=0).messages.create(
            model=model, max_tokens=2, messages=[{"role": "user", "content": "Hi"}]
        )


def test_cors_answers_only_the_allowed_origin(keyed: RunningServer) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = httpx.options(f"{keyed.base_url}/v1/completions", headers={"Origin": ORIGIN, **preflight}, timeout=10)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(
        f"{keyed.base_url}/v1/completions", headers={"Origin": "https://evil.example", **preflight}, timeout=10
    )
    assert "access-control-allow-origin" not in other.headers


def test_tokenize_counts_what_a_request_would_send(keyed: RunningServer) -> None:
    base = keyed.base_url
    tokenized = httpx.post(f"{base}/tokenize", json={"prompt": "Hello world"}, headers=_auth(), timeout=10).json()
    assert tokenized["count"] == len(tokenized["tokens"]) > 0 and tokenized["max_model_len"] > 0
    back = httpx.post(f"{base}/detokenize", json={"tokens": tokenized["tokens"]}, headers=_auth(), timeout=10)
    assert back.json()["prompt"].endswith("Hello world")
    chat = {"messages": [{"role": "user", "content": "Hi"}]}
    counted = httpx.post(f"{base}/tokenize", json=chat, headers=_auth(), timeout=10).json()["count"]
    client = openai.OpenAI(base_url=keyed.openai_base_url, api_key=KEY, max_retries=0)
    model = client.models.list().data[0].id
    reply = client.chat.completions.create(model=model, max_tokens=1, **chat)  # type: ignore[call-overload]
    assert reply.usage.prompt_tokens == counted


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/tokenize", {}),
        ("/tokenize", {"prompt": "a", "messages": [{"role": "user", "content": "b"}]}),
        ("/detokenize", {"tokens": [-1]}),
        ("/detokenize", {"tokens": [10**9]}),
        ("/tokenize", {"prompt": "a", "model": "no-such-model"}),
    ],
)
def test_tokenize_refuses_what_it_cannot_do(keyed: RunningServer, path: str, body: dict[str, object]) -> None:
    response = httpx.post(f"{keyed.base_url}{path}", json=body, headers=_auth(), timeout=10)
    assert response.status_code in (400, 404) and response.json()["error"]["message"]


def test_protect_metrics_needs_a_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGELLM_API_KEY", raising=False)
    assert main(["serve", "--protect-metrics"]) == 2
    assert "needs an API key" in capsys.readouterr().err


def test_binding_beyond_loopback_without_a_key_warns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAGELLM_API_KEY", raising=False)
    with socket.socket() as sock:  # a port in use: the command stops before loading, after the warning
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        assert main(["serve", "--host", "0.0.0.0", "--port", str(sock.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "without an API key" in err and "in use" in err


def test_bad_allowed_origins_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--allowed-origins", "[1, 2]"]) == 2
    assert "JSON list of strings" in capsys.readouterr().err


def test_protected_metrics_want_the_key(make_engine: Callable[..., LLMEngine]) -> None:
    running = start_server(make_engine(), ServerOptions(api_key=KEY, protect_metrics=True))
    try:
        assert httpx.get(f"{running.base_url}/metrics", timeout=10).status_code == 401
        assert httpx.get(f"{running.base_url}/metrics", headers=_auth(), timeout=10).status_code == 200
        assert httpx.get(f"{running.base_url}/health", timeout=10).status_code == 200
    finally:
        running.stop()
