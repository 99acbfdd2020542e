"""Decide after each new token whether a sequence is done, and why."""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import SequenceState


@dataclass(frozen=True, slots=True)
class StopDecision:
    """``text_end``: how much of the sequence's text may be sent by now.

    A stop string can span tokens, so text that might be the start of one
    is held back (the longest stop string's length minus one characters)
    until the next token settles it; otherwise "France" would already be
    streamed when "France is" matched. A finish flushes what was held back.
    """

    finish_reason: str | None  # None = keep going; "stop" or "length"
    text_end: int


def check_stop(
    seq: SequenceState,
    token_id: int,
    text_delta: str,
    full_text: str,
    eos_token_ids: tuple[int, ...],
    max_model_len: int,
) -> StopDecision:
    params = seq.request.sampling
    before_token = len(full_text) - len(text_delta)  # a stop token's own text is not output
    if not params.ignore_eos and token_id in eos_token_ids:
        return StopDecision("stop", before_token)
    if token_id in params.stop_token_ids:
        return StopDecision("stop", before_token)
    if params.stop and text_delta:
        cut = _stop_string_cut(full_text, len(text_delta), params.stop)
        if cut is not None:
            return StopDecision("stop", cut)
    if seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= max_model_len:
        return StopDecision("length", len(full_text))
    held_back = max((len(stop) for stop in params.stop), default=1) - 1
    return StopDecision(None, max(0, len(full_text) - held_back))


def _stop_string_cut(text: str, delta_len: int, stops: tuple[str, ...]) -> int | None:
    """Index in ``text`` where the earliest stop string begins, if the delta completed one."""
    best: int | None = None
    for stop in stops:
        start = max(0, len(text) - delta_len - len(stop) + 1)
        found = text.find(stop, start)
        if found != -1 and (best is None or found < best):
            best = found
    return best
