"""What a request must satisfy before any engine takes it, shared by every front door.

The colocated engine, the disaggregated prefill worker and the server's
disaggregated front end all refuse the same requests with the same words
(vLLM's, so clients recognise them), and refuse them before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from sagellm.core.errors import ContextLengthExceededError, InvalidRequestError
from sagellm.core.types import blocks_for


def check_prompt_ids(token_ids: Sequence[object], vocab_size: int) -> list[int]:
    """``token_ids`` as a list, or InvalidRequestError if empty or outside the vocabulary."""
    ids = list(token_ids)
    if not ids:
        raise InvalidRequestError("prompt must contain at least one token")
    bad = [t for t in ids if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab_size]
    if bad:
        raise InvalidRequestError(f"prompt token ids must be integers in [0, {vocab_size}); got {bad[:3]}")
    return ids  # type: ignore[return-value]


def check_context_length(
    num_prompt: int, max_tokens: int, max_model_len: int, block_size: int | None = None, num_blocks: int | None = None
) -> None:
    """Reject what could never finish: longer than the context, or (given the pool) more blocks than it has."""
    total = num_prompt + max_tokens
    if total > max_model_len:
        raise ContextLengthExceededError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{total} tokens ({num_prompt} in the prompt, {max_tokens} for the completion)."
        )
    if block_size is None or num_blocks is None:
        return
    blocks_needed = blocks_for(total, block_size)
    if blocks_needed > num_blocks:
        raise ContextLengthExceededError(
            f"the request needs {blocks_needed} KV blocks but the whole pool has {num_blocks}"
        )
