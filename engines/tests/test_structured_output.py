"""Structured output and tool calling: grammar-constrained replies, in the engine and through the OpenAI server.

Every generated document is parsed and checked against its schema by
``conforms`` (a small validator for the keywords used here; ``jsonschema``
is not a dependency). Schemas bound their strings and integers so that a
135M model at temperature 1 finishes well inside ``max_tokens``. Needs the
grammar engine (``sagellm-engines[structured]``); skipped without it.
"""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal

import httpx
import openai
import pytest
import torch
from pydantic import BaseModel, Field
from server_helpers import RunningServer

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import Request, SamplingParams, SequenceState
from sagellm.engines import LLM, LLMEngine
from sagellm.engines.runtime.grammar import (
    GrammarSpec,
    GuidedSamplingParams,
    LLGuidanceBackend,
    StructuredOutputUnavailableError,
    check_grammar,
    grammar_of,
    grammar_vocab,
    with_grammar,
)
from sagellm.engines.runtime.sampler import Sampler
from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_openai import ChatCompletionRequest
from sagellm.engines.server.structured_output import require_grammar_engine
from sagellm.engines.server.tool_calls import call_schema, parse_call, read_reply, tool_use
from sagellm.engines.tokenizer import Tokenizer

llguidance = pytest.importorskip("llguidance")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread, as the test server runs: on a shared 2-core machine two threads per step wait on
    each other (seconds a step under load), and these tests generate a few hundred tokens."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _string(max_length: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


CITY = _object(
    {
        "city": _string(24),
        "country": _string(24),
        "population_millions": {"type": "integer", "minimum": 0, "maximum": 99},
    }
)
EVENT = _object(
    {
        "title": _string(30),
        "attendees": {"type": "array", "items": _string(16), "minItems": 1, "maxItems": 3},
        "priority": {"enum": ["low", "medium", "high"]},
        "confirmed": {"type": "boolean"},
    }
)
ANSWER = _object(
    {
        "answer": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 999}, {"type": "null"}]},
        "unit": {"enum": ["m", "km"]},
    }
)
SCHEMAS = {
    "city": (CITY, "Describe Paris as JSON."),
    "event": (EVENT, "Plan a team meeting; answer in JSON."),
    "answer": (ANSWER, "How far is the kitchen from the bedroom? Answer in JSON."),
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": _object({"city": _string(24), "unit": {"enum": ["celsius", "fahrenheit"]}}),
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {"name": "search_web", "description": "Search the web", "parameters": _object({"query": _string(40)})},
}
TOOLS = [WEATHER_TOOL, SEARCH_TOOL]
WEATHER_CHAT = [{"role": "user", "content": "What is the weather in Paris?"}]
SAMPLINGS = [pytest.param({"temperature": 0}, id="greedy"), pytest.param({"temperature": 1.0, "seed": 7}, id="t1-seed")]


def conforms(value: Any, schema: dict[str, Any]) -> bool:
    """``value`` is valid under ``schema`` (the keywords this file uses)."""
    if "anyOf" in schema:
        return any(conforms(value, option) for option in schema["anyOf"])
    if "const" in schema:
        return bool(value == schema["const"])
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        return (
            isinstance(value, dict)
            and set(schema.get("required", ())) <= set(value)
            and (schema.get("additionalProperties", True) is not False or set(value) <= set(properties))
            and all(conforms(v, properties.get(k, {})) for k, v in value.items())
        )
    if kind == "array":
        return (
            isinstance(value, list)
            and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
            and all(conforms(item, schema.get("items", {})) for item in value)
        )
    if kind == "string":
        return isinstance(value, str) and len(value) <= schema.get("maxLength", len(value))
    if kind == "integer":
        in_range = schema.get("minimum", value) <= value <= schema.get("maximum", value)
        return isinstance(value, int) and not isinstance(value, bool) and in_range
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return kind is None


def test_the_validator_can_fail() -> None:
    assert conforms({"city": "Paris", "country": "France", "population_millions": 2}, CITY)
    assert not conforms({"city": "Paris", "country": "France"}, CITY)  # missing
    assert not conforms({"city": "Paris", "country": "France", "population_millions": 2, "x": 1}, CITY)  # extra
    assert not conforms({"city": "Paris", "country": "France", "population_millions": 200}, CITY)  # range
    assert not conforms({"answer": True, "unit": "m"}, ANSWER)  # a bool is no integer
    assert not conforms({"title": "t", "attendees": [], "priority": "low", "confirmed": True}, EVENT)  # minItems


# ---------------------------------------------------------------------------------------------- values, no model
def test_guided_params_survive_copies_and_pickling() -> None:
    params = GuidedSamplingParams(max_tokens=8, temperature=0, grammar=GrammarSpec.json_object())
    seeded = replace(params, seed=3)  # what the server's n copies do
    assert grammar_of(seeded) == GrammarSpec.json_object() and seeded.seed == 3
    assert pickle.loads(pickle.dumps(seeded)) == seeded
    assert grammar_of(SamplingParams()) is None
    carried = with_grammar(SamplingParams(max_tokens=5, top_k=3), GrammarSpec.regex("a+"))
    assert carried.max_tokens == 5 and carried.top_k == 3 and carried.grammar == GrammarSpec.regex("a+")
    with pytest.raises(InvalidRequestError):
        GrammarSpec("yaml", "")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        GuidedSamplingParams(max_tokens=0, grammar=GrammarSpec.json_object())  # SamplingParams' own checks still run


def test_json_schema_keeps_property_order() -> None:
    """The output lists properties in the schema's order, so the spec must not sort them."""
    spec = GrammarSpec.json_schema({"type": "object", "properties": {"zeta": {}, "alpha": {}}})
    assert spec.source.index("zeta") < spec.source.index("alpha")


@pytest.mark.parametrize(
    "spec",
    [
        GrammarSpec.regex("(unclosed"),
        GrammarSpec("json_schema", '{"type": "nonsense"}'),
        GrammarSpec("json_schema", "{not json"),
        GrammarSpec.json_schema({"type": "object", "properties": {"a": {"$ref": "#/missing"}}}),
    ],
)
def test_invalid_grammars_are_refused(spec: GrammarSpec) -> None:
    with pytest.raises(InvalidRequestError):
        check_grammar(spec)


def test_missing_grammar_engine_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llguidance", None)  # import llguidance now raises ImportError
    with pytest.raises(StructuredOutputUnavailableError, match=r"sagellm-engines\[structured\]"):
        check_grammar(GrammarSpec.json_object())


def test_sentencepiece_vocabulary_bytes() -> None:
    from tokenizers import Tokenizer as FastTokenizer
    from tokenizers import decoders, models

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "\u2581hello": 4, "é": 5, "\u2581": 6}
    backend = FastTokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True, unk_token="<unk>"))
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.add_special_tokens(["<s>", "</s>"])
    read = grammar_vocab(Tokenizer(backend, eos_token_ids=(2,), bos_token_id=1))
    assert read.token_bytes[3:7] == (b"\n", b" hello", "é".encode(), b" ")
    assert {1, 2} <= read.special_ids and read.eos_token_ids == (2,)


# ---------------------------------------------------------------------------------------------- tools, no model
def _chat(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": WEATHER_CHAT, **fields})


def test_tool_choice_modes() -> None:
    assert tool_use(_chat()) is None and tool_use(_chat(tools=TOOLS, tool_choice="none")) is None
    auto = tool_use(_chat(tools=TOOLS))
    assert auto is not None and auto.mode == "auto" and auto.names == ("get_weather", "search_web")
    required = tool_use(_chat(tools=TOOLS, tool_choice="required"))
    assert required is not None and required.mode == "required" and len(required.names) == 2
    named = tool_use(_chat(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "search_web"}}))
    assert named is not None and named.mode == "required" and named.names == ("search_web",)
    assert call_schema(named)["properties"]["name"] == {"const": "search_web"}
    assert len(call_schema(required)["anyOf"]) == 2
    with pytest.raises(BadParameterError, match="not in tools"):
        tool_use(_chat(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}))
    with pytest.raises(BadParameterError, match="needs tools"):
        tool_use(_chat(tool_choice="required"))
    with pytest.raises(BadParameterError, match="unique"):
        tool_use(_chat(tools=[WEATHER_TOOL, WEATHER_TOOL]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "get_weather", "arguments": {"city": "Paris"}}', ("get_weather", {"city": "Paris"})),
        (' <tool_call>{"name": "search_web", "arguments": {}}</tool_call>\n', ("search_web", {})),
        ('```json\n{"name": "get_weather", "parameters": {"city": "Rome"}}\n```', ("get_weather", {"city": "Rome"})),
        ('{"name": "get_weather"}', ("get_weather", {})),
        ('{"name": "delete_everything", "arguments": {}}', None),  # not a given tool
        ('{"name": "get_weather", "arguments": "Paris"}', None),  # arguments must be an object
        ('{"name": "get_weather", "arguments": {}, "extra": 1}', None),
        ("It is sunny in Paris.", None),
        ('{"name": "get_weather", "arguments": {', None),  # cut short
    ],
)
def test_auto_replies_are_read_as_calls_only_when_they_are_one(text: str, expected: Any) -> None:
    use = tool_use(_chat(tools=TOOLS))
    assert use is not None
    assert parse_call(text, use) == expected
    reply = read_reply(text, "stop", use)
    if expected is None:
        assert reply.content == text and reply.tool_calls is None and reply.finish_reason == "stop"
    else:
        assert reply.content is None and reply.finish_reason == "tool_calls" and reply.tool_calls is not None
        call = reply.tool_calls[0]
        assert call.id.startswith("call_") and call.function.name == expected[0]
        assert json.loads(call.function.arguments) == expected[1]
    assert read_reply(text, "length", use).tool_calls is None  # a reply cut short stays text


def test_only_llm_engine_applies_grammars() -> None:
    constrained = GuidedSamplingParams(grammar=GrammarSpec.json_object())
    with pytest.raises(BadParameterError, match="not supported by object"):
        require_grammar_engine(object(), constrained)
    require_grammar_engine(object(), SamplingParams())  # unconstrained: any engine


def test_cot_requests_take_no_grammar(shared_engine: LLMEngine) -> None:
    """A probe or forced answer appends text the grammar never saw: the pair is refused, naming ``cot``."""
    constrained = GuidedSamplingParams(grammar=GrammarSpec.json_object())
    with pytest.raises(BadParameterError, match="cot cannot be combined") as refused:
        require_grammar_engine(shared_engine, constrained, reasoning=object())
    assert refused.value.param == "cot"
    require_grammar_engine(shared_engine, constrained)


# ------------------------------------------------------------------------------------ with the model's tokenizer
@pytest.fixture(scope="module")
def backend(llm: LLM) -> LLGuidanceBackend:
    return LLGuidanceBackend(llm.tokenizer)


def test_vocab_bytes_match_llguidance_reading_the_tokenizer_json(llm: LLM) -> None:
    """Our byte table equals llguidance's own reading of the HF tokenizer, token for token."""
    vocab = grammar_vocab(llm.tokenizer)
    theirs = llguidance.LLTokenizer(llm.tokenizer.backend.to_str())
    assert vocab.size == llm.tokenizer.vocab_size == 49152
    assert vocab.token_bytes[llm.tokenizer.encode(" {", add_special_tokens=False)[0]] == b" {"
    differ = [
        i for i in range(vocab.size) if i not in vocab.special_ids and theirs.decode_bytes([i]) != vocab.token_bytes[i]
    ]
    assert differ == []
    assert set(llm.tokenizer.eos_token_ids) <= vocab.special_ids


def test_mask_allows_eos_only_when_complete_and_no_special_tokens_in_strings(
    llm: LLM, backend: LLGuidanceBackend
) -> None:
    tokenizer = llm.tokenizer
    eos = tokenizer.eos_token_ids[0]
    matcher = backend.matcher(GrammarSpec.json_schema(_object({"a": _string(8)})))
    width = tokenizer.vocab_size + 64  # padded embeddings: ids past the vocabulary never allowed
    for token in tokenizer.encode('{"a":"x', add_special_tokens=False):
        assert matcher.mask(width)[token] == 0.0
        assert matcher.accept(token)
    inside_string = matcher.mask(width)
    assert inside_string[eos] == float("-inf") and inside_string[tokenizer.vocab_size :].eq(float("-inf")).all()
    special = sorted(grammar_vocab(tokenizer).special_ids)
    assert inside_string[special].eq(float("-inf")).all()
    assert not matcher.is_complete
    for token in tokenizer.encode('"}', add_special_tokens=False):
        assert matcher.accept(token)
    done = matcher.mask(width)
    assert matcher.is_complete and done[eos] == 0.0 and int((done == 0).sum()) == len(tokenizer.eos_token_ids)


def test_failed_matcher_allows_only_eos(llm: LLM, backend: LLGuidanceBackend) -> None:
    matcher = backend.matcher(GrammarSpec.choice(["yes", "no"]))
    assert not matcher.accept(llm.tokenizer.encode("maybe", add_special_tokens=False)[0])
    assert matcher.error
    mask = matcher.mask(llm.tokenizer.vocab_size)
    assert sorted((mask == 0).nonzero().flatten().tolist()) == sorted(llm.tokenizer.eos_token_ids)


def _seq(params: SamplingParams, request_id: str) -> SequenceState:
    return SequenceState(Request(request_id, (1, 2, 3), params))


def test_sampler_applies_masks_to_greedy_batches_and_sampled_rows() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 100)
    only = torch.full((100,), float("-inf"))
    only[[17, 42]] = 0.0
    greedy = SamplingParams(temperature=0)
    seqs = [_seq(greedy, "a"), _seq(greedy, "b")]
    free, masked = Sampler().sample(logits[:2], seqs, [None, only])
    assert free.token_id == int(logits[0].argmax())
    assert masked.token_id == (17 if logits[1, 17] > logits[1, 42] else 42)
    before = logits.clone()
    sampled = [_seq(SamplingParams(temperature=1.0, seed=s, top_k=50, logprobs=2), f"s{s}") for s in range(4)]
    tokens = Sampler().sample(logits, sampled, [only] * 4)
    assert all(t.token_id in (17, 42) for t in tokens)
    assert all({i for i, _ in t.top_logprobs} == {17, 42} for t in tokens)  # logprobs of the masked distribution
    assert torch.equal(logits, before)  # the caller's logits are not modified


# ------------------------------------------------------------------------------------------------- the engine
@pytest.fixture(scope="module")
def shared_engine(make_engine: Callable[..., LLMEngine]) -> LLMEngine:
    return make_engine()


def _generate(engine: LLMEngine, prompt: list[int], params: SamplingParams) -> tuple[str, str | None]:
    request_id = engine.add_request(prompt, params)
    text, finish = "", None
    while engine.has_unfinished():
        for output in engine.step():
            if output.request_id == request_id:
                text += output.new_text
                finish = output.finish_reason
    return text, finish


@pytest.mark.parametrize("sampling", SAMPLINGS)
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_engine_output_is_a_document_of_the_schema(
    llm: LLM, shared_engine: LLMEngine, name: str, sampling: dict[str, Any]
) -> None:
    schema, question = SCHEMAS[name]
    prompt = llm.tokenizer.encode_chat([{"role": "user", "content": question}])
    params = GuidedSamplingParams(max_tokens=96, grammar=GrammarSpec.json_schema(schema), **sampling)
    text, finish = _generate(shared_engine, prompt, params)
    assert finish == "stop", text
    assert conforms(json.loads(text), schema), text


def test_choice_regex_and_json_object(llm: LLM, shared_engine: LLMEngine) -> None:
    prompt = llm.tokenizer.encode_chat([{"role": "user", "content": "Is Paris in France? Answer yes or no."}])
    text, _ = _generate(
        shared_engine, prompt, GuidedSamplingParams(max_tokens=8, grammar=GrammarSpec.choice(["yes", "no"]))
    )
    assert text in ("yes", "no")
    text, _ = _generate(
        shared_engine, prompt, GuidedSamplingParams(max_tokens=8, grammar=GrammarSpec.regex(r"[0-9]{3}"))
    )
    assert len(text) == 3 and text.isdigit()
    params = GuidedSamplingParams(max_tokens=64, temperature=1.0, seed=3, grammar=GrammarSpec.json_object())
    text, finish = _generate(shared_engine, prompt, params)
    assert finish == "stop" and isinstance(json.loads(text), dict), text


def test_invalid_grammar_is_refused_before_it_queues(llm: LLM, shared_engine: LLMEngine) -> None:
    with pytest.raises(InvalidRequestError):
        shared_engine.add_request([1, 2, 3], GuidedSamplingParams(grammar=GrammarSpec.regex("(x")))
    assert not shared_engine.has_unfinished()


def test_constrained_requests_do_not_speculate(llm: LLM, make_engine: Callable[..., LLMEngine]) -> None:
    """Beside a speculating request, a constrained one is never given drafts and still matches its grammar."""
    # Few sequences: the builder times a forward pass for every row count a step could verify (max_num_seqs x 5).
    speculative = {"implementation": "ngram", "num_speculative_tokens": 4}
    engine = make_engine(speculative_decoding=speculative, scheduler_ir={"max_num_seqs": 2})
    assert engine.speculator is not None
    seen: list[str] = []
    add_drafts = engine.speculator.add_drafts

    def recording(works: list[Any]) -> list[Any]:
        seen.extend(work.seq.request_id for work in works)
        return add_drafts(works)

    engine.speculator.add_drafts = recording  # type: ignore[method-assign]
    document = '{"city":"Paris","country":"France","population_millions":2}'
    echo = llm.tokenizer.encode_chat([{"role": "user", "content": f"Repeat exactly: {document} {document}"}])
    constrained = engine.add_request(
        echo, GuidedSamplingParams(max_tokens=64, temperature=0, grammar=GrammarSpec.json_schema(CITY))
    )
    free = engine.add_request(echo, SamplingParams(max_tokens=48, temperature=0))
    texts = {constrained: "", free: ""}
    while engine.has_unfinished():
        for output in engine.step():
            texts[output.request_id] += output.new_text
    assert conforms(json.loads(texts[constrained]), CITY)
    assert free in seen and constrained not in seen
    assert engine.speculator.num_drafted > 0  # the free request did speculate


# ------------------------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0, timeout=120)


def _post(server: RunningServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=120)


@pytest.mark.parametrize(
    ("name", "sampling"),
    [("city", {"temperature": 0}), ("event", {"temperature": 1.0, "seed": 5})],
    ids=["greedy", "t1"],
)
def test_response_format_json_schema(client: openai.OpenAI, model: str, name: str, sampling: dict[str, Any]) -> None:
    schema, question = SCHEMAS[name]
    response = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": question}],
        max_tokens=96,
        response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
        **sampling,
    )
    choice = response.choices[0]
    assert choice.finish_reason == "stop" and choice.message.content is not None
    assert conforms(json.loads(choice.message.content), schema), choice.message.content


def test_response_format_json_object(client: openai.OpenAI, model: str) -> None:
    response = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Describe a cat in JSON."}],
        max_tokens=64,
        temperature=0,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(response.choices[0].message.content or ""), dict)


def test_streamed_json_schema_reassembles(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": SCHEMAS["city"][1]}],
        max_tokens=64,
        temperature=0,
        stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert conforms(json.loads(text), CITY) and chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}], ids=["required", "named"]
)
def test_forced_tool_call(client: openai.OpenAI, model: str, tool_choice: Any) -> None:
    response = client.chat.completions.create(
        model=model, messages=WEATHER_CHAT, tools=TOOLS, tool_choice=tool_choice, max_tokens=64, temperature=0
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_")
    tool = {t["function"]["name"]: t for t in TOOLS}[calls[0].function.name]
    assert conforms(json.loads(calls[0].function.arguments), tool["function"]["parameters"])
    if isinstance(tool_choice, dict):
        assert calls[0].function.name == "get_weather"


def test_streamed_tool_call_arrives_whole(client: openai.OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model,
        messages=WEATHER_CHAT,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=64,
        temperature=0,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    deltas = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert len(deltas) == 1 and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert conforms(json.loads(deltas[0].function.arguments or ""), WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any(c.choices[0].delta.content for c in chunks)


def test_auto_tool_choice_gives_text_or_a_valid_call(client: openai.OpenAI, model: str) -> None:
    for stream in (False, True):
        body: dict[str, Any] = {
            "model": model,
            "messages": WEATHER_CHAT,
            "tools": TOOLS,
            "max_tokens": 48,
            "temperature": 0,
        }
        if stream:
            chunks = [c for c in client.chat.completions.create(**body, stream=True) if c.choices]
            text = "".join(c.choices[0].delta.content or "" for c in chunks)
            calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
            finish = chunks[-1].choices[0].finish_reason
        else:
            choice = client.chat.completions.create(**body).choices[0]
            text, calls, finish = choice.message.content or "", choice.message.tool_calls or [], choice.finish_reason
        assert (finish == "tool_calls") == bool(calls) and (bool(text) != bool(calls))
        if calls:
            assert calls[0].function is not None and calls[0].function.name in ("get_weather", "search_web")


def test_tool_results_continue_the_conversation(client: openai.OpenAI, model: str) -> None:
    arguments = json.dumps({"city": "Paris", "unit": "celsius"})
    messages: list[Any] = [
        *WEATHER_CHAT,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21, "sky": "clear"}'},
    ]
    response = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=16, temperature=0)
    assert response.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_guided_extensions(client: openai.OpenAI, model: str) -> None:
    question = [{"role": "user", "content": "Is Paris in France?"}]

    def reply(**extra: Any) -> str:
        response = client.chat.completions.create(
            model=model, messages=question, max_tokens=16, temperature=0, extra_body=extra
        )
        return response.choices[0].message.content or ""

    assert reply(guided_choice=["yes", "no"]) in ("yes", "no")
    assert reply(guided_regex=r"(true|false)") in ("true", "false")
    assert conforms(json.loads(reply(guided_json=ANSWER)), ANSWER)


def test_guided_extensions_on_completions(client: openai.OpenAI, model: str, server: RunningServer) -> None:
    def completion(**extra: Any) -> str:
        response = client.completions.create(
            model=model, prompt="Is Paris in France? Answer:", max_tokens=16, temperature=0, extra_body=extra
        )
        return response.choices[0].text

    assert completion(guided_choice=[" yes", " no"]) in (" yes", " no")
    assert completion(guided_regex=r" (true|false)") in (" true", " false")
    assert conforms(json.loads(completion(guided_json=ANSWER)), ANSWER)
    bad = httpx.post(
        f"{server.base_url}/v1/completions",
        json={"prompt": "Hi", "max_tokens": 4, "guided_choice": ["a"], "guided_regex": "b"},
        timeout=60,
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "guided_regex", bad.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
            "response_format",
        ),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"guided_regex": "(unclosed"}, "guided_regex"),
        ({"guided_choice": []}, "guided_choice"),
        ({"response_format": {"type": "json_object"}, "guided_regex": "a"}, "guided_regex"),
        ({"response_format": {"type": "json_object"}, "tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "retrieval"}]}, "tools"),
    ],
)
def test_bad_structured_requests_are_400(server: RunningServer, body: dict[str, Any], param: str) -> None:
    response = _post(server, {"messages": WEATHER_CHAT, "max_tokens": 4, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] in (param, None), error
    if error["param"] is None:  # schema validation failures name the field in the message
        assert param in error["message"], error


def test_without_the_grammar_engine_it_is_a_400_naming_the_extra(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "llguidance", None)
    response = _post(server, {"messages": WEATHER_CHAT, "max_tokens": 4, "response_format": {"type": "json_object"}})
    assert response.status_code == 400 and "sagellm-engines[structured]" in response.json()["error"]["message"]


# ------------------------------------------------------------------------------------ the openai SDK's helpers
class City(BaseModel):
    city: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population_millions: int = Field(ge=0, le=99)


class GetWeather(BaseModel):
    """Current weather of a city."""

    city: str = Field(max_length=24)
    unit: Literal["celsius", "fahrenheit"]


def _parse(client: openai.OpenAI) -> Any:
    """The SDK's structured-output helper: ``chat.completions.parse``, ``beta.chat.completions.parse`` in older SDKs."""
    return getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse


def test_sdk_parse_with_a_pydantic_response_format(client: openai.OpenAI, model: str) -> None:
    completion = _parse(client)(
        model=model,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format=City,
        max_tokens=96,
        temperature=0,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.city


def test_sdk_pydantic_function_tool(client: openai.OpenAI, model: str) -> None:
    completion = _parse(client)(
        model=model,
        messages=WEATHER_CHAT,
        tools=[openai.pydantic_function_tool(GetWeather)],
        tool_choice="required",
        max_tokens=64,
        temperature=1.0,
        seed=11,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "GetWeather"
    assert isinstance(calls[0].function.parsed_arguments, GetWeather)
