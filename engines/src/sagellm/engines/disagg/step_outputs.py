"""The workers' events as the StepOutputs a colocated engine would have produced.

The decode engine sees each request's prompt as the real prompt plus the
first token (which the prefill worker sampled), so its counts are shifted
by one; here they are put back, so callers cannot tell the two apart.
"""

from __future__ import annotations

from sagellm.core.types import StepOutput
from sagellm.engines.disagg.messages import DecodeStep, FirstToken


def step_outputs(event: object) -> list[StepOutput]:
    """What ``event`` produced, one StepOutput per request it advanced (none for control events)."""
    if isinstance(event, FirstToken):
        return [
            StepOutput(
                event.request_id,
                (event.token_id,),
                event.text,
                event.finish_reason,
                num_prompt_tokens=len(event.prompt_token_ids),
                num_output_tokens=1,
                logprobs=event.logprobs,
                top_logprobs=event.top_logprobs,
            )
        ]
    if isinstance(event, DecodeStep):
        return [
            StepOutput(
                step.request_id,
                step.new_token_ids,
                step.new_text,
                step.finish_reason,
                num_prompt_tokens=step.num_prompt_tokens - 1,  # the decode side's prompt ends in the first token
                num_output_tokens=step.num_output_tokens + 1,
                num_cached_tokens=step.num_cached_tokens,
                logprobs=step.logprobs,
                top_logprobs=step.top_logprobs,
            )
            for step in event.outputs
        ]
    return []
