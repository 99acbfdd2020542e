"""The OpenAI-compatible endpoints, driven over HTTP by the official ``openai`` SDK.

One server for the module (a fresh engine around the session's model).
Generation stays short (max_tokens <= 16) so the module runs in seconds.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from server_helpers import RunningServer, wait_until

from sagellm.core.types import SamplingParams
from sagellm.engines import LLM

PROMPT = "The capital of France is"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY_8 = SamplingParams(max_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0, timeout=60)


def test_models_and_health(server: RunningServer, client: openai.OpenAI, model: str) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [model]
    assert client.models.retrieve(model).id == model
    health = httpx.get(f"{server.base_url}/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_greedy_completion_equals_llm_generate(client: openai.OpenAI, model: str, llm: LLM) -> None:
    expected = llm.generate([PROMPT], GREEDY_8)[0]
    response = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0)
    choice = response.choices[0]
    assert choice.text == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.model == model and response.object == "text_completion"
    assert response.usage is not None
    assert response.usage.prompt_tokens == len(expected.prompt_token_ids)
    assert response.usage.completion_tokens == len(expected.token_ids)
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_streaming_completion_with_usage(client: openai.OpenAI, model: str, llm: LLM) -> None:
    expected = llm.generate([PROMPT], GREEDY_8)[0]
    chunks = list(
        client.completions.create(
            model=model,
            prompt=PROMPT,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert "".join(c.choices[0].text for c in text_chunks) == expected.text
    assert text_chunks[-1].choices[0].finish_reason == expected.finish_reason
    assert all(c.usage is None for c in text_chunks)
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == len(expected.token_ids)


def test_echo_stop_n_seed_and_logprobs(client: openai.OpenAI, model: str) -> None:
    echoed = client.completions.create(model=model, prompt=PROMPT, max_tokens=4, temperature=0, echo=True)
    assert echoed.choices[0].text.startswith(PROMPT)
    stopped = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0, stop=[" 7"])
    assert " 7" not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"
    sampled = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=6, temperature=1.0, n=3, seed=7, logprobs=0
    )
    assert [c.index for c in sampled.choices] == [0, 1, 2]
    again = client.completions.create(model=model, prompt=PROMPT, max_tokens=6, temperature=1.0, n=3, seed=7)
    assert [c.text for c in again.choices] == [c.text for c in sampled.choices]  # seeded: reproducible
    assert sampled.usage is not None and echoed.usage is not None
    assert sampled.usage.prompt_tokens == echoed.usage.prompt_tokens  # one prompt, counted once for n=3
    for choice in sampled.choices:
        assert choice.logprobs is not None
        assert len(choice.logprobs.token_logprobs) == len(choice.logprobs.tokens) >= 1
        assert all(lp is not None and lp <= 0 for lp in choice.logprobs.token_logprobs)


def test_chat_equals_llm_chat(client: openai.OpenAI, model: str, llm: LLM) -> None:
    expected = llm.chat(CHAT, GREEDY_8)
    response = client.chat.completions.create(model=model, messages=CHAT, max_completion_tokens=8, temperature=0)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.usage is not None and response.usage.prompt_tokens == len(expected.prompt_token_ids)


def test_chat_streaming_with_usage_and_logprobs(client: openai.OpenAI, model: str, llm: LLM) -> None:
    expected = llm.chat(CHAT, GREEDY_8)
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=CHAT,
            max_tokens=8,
            temperature=0,
            logprobs=True,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].object == "chat.completion.chunk"
    choice_chunks = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in choice_chunks) == expected.text
    assert choice_chunks[-1].choices[0].finish_reason == expected.finish_reason
    tokens = [t for c in choice_chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert len(tokens) == len(expected.token_ids) and all(t.logprob <= 0 for t in tokens)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(expected.token_ids)


def test_completion_top_logprobs_rank_the_sampled_token_first(client: openai.OpenAI, model: str, llm: LLM) -> None:
    expected = llm.generate([PROMPT], GREEDY_8)[0]
    response = client.completions.create(model=model, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=3)
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and logprobs.top_logprobs is not None
    assert len(logprobs.top_logprobs) == len(expected.token_ids)
    for token, sampled, top in zip(logprobs.tokens or [], logprobs.token_logprobs or [], logprobs.top_logprobs):
        assert 1 <= len(top) <= 3  # two ids may decode to the same text
        best_text, best = max(top.items(), key=lambda item: item[1])
        assert best_text == token and best == pytest.approx(sampled)  # greedy: the sampled token is the top one
        assert all(lp <= best for lp in top.values())


def test_chat_top_logprobs_streamed_and_not(client: openai.OpenAI, model: str, llm: LLM) -> None:
    expected = llm.chat(CHAT, GREEDY_8)
    common = {"model": model, "messages": CHAT, "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    whole = client.chat.completions.create(**common)  # type: ignore[call-overload]
    content = whole.choices[0].logprobs.content
    chunks = list(client.chat.completions.create(stream=True, **common))  # type: ignore[call-overload]
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []]
    assert len(content) == len(streamed) == len(expected.token_ids)
    for a, b in zip(content, streamed):
        assert len(a.top_logprobs) == 2 and a.top_logprobs[0].token == a.token
        assert a.top_logprobs[0].logprob == pytest.approx(a.logprob)
        assert a.top_logprobs[0].logprob >= a.top_logprobs[1].logprob
        assert [t.token for t in a.top_logprobs] == [t.token for t in b.top_logprobs]


def test_usage_reports_prefix_cache_hits(client: openai.OpenAI, model: str) -> None:
    long_prompt = "Once upon a time, in a village by the sea, there lived an old fisherman. " * 8
    first = client.completions.create(model=model, prompt=long_prompt + "One", max_tokens=1, temperature=0)
    second = client.completions.create(model=model, prompt=long_prompt + "Two", max_tokens=1, temperature=0)
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert 16 <= cached < second.usage.prompt_tokens  # at least one whole block, never the whole prompt
    assert cached % 16 == 0  # block-aligned


def test_concurrent_clients_share_the_engine(client: openai.OpenAI, model: str, llm: LLM) -> None:
    prompts = [
        f"{PROMPT} not {city}; it is" for city in ("Lyon", "Nice", "Lille", "Nantes", "Metz", "Dijon", "Brest", "Caen")
    ]
    expected = [r.text for r in llm.generate(prompts, GREEDY_8)]
    barrier = threading.Barrier(len(prompts))

    def ask(prompt: str) -> str:
        barrier.wait()
        return client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0).choices[0].text

    with ThreadPoolExecutor(len(prompts)) as pool:
        answers = list(pool.map(ask, prompts))
    assert answers == expected


def test_disconnect_mid_stream_aborts_and_frees_kv(server: RunningServer, client: openai.OpenAI, model: str) -> None:
    engine = server.engine
    aborted = server.metric("sagellm:requests_aborted_total")
    finished = server.metric("sagellm:request_success_total")
    stream = client.completions.create(
        model=model, prompt=PROMPT, max_tokens=500, temperature=0, stream=True, extra_body={"ignore_eos": True}
    )
    for _, _chunk in zip(range(3), stream):
        pass
    assert server.metric("sagellm:num_requests_running") == 1 and server.metric("sagellm:kv_used_blocks") > 0
    stream.close()
    wait_until(lambda: server.metric("sagellm:requests_aborted_total") == aborted + 1, 10, "request was not aborted")
    assert server.metric("sagellm:request_success_total") == finished  # stopped, not run to max_tokens
    assert server.metric("sagellm:num_requests_running") == 0
    assert server.metric("sagellm:kv_used_blocks") == 0
    assert engine.kv.num_free_blocks == engine.kv.pool.layout.num_blocks


def test_disconnect_while_waiting_for_a_full_answer_aborts(server: RunningServer, model: str) -> None:
    """A non-streaming client that times out is gone too: its request must not run to max_tokens."""
    aborted = server.metric("sagellm:requests_aborted_total")
    body = {"model": model, "prompt": PROMPT, "max_tokens": 500, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.openai_base_url}/completions", json=body, timeout=httpx.Timeout(60, read=0.5))
    wait_until(lambda: server.metric("sagellm:requests_aborted_total") == aborted + 1, 10, "request was not aborted")
    assert server.metric("sagellm:client_disconnects_total") >= 1
    assert server.metric("sagellm:num_requests_running") == 0 and server.metric("sagellm:kv_used_blocks") == 0


def test_metrics_exposition(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "sagellm:requests_total",
        "sagellm:http_completions_requests_total",
        "sagellm:http_chat_requests_total",
        "sagellm:num_requests_running",
        "sagellm:num_requests_waiting",
        "sagellm:time_to_first_token_seconds_bucket",
        "sagellm:time_per_output_token_seconds_bucket",
        "sagellm:e2e_request_latency_seconds_count",
        "sagellm:kv_used_blocks",
        "sagellm:kv_free_blocks",
        "sagellm:prefix_hit_rate",
        "sagellm:num_preemptions_total",
        "sagellm:output_tokens_per_second",
        "sagellm:generation_tokens_total",
    ):
        assert f"\n{name}{{" in text, name  # every sample carries the model_name label
    assert server.metric("sagellm:e2e_request_latency_seconds_count") >= 5
    assert server.metric("sagellm:output_tokens_per_second") > 0  # tokens were generated seconds ago
