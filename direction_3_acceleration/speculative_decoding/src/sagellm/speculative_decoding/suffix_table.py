"""A table of what followed each short context in earlier requests' outputs, shared by all requests.

Agents, templated answers and repeated tool calls make different requests
emit the same spans; a request's own prompt does not hold them, earlier
outputs do (the idea of SuffixDecoding, Oliaro et al. 2024, kept to a
fixed-length context). Drafting walks the most frequent continuation while
it is frequent enough to be worth a verify slot.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence


class SharedSuffixTable:
    """``context (last `context` tokens) -> Counter of the next token``, bounded in entries (LRU)."""

    def __init__(self, context: int, min_count: int, min_share: float, max_entries: int) -> None:
        self.context = context
        self.min_count, self.min_share = min_count, min_share
        self.max_entries = max_entries
        self._next: OrderedDict[tuple[int, ...], Counter[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._next)

    def learn(self, history: Sequence[int], new_token_ids: Sequence[int]) -> None:
        """Count each new token after the ``context`` tokens before it (``history`` ends where they start)."""
        window = list(history[-self.context :]) if self.context else []
        for token in new_token_ids:
            if len(window) == self.context:
                key = tuple(window)
                counts = self._next.get(key)
                if counts is None:
                    counts = self._next[key] = Counter()
                    if len(self._next) > self.max_entries:
                        self._next.popitem(last=False)
                else:
                    self._next.move_to_end(key)
                counts[token] += 1
            window.append(token)
            if len(window) > self.context:
                del window[0]

    def draft(self, token_ids: Sequence[int], num_tokens: int) -> list[int]:
        """Follow the dominant continuation from the sequence's tail for up to ``num_tokens`` tokens."""
        if len(token_ids) < self.context:
            return []
        window = list(token_ids[len(token_ids) - self.context :])
        drafted: list[int] = []
        while len(drafted) < num_tokens:
            token = self._dominant(tuple(window))
            if token is None:
                break
            drafted.append(token)
            window = window[1:] + [token]
        return drafted

    def _dominant(self, key: tuple[int, ...]) -> int | None:
        counts = self._next.get(key)
        if not counts:
            return None
        token, count = counts.most_common(1)[0]
        if count < self.min_count or count < self.min_share * sum(counts.values()):
            return None
        return token
