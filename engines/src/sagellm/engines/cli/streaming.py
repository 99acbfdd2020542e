"""Drive an LLMEngine until one request finishes, yielding its outputs as they come."""

from __future__ import annotations

from collections.abc import Iterator

from sagellm.core.types import StepOutput
from sagellm.engines.engine.llm_engine import LLMEngine


def stream_request(engine: LLMEngine, request_id: str) -> Iterator[StepOutput]:
    try:
        while engine.has_unfinished():
            for output in engine.step():
                if output.request_id == request_id:
                    yield output
                    if output.finished:
                        return
    finally:
        engine.abort_request(request_id)  # no-op when finished; frees KV on Ctrl-C
