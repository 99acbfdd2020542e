"""LLM: the offline, batch-generation entry point (vLLM's ``LLM`` shape)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines.engine.builder import build_engine
from sagellm.engines.engine.llm_engine import LLMEngine
from sagellm.engines.engine.reasoning_options import ReasoningOptions
from sagellm.engines.engine.reasoning_output import ReasoningOutput, ReasoningReport


@dataclass
class GenerationResult:
    request_id: str
    prompt_token_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    num_cached_tokens: int = 0
    reasoning: ReasoningReport | None = None  # the answer and its cost, for a request with reasoning options


class LLM:
    """Load a model once, generate for many prompts with continuous batching.

    ``LLM()`` uses the embedded SmolLM2-135M-Instruct; ``model`` is a path or
    the model config section; other keyword arguments are config sections,
    e.g. ``LLM(kv_pool={"num_blocks": 512})``.
    """

    def __init__(
        self,
        model: str | Path | dict[str, Any] | None = None,
        config: SageLLMConfig | None = None,
        show_progress: bool | None = None,
        **sections: Any,
    ) -> None:
        if config is None:
            if isinstance(model, dict):
                sections["model"] = model
            elif model is not None:
                sections.setdefault("model", {})["path"] = str(model)
            config = load_config(**sections)
        self.config = config
        self.engine: LLMEngine = build_engine(config, show_progress)
        self.tokenizer = self.engine.tokenizer

    def generate(
        self,
        prompts: str | Sequence[str] | Sequence[Sequence[int]],
        sampling: SamplingParams | Sequence[SamplingParams] | None = None,
        on_output: Callable[[StepOutput], None] | None = None,
        reasoning: ReasoningOptions | Sequence[ReasoningOptions | None] | None = None,
    ) -> list[GenerationResult]:
        """All prompts run continuously batched; results keep prompt order.

        Prompts enter the engine as its bounded waiting queue has room
        (``scheduler_ir.max_waiting``), so any number of them can be given.
        ``reasoning`` (needs ``cot_acceleration`` configured): early exit,
        a token budget (asked for in a text prompt, and capped) or
        self-consistency, for every prompt or per prompt.
        """
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        options = _broadcast_reasoning(reasoning, len(prompt_list))
        pending = deque(zip(prompt_list, _broadcast(sampling, len(prompt_list)), options))
        results: dict[str, GenerationResult] = {}
        order: list[str] = []
        while pending or self.engine.has_unfinished():
            while pending and self.engine.num_waiting < self.engine.max_waiting:
                prompt, params, option = pending.popleft()
                if option is not None and isinstance(prompt, str) and self.engine.cot is not None:
                    prompt = self.engine.cot.budget_prompt(prompt, option)
                rid = self.engine.add_request(prompt, params, reasoning=option)
                ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
                results[rid] = GenerationResult(rid, ids)
                order.append(rid)
            for out in self.engine.step():
                result = results[out.request_id]
                result.token_ids.extend(out.new_token_ids)
                result.text += out.new_text
                result.finish_reason = out.finish_reason
                result.num_cached_tokens = out.num_cached_tokens
                if isinstance(out, ReasoningOutput):
                    result.reasoning = out.reasoning
                if on_output is not None:
                    on_output(out)
        return [results[rid] for rid in order]

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        sampling: SamplingParams | None = None,
        reasoning: ReasoningOptions | None = None,
    ) -> GenerationResult:
        cot = self.engine.cot
        if reasoning is not None and cot is not None:
            messages = budget_messages(messages, lambda text: cot.budget_prompt(text, reasoning))
        return self.generate([self.tokenizer.encode_chat(messages)], sampling, reasoning=reasoning)[0]


def budget_messages(messages: Sequence[dict[str, Any]], rewrite: Callable[[str], str]) -> list[dict[str, Any]]:
    """``messages`` with the last user message's text rewritten (a token budget asked for in the prompt)."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = rewrite(message["content"])
            break
    return out


def _broadcast_reasoning(
    reasoning: ReasoningOptions | Sequence[ReasoningOptions | None] | None, n: int
) -> list[ReasoningOptions | None]:
    if reasoning is None or isinstance(reasoning, ReasoningOptions):
        return [reasoning] * n
    if len(reasoning) != n:
        raise ValueError(f"got {len(reasoning)} reasoning options for {n} prompts")
    return list(reasoning)


def _broadcast(sampling: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list[SamplingParams]:
    if sampling is None:
        return [SamplingParams()] * n
    if isinstance(sampling, SamplingParams):
        return [sampling] * n
    if len(sampling) != n:
        raise ValueError(f"got {len(sampling)} sampling params for {n} prompts")
    return list(sampling)
