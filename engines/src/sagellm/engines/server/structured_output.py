"""The grammar a reply must match: from ``response_format``, a forced tool call or vLLM's ``guided_*``.

Completions take ``guided_*`` only; chat takes all three kinds.

At most one source constrains a reply; two are a 400 (their grammars
would have to intersect, and no client means that). The grammar is checked
here, before the request queues, so an invalid schema or regex is a 400
naming the field, and a server without the grammar engine answers a 400
naming the extra to install -- never an unconstrained reply.

The engine applies the grammar as a token mask (``runtime/grammar``):
``json_object`` is any JSON object, ``json_schema`` a document of the
schema (``strict`` or not: it is always enforced), written compactly.
"""

from __future__ import annotations

from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import SamplingParams
from sagellm.engines.runtime.grammar import GrammarSpec, check_grammar, grammar_of
from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_openai import ChatCompletionRequest, ResponseFormat, SamplingFields
from sagellm.engines.server.tool_calls import call_schema, tool_use


def chat_grammar(request: ChatCompletionRequest) -> GrammarSpec | None:
    """The checked grammar of a chat request's reply, or None; BadParameterError naming the field otherwise."""
    sources: list[tuple[str, GrammarSpec]] = []
    if request.response_format is not None and request.response_format.type != "text":
        sources.append(("response_format", _response_format_grammar(request.response_format)))
    use = tool_use(request)
    if use is not None and use.mode == "required":
        sources.append(("tool_choice", GrammarSpec.json_schema(call_schema(use))))
    return _checked_single(sources + _guided_sources(request))


def completion_grammar(request: SamplingFields) -> GrammarSpec | None:
    """The checked grammar of a completion from its ``guided_*`` field, or None."""
    return _checked_single(_guided_sources(request))


def _guided_sources(request: SamplingFields) -> list[tuple[str, GrammarSpec]]:
    sources: list[tuple[str, GrammarSpec]] = []
    if request.guided_json is not None:
        schema = request.guided_json  # a schema, or a schema as JSON text (vLLM takes both)
        spec = GrammarSpec("json_schema", schema) if isinstance(schema, str) else GrammarSpec.json_schema(schema)
        sources.append(("guided_json", spec))
    if request.guided_choice is not None:
        sources.append(("guided_choice", GrammarSpec.choice(request.guided_choice)))
    if request.guided_regex is not None:
        sources.append(("guided_regex", GrammarSpec.regex(request.guided_regex)))
    return sources


def _checked_single(sources: list[tuple[str, GrammarSpec]]) -> GrammarSpec | None:
    if not sources:
        return None
    if len(sources) > 1:
        raise BadParameterError(f"{sources[0][0]} and {sources[1][0]} cannot be combined", sources[1][0])
    param, spec = sources[0]
    try:
        check_grammar(spec)
    except InvalidRequestError as exc:
        raise BadParameterError(str(exc), param) from None
    return spec


def require_grammar_engine(engine: object, params: SamplingParams, reasoning: object = None) -> None:
    """Only ``LLMEngine`` applies grammars (the disaggregated engine rebuilds sampling parameters without
    them), and not to ``cot`` requests, whose probes and forced answers append text the grammar never saw."""
    from sagellm.engines.engine.llm_engine import LLMEngine

    if grammar_of(params) is None:
        return
    if not isinstance(engine, LLMEngine):
        raise BadParameterError(
            f"structured output and forced tool calls are not supported by {type(engine).__name__}", "response_format"
        )
    if reasoning is not None:
        raise BadParameterError("cot cannot be combined with structured output or forced tool calls", "cot")


def _response_format_grammar(response_format: ResponseFormat) -> GrammarSpec:
    json_schema = response_format.json_schema
    if response_format.type == "json_object":
        if json_schema is not None:
            raise BadParameterError("json_schema belongs to response_format type 'json_schema'", "response_format")
        return GrammarSpec.json_object()
    if json_schema is None or json_schema.schema_ is None:
        raise BadParameterError("response_format type 'json_schema' needs json_schema.schema", "response_format")
    return GrammarSpec.json_schema(json_schema.schema_)
