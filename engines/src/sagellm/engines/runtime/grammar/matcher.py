"""One request's place in its grammar: which tokens may come next, and advancing by the token that came.

::

    step t:   mask(width)   ──► sampler adds it to the row's logits ──► token
              accept(token) ◄── engine appends it to the sequence

The mask is computed before every sampled token (the prompt's last chunk
included), so the first output token is constrained too. EOS is in the mask
only where the grammar is complete: a document cannot end half-written,
and once nothing more can follow, EOS is the only token left. A matcher
that failed (a token it refused was appended, or the grammar engine hit a
resource limit) allows EOS alone, so the request ends instead of emitting
text that no longer matches.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

_MINUS_INF_BITS = np.uint32(0xFF800000)  # float32 -inf as bits: 0 * it is +0.0, 1 * it is -inf


class GrammarMatcher:
    """Wraps one llguidance ``LLMatcher``; engine thread only (not thread-safe)."""

    def __init__(self, matcher: Any, vocab_size: int, eos_token_ids: tuple[int, ...]) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._eos_token_ids = eos_token_ids
        self._words = torch.zeros((vocab_size + 31) // 32, dtype=torch.int32)  # one bit per token, reused
        self._warned = False

    @property
    def is_complete(self) -> bool:
        """The output so far is a whole document of the grammar (EOS may end it)."""
        return bool(self._matcher.is_accepting())

    @property
    def error(self) -> str | None:
        return str(self._matcher.get_error()) if self._matcher.is_error() else None

    def fill_bitmask(self, words: torch.Tensor) -> None:
        """The allowed tokens as bits into ``words`` (int32, contiguous, ``ceil(vocab / 32)`` long)."""
        self._matcher.unsafe_compute_mask_ptr(words.data_ptr(), words.numel() * words.element_size())

    def mask(self, width: int) -> torch.Tensor:
        """float32 ``[width]`` to add to the logits: 0 where a token may come next, -inf elsewhere.

        Additive, not boolean: a bool row makes ``masked_fill`` branch on
        every one of ~50k irregular entries (~0.5 ms a row on this CPU);
        bits to float through integer arithmetic and one add cost a tenth of
        that. Ids past the tokenizer's vocabulary (padded embeddings) never may.
        """
        if self._matcher.is_error():
            self._warn_once()
            mask = torch.full((width,), float("-inf"))
            mask[[i for i in self._eos_token_ids if i < width]] = 0.0
            return mask
        self.fill_bitmask(self._words)
        count = min(width, self._vocab_size)
        refused = np.unpackbits(np.invert(self._words.numpy().view(np.uint8)), count=count, bitorder="little")
        mask = torch.from_numpy((refused.astype(np.uint32) * _MINUS_INF_BITS).view(np.float32))
        if width == count:
            return mask
        return torch.cat([mask, torch.full((width - count,), float("-inf"))])

    def accept(self, token_id: int) -> bool:
        """Advance by the token the sequence grew by; False if the grammar refused it (the matcher then failed)."""
        return bool(self._matcher.consume_token(token_id))

    def _warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("grammar matcher failed, ending the request: %s", self._matcher.get_error())
