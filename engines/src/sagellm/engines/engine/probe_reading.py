"""Read a probe's answer and the model's confidence in it from the tokens the probe decoded.

The accelerator extracts answers from text; the engine knows the tokens
and their log-probabilities. Confidence is the geometric mean of the
probabilities of the *answer's* tokens -- those decoded up to the one that
completed the answer (``\\boxed{42}``: "4", "2", "}"), not the text the
probe rambled on with afterwards, which would dilute it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sagellm.core.protocols import CoTAccelerator
from sagellm.engines.tokenizer import Tokenizer


@dataclass(frozen=True, slots=True)
class ProbeReading:
    """``answer_token_ids``/``answer_text``: the probe's tokens up to the end of its answer (all, without one)."""

    text: str
    answer: str | None
    confidence: float
    answer_token_ids: tuple[int, ...]
    answer_text: str


def read_probe(
    accelerator: CoTAccelerator, tokenizer: Tokenizer, token_ids: Sequence[int], logprobs: Sequence[float]
) -> ProbeReading:
    """The answer in ``suffix + decoded text`` and the geometric mean probability of its tokens."""
    suffix = accelerator.probe_suffix
    text = tokenizer.decode(token_ids)
    answer = accelerator.extract_answer(suffix + text)
    if answer is None:
        return ProbeReading(text, None, 0.0, tuple(token_ids), text)
    end = next(
        (
            n
            for n in range(1, len(token_ids))
            if accelerator.extract_answer(suffix + tokenizer.decode(token_ids[:n])) == answer
        ),
        len(token_ids),
    )
    chosen = list(logprobs[:end])
    confidence = math.exp(sum(chosen) / len(chosen)) if chosen else 0.0
    kept = tuple(token_ids[:end])
    return ProbeReading(text, answer, confidence, kept, tokenizer.decode(kept))


def answer_settled(accelerator: CoTAccelerator, tokenizer: Tokenizer, token_ids: Sequence[int]) -> bool:
    """Whether a probe can stop decoding: its answer is there and the last token did not change it.

    One token past the answer's completion is the price of not cutting
    "42" off at "4" for an accelerator that extracts bare numbers; one
    that waits for ``\\boxed{...}`` to close loses only that token.
    """
    if len(token_ids) < 2:
        return False
    suffix = accelerator.probe_suffix
    now = accelerator.extract_answer(suffix + tokenizer.decode(token_ids))
    return now is not None and now == accelerator.extract_answer(suffix + tokenizer.decode(token_ids[:-1]))
