"""Decide after each new token whether a sequence is done, and why."""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import SequenceState


@dataclass(frozen=True, slots=True)
class StopDecision:
    finish_reason: str | None  # None = keep going; "stop" or "length"
    text_delta: str  # the new text, cut before a matched stop string


def check_stop(
    seq: SequenceState,
    token_id: int,
    text_delta: str,
    full_text: str,
    eos_token_ids: tuple[int, ...],
    max_model_len: int,
) -> StopDecision:
    params = seq.request.sampling
    if not params.ignore_eos and token_id in eos_token_ids:
        return StopDecision("stop", "")
    if token_id in params.stop_token_ids:
        return StopDecision("stop", "")
    if params.stop and text_delta:
        cut = _stop_string_cut(full_text, len(text_delta), params.stop)
        if cut is not None:
            kept = text_delta[: max(0, cut - (len(full_text) - len(text_delta)))]
            return StopDecision("stop", kept)
    if seq.num_output_tokens >= params.max_tokens or seq.num_tokens >= max_model_len:
        return StopDecision("length", text_delta)
    return StopDecision(None, text_delta)


def _stop_string_cut(text: str, delta_len: int, stops: tuple[str, ...]) -> int | None:
    """Index in ``text`` where the earliest stop string begins, if the delta completed one."""
    best: int | None = None
    for stop in stops:
        start = max(0, len(text) - delta_len - len(stop) + 1)
        found = text.find(stop, start)
        if found != -1 and (best is None or found < best):
            best = found
    return best
