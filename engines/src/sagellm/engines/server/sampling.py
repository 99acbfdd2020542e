"""Map API request fields to the engine's SamplingParams, refusing what the engine cannot do.

The defaults are the model's (``generation_config.json``, see
model/generation_config.py) where it sets them, else the APIs' own:
completions stop at 16 tokens (OpenAI's default), chat may use the rest of
the context (as vLLM does), Anthropic always names ``max_tokens``. Parameters that would change the answer but
have no engine support (``logit_bias``, prompt logprobs) get a
400 naming the field; ignoring them would return a plausible wrong answer.
A reply's grammar (``guided_*``; on chat also ``response_format`` and forced tool calls:
:mod:`~sagellm.engines.server.structured_output`) rides on the parameters
as :class:`~sagellm.engines.runtime.grammar.GuidedSamplingParams`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from sagellm.core.types import SamplingParams
from sagellm.engines.model.generation_config import SamplingDefaults
from sagellm.engines.runtime.grammar import GrammarSpec, with_grammar
from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_anthropic import MessagesRequest
from sagellm.engines.server.protocol_openai import (
    SEED_MAX,
    SEED_MIN,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
)
from sagellm.engines.server.structured_output import chat_grammar, completion_grammar

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
T = TypeVar("T", int, float)


NO_DEFAULTS = SamplingDefaults()


def completion_sampling(request: CompletionRequest, defaults: SamplingDefaults = NO_DEFAULTS) -> SamplingParams:
    _refuse_unsupported(request)
    if request.suffix:
        raise BadParameterError("suffix (fill-in-the-middle) is not supported", "suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise BadParameterError("best_of other than n is not supported", "best_of")
    if request.echo and request.logprobs is not None:
        raise BadParameterError("echo with logprobs needs prompt logprobs, which are not supported", "echo")
    max_tokens = request.max_tokens or defaults.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS
    return _openai_params(request, max_tokens, request.logprobs, defaults, completion_grammar(request))


def chat_sampling(
    request: ChatCompletionRequest,
    num_prompt_tokens: int,
    max_model_len: int,
    defaults: SamplingDefaults = NO_DEFAULTS,
) -> SamplingParams:
    _refuse_unsupported(request)
    grammar = chat_grammar(request)
    if request.top_logprobs and not request.logprobs:
        raise BadParameterError("top_logprobs needs logprobs=true", "top_logprobs")
    # Either name; the default leaves room for the prompt (at least 1, so a too-long prompt still gets a 400).
    room = max(1, max_model_len - num_prompt_tokens)
    max_tokens = request.max_completion_tokens or request.max_tokens or min(defaults.max_tokens or room, room)
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    return _openai_params(request, max_tokens, logprobs, defaults, grammar)


def anthropic_sampling(request: MessagesRequest, defaults: SamplingDefaults = NO_DEFAULTS) -> SamplingParams:
    """A request without tools (with tools it is read as a chat request: anthropic_tools.py)."""
    return SamplingParams(
        max_tokens=request.max_tokens,
        temperature=_pick(request.temperature, defaults.temperature, 1.0),
        top_p=_pick(request.top_p, defaults.top_p, 1.0),
        top_k=_pick(request.top_k, defaults.top_k, 0),
        stop=tuple(request.stop_sequences or ()),
    )


def seeded_copies(params: SamplingParams, n: int) -> list[SamplingParams]:
    """n independent samples: with a seed, choice i uses seed + i, else every choice would be identical."""
    if params.seed is None:
        return [params] * n
    span = SEED_MAX - SEED_MIN + 1
    return [replace(params, seed=(params.seed + i - SEED_MIN) % span + SEED_MIN) for i in range(n)]


def _refuse_unsupported(request: SamplingFields) -> None:
    if request.logit_bias:
        raise BadParameterError("logit_bias is not supported", "logit_bias")


def _pick(given: T | None, model_default: T | None, api_default: T) -> T:
    """The request's value, else the model's default, else the API's."""
    if given is not None:
        return given
    return model_default if model_default is not None else api_default


def _openai_params(
    request: SamplingFields,
    max_tokens: int,
    logprobs: int | None,
    defaults: SamplingDefaults,
    grammar: GrammarSpec | None = None,
) -> SamplingParams:
    stop = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
    if any(not s for s in stop):
        raise BadParameterError("stop strings must not be empty", "stop")
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=_pick(request.temperature, defaults.temperature, 1.0),
        top_p=_pick(request.top_p, defaults.top_p, 1.0),
        top_k=max(0, _pick(request.top_k, defaults.top_k, 0)),
        min_p=_pick(request.min_p, defaults.min_p, 0.0),
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        repetition_penalty=_pick(request.repetition_penalty, defaults.repetition_penalty, 1.0),
        seed=request.seed,
        stop=tuple(stop),
        stop_token_ids=tuple(request.stop_token_ids or ()),
        ignore_eos=request.ignore_eos,
        logprobs=logprobs,
    )
    return params if grammar is None else with_grammar(params, grammar)
