"""Prompt-lookup drafts: the tokens that followed the latest earlier occurrence of a sequence's own tail.

Input-grounded work (summarise, extract, edit) copies spans of the prompt;
when the last ``n`` tokens occurred before, what followed them then is a
good guess for what follows now (Saxena's prompt lookup decoding; vLLM's
``ngram`` method). The longest matching ``n`` in ``[min_n, max_n]`` wins.
"""

from __future__ import annotations

from collections.abc import Sequence


class PromptLookupIndex:
    """Every n-gram of one sequence mapped to where it last ended, grown as the sequence grows.

    Indexing is incremental (each position once, for each ``n``), so a step
    costs O(new tokens x n range), not O(length).
    """

    def __init__(self, min_n: int, max_n: int) -> None:
        self.min_n, self.max_n = min_n, max_n
        self._last_end: dict[tuple[int, ...], int] = {}
        self._indexed = 0  # n-grams ending before this position are in _last_end

    def draft(self, token_ids: Sequence[int], num_tokens: int) -> list[int]:
        """Up to ``num_tokens`` tokens that followed the longest earlier match of the tail; [] if none."""
        length = len(token_ids)
        self._index_until(token_ids, length - 1)  # the tail itself must not match itself
        for n in range(min(self.max_n, length - 1), self.min_n - 1, -1):
            end = self._last_end.get(tuple(token_ids[length - n : length]))
            if end is not None:
                return list(token_ids[end + 1 : min(end + 1 + num_tokens, length)])
        return []

    def _index_until(self, token_ids: Sequence[int], stop: int) -> None:
        for end in range(self._indexed, stop):
            for n in range(self.min_n, min(self.max_n, end + 1) + 1):
                self._last_end[tuple(token_ids[end - n + 1 : end + 1])] = end
        self._indexed = max(self._indexed, stop)
