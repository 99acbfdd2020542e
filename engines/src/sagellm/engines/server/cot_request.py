"""A request's ``cot`` field: the engine's ReasoningOptions, the budget asked for in the prompt, the report.

Refused with a 400 naming ``cot`` where it cannot be honoured rather than
ignored: an engine without an accelerator (the client would believe its
budget applied), and self-consistency with ``stream`` (the answer is the
samples' vote, known only at the end; early exit and budgets do stream,
the answer arriving as the last chunk).
"""

from __future__ import annotations

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.engine.reasoning_output import ReasoningReport
from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_openai import ChatMessage, ContentPart, ReasoningInfo, SamplingFields
from sagellm.engines.server.served_engine import ServedEngine

PromptField = str | list[str] | list[int] | list[list[int]]


def reasoning_options(body: SamplingFields, engine: ServedEngine) -> ReasoningOptions | None:
    """The request's options for the engine, None without ``cot``; BadParameterError where they cannot apply."""
    cot = body.cot
    if cot is None:
        return None
    if reasoning_engine(engine) is None:
        raise BadParameterError(
            "cot needs a chain-of-thought accelerator: start the server with --cot-acceleration NAME", "cot"
        )
    if body.stream and (cot.self_consistency or 1) > 1:
        raise BadParameterError(
            "cot.self_consistency cannot stream (the answer is the samples' vote, known at the end); "
            "set stream to false",
            "cot",
        )
    try:
        return ReasoningOptions(cot.early_exit, cot.budget, cot.self_consistency)
    except InvalidRequestError as exc:
        raise BadParameterError(str(exc), "cot") from None


def reasoning_engine(engine: ServedEngine) -> LLMEngine | None:
    """The engine, when it can serve ``cot`` (an LLMEngine with an accelerator; not a disaggregated one)."""
    return engine if isinstance(engine, LLMEngine) and engine.cot is not None else None


def budget_prompt(prompt: PromptField, options: ReasoningOptions | None, engine: ServedEngine) -> PromptField:
    """A completion prompt asking for the budget: text prompts rewritten, token ids left as they are."""
    served = reasoning_engine(engine)
    if options is None or options.budget is None or served is None or served.cot is None:
        return prompt
    cot = served.cot
    if isinstance(prompt, str):
        return cot.budget_prompt(prompt, options)
    if prompt and all(isinstance(p, str) for p in prompt):
        return [cot.budget_prompt(p, options) for p in prompt if isinstance(p, str)]
    return prompt


def budget_messages(
    messages: list[ChatMessage], options: ReasoningOptions | None, engine: ServedEngine
) -> list[ChatMessage]:
    """The conversation with its last user message asking for the budget."""
    served = reasoning_engine(engine)
    if options is None or options.budget is None or served is None or served.cot is None:
        return messages
    cot = served.cot
    out = list(messages)
    for i in range(len(out) - 1, -1, -1):
        message = out[i]
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, str):
            out[i] = message.model_copy(update={"content": cot.budget_prompt(content, options)})
        elif content:
            parts = list(content)
            last = max((j for j, p in enumerate(parts) if p.text is not None), default=None)
            if last is not None:
                text = cot.budget_prompt(parts[last].text or "", options)
                parts[last] = ContentPart(type=parts[last].type, text=text)
                out[i] = message.model_copy(update={"content": parts})
        break
    return out


def reasoning_info(report: ReasoningReport | None) -> ReasoningInfo | None:
    if report is None:
        return None
    return ReasoningInfo(
        answer=report.answer,
        stopped_by=report.stopped_by,
        reasoning_tokens=report.num_reasoning_tokens,
        probes=report.num_probes,
        probe_tokens=report.num_probe_tokens,
        samples=report.num_samples,
        cancelled_samples=report.num_cancelled,
        generated_tokens=report.num_generated_tokens,
        answers=list(report.answers),
        confidence=report.confidence,
    )
