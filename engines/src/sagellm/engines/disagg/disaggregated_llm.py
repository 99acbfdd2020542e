"""DisaggregatedLLM: ``LLM.generate`` with prefill and decode in two worker processes."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import InvalidRequestError
from sagellm.core.types import SamplingParams, StepOutput
from sagellm.engines.disagg.coordinator import PDCoordinator
from sagellm.engines.disagg.messages import FirstToken, WorkerFailed
from sagellm.engines.disagg.step_outputs import step_outputs
from sagellm.engines.engine.llm import GenerationResult

MAX_IN_FLIGHT = 512  # requests handed to the workers at once (their waiting queues are bounded)


class DisaggregatedLLM:
    """Prefill in one process, decode in another, KV handed over through the KV transfer channel.

    Same shape as :class:`~sagellm.engines.LLM`; greedy output is the same
    tokens. ``model`` and ``**sections`` as for ``LLM``; both workers load
    the model. Close it (or use ``with``) to stop the workers::

        with DisaggregatedLLM() as llm:
            out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=32, temperature=0))
    """

    def __init__(
        self,
        model: str | Path | dict[str, Any] | None = None,
        config: SageLLMConfig | None = None,
        *,
        prefill_threads: int = 1,
        decode_threads: int = 1,
        **sections: Any,
    ) -> None:
        if config is None:
            if isinstance(model, dict):
                sections["model"] = model
            elif model is not None:
                sections.setdefault("model", {})["path"] = str(model)
            config = load_config(**sections)
        self.coordinator = PDCoordinator(config, prefill_threads=prefill_threads, decode_threads=decode_threads)
        self.config = self.coordinator.config
        self._ids = itertools.count()

    def __enter__(self) -> DisaggregatedLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.coordinator.close()

    def generate(
        self,
        prompts: str | Sequence[str] | Sequence[Sequence[int]],
        sampling: SamplingParams | Sequence[SamplingParams] | None = None,
        on_output: Callable[[StepOutput], None] | None = None,
    ) -> list[GenerationResult]:
        """All prompts, results in prompt order; ``on_output`` sees each request's tokens as they come."""
        prompt_list = cast(list[str | Sequence[int]], [prompts] if isinstance(prompts, str) else list(prompts))
        params = _broadcast(sampling, len(prompt_list))
        pending = deque(zip(prompt_list, params))
        results: dict[str, GenerationResult] = {}
        order: list[str] = []
        unfinished: set[str] = set()
        while pending or unfinished:
            while pending and len(unfinished) < MAX_IN_FLIGHT:
                prompt, param = pending.popleft()
                rid = f"pd-{next(self._ids)}"
                self.coordinator.submit(rid, prompt if isinstance(prompt, str) else tuple(prompt), param)
                results[rid] = GenerationResult(rid, [])
                order.append(rid)
                unfinished.add(rid)
            for event in self.coordinator.poll(timeout=1.0):
                for output in _outputs(event, results):
                    if output.finished:
                        unfinished.discard(output.request_id)
                    if on_output is not None:
                        on_output(output)
        return [results[rid] for rid in order]


def _outputs(event: object, results: dict[str, GenerationResult]) -> list[StepOutput]:
    """Fold one event into ``results``; the StepOutputs a colocated engine would have produced for it."""
    if isinstance(event, WorkerFailed) and event.request_id is not None:
        raise InvalidRequestError(f"request {event.request_id} failed in the {event.role} worker: {event.error}")
    if isinstance(event, FirstToken) and event.request_id in results:
        results[event.request_id].prompt_token_ids = list(event.prompt_token_ids)
    out = [output for output in step_outputs(event) if output.request_id in results]  # others: a call that raised
    for output in out:
        result = results[output.request_id]
        result.token_ids.extend(output.new_token_ids)
        result.text += output.new_text
        result.finish_reason = output.finish_reason
        result.num_cached_tokens = output.num_cached_tokens
    return out


def _broadcast(sampling: SamplingParams | Sequence[SamplingParams] | None, n: int) -> list[SamplingParams]:
    if sampling is None:
        return [SamplingParams()] * n
    if isinstance(sampling, SamplingParams):
        return [sampling] * n
    if len(sampling) != n:
        raise ValueError(f"got {len(sampling)} sampling params for {n} prompts")
    return list(sampling)
