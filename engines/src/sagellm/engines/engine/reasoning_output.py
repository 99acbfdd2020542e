"""What a reasoning request reports when it ends, riding on its last StepOutput.

``ReasoningOutput`` is a ``StepOutput`` with one more field, so every
consumer of step outputs (``LLM.generate``, the server's handles, which
merge outputs with ``dataclasses.replace``) carries it along unchanged and
only the ones that care look for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from sagellm.core.types import StepOutput

STOPPED_BY = ("finished", "probe", "budget", "consistency", "samples")
"""Why a reasoning request ended: on its own (EOS, a stop, max_tokens), a probe's stable answer, the token
budget's forced answer, a self-consistency window agreeing, or every sample drawn without one agreeing."""


@dataclass(frozen=True, slots=True)
class ReasoningReport:
    """The answer and what it cost.

    ``num_probe_tokens`` counts every token probes ran through the model:
    their suffixes (the only prefill a fork needs) and what they decoded.
    ``num_generated_tokens`` counts the reasoning tokens of every sample,
    cancelled ones included; ``answers`` are the samples' answers in the
    order they finished (one entry without self-consistency).
    """

    answer: str | None
    stopped_by: str
    num_reasoning_tokens: int  # of the answer's own sample, up to where its answer was read
    num_probes: int = 0
    num_probe_tokens: int = 0
    num_samples: int = 1  # drawn (started), cancelled ones included
    num_cancelled: int = 0
    num_generated_tokens: int = 0
    answers: tuple[str | None, ...] = ()
    confidence: float | None = None  # of the probe whose answer was kept


@dataclass(frozen=True, slots=True)
class ReasoningOutput(StepOutput):
    """The last output of a reasoning request: a StepOutput with its report."""

    reasoning: ReasoningReport | None = None


def merged(outputs: Sequence[StepOutput]) -> StepOutput:
    """Outputs held back while a probe ran, as one: tokens and text joined, counters and finish the last's."""
    last = outputs[-1]
    logprobs = [o.logprobs for o in outputs]
    tops = [o.top_logprobs for o in outputs]
    return dataclasses.replace(
        last,
        new_token_ids=tuple(t for o in outputs for t in o.new_token_ids),
        new_text="".join(o.new_text for o in outputs),
        logprobs=None if any(lp is None for lp in logprobs) else tuple(x for lp in logprobs for x in lp or ()),
        top_logprobs=None if any(tp is None for tp in tops) else tuple(x for tp in tops for x in tp or ()),
    )


def with_report(output: StepOutput, report: ReasoningReport) -> ReasoningOutput:
    """``output`` as the request's last one, carrying ``report``."""
    fields = {f.name: getattr(output, f.name) for f in dataclasses.fields(StepOutput)}
    return ReasoningOutput(**fields, reasoning=report)
