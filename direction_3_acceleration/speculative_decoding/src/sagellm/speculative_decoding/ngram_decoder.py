"""The ``ngram`` speculative decoder: prompt lookup first, then the suffix table shared across requests."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sagellm.core.config import Section
from sagellm.core.errors import ConfigError
from sagellm.core.types import DraftSequence
from sagellm.speculative_decoding.acceptance import greedy_accepted
from sagellm.speculative_decoding.prompt_lookup import PromptLookupIndex
from sagellm.speculative_decoding.suffix_table import SharedSuffixTable


@dataclass
class _Request:
    lookup: PromptLookupIndex
    history: list[int] = field(default_factory=list)  # the tail the suffix table learns after


class NgramDecoder:
    """Drafts from the request's own tokens (prompt lookup, longest n-gram in
    ``[prompt_lookup_min, prompt_lookup_max]``, vLLM's option names) and, where
    that finds nothing, from what earlier outputs did after the same
    ``suffix_context`` tokens. No model runs: a draft costs microseconds."""

    name = "ngram"

    def __init__(
        self,
        prompt_lookup_min: int = 2,
        prompt_lookup_max: int = 4,
        suffix_context: int = 3,
        suffix_min_count: int = 2,
        suffix_min_share: float = 0.5,
        suffix_max_entries: int = 1 << 20,
    ) -> None:
        if not 1 <= prompt_lookup_min <= prompt_lookup_max:
            raise ConfigError(
                f"ngram: need 1 <= prompt_lookup_min <= prompt_lookup_max, got {prompt_lookup_min}, {prompt_lookup_max}"
            )
        if suffix_context < 1 or suffix_min_count < 1 or suffix_max_entries < 1 or not 0 <= suffix_min_share <= 1:
            raise ConfigError(
                "ngram: suffix_context, suffix_min_count and suffix_max_entries must be >= 1 and "
                f"suffix_min_share within [0, 1] (got {suffix_context}, {suffix_min_count}, "
                f"{suffix_max_entries}, {suffix_min_share})"
            )
        self.prompt_lookup_min, self.prompt_lookup_max = prompt_lookup_min, prompt_lookup_max
        self.suffix = SharedSuffixTable(suffix_context, suffix_min_count, suffix_min_share, suffix_max_entries)
        self._requests: dict[str, _Request] = {}

    @classmethod
    def from_config(cls, section: Section, **_: Any) -> NgramDecoder:
        known = list(inspect.signature(cls).parameters)  # the options are the constructor's arguments
        unknown = sorted(set(section.options) - set(known))
        if unknown:
            raise ConfigError(f"ngram: unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
        return cls(**section.options)

    def propose(self, sequences: Sequence[DraftSequence], num_tokens: int) -> list[list[int]]:
        return [self._draft(sequence, num_tokens) for sequence in sequences]

    def verify(self, draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
        return greedy_accepted(draft_token_ids, target_token_ids)

    def accept(self, request_id: str, token_ids: Sequence[int]) -> None:
        request = self._requests.get(request_id)
        if request is None:
            return
        self.suffix.learn(request.history, token_ids)
        request.history = (request.history + list(token_ids))[-self.suffix.context :]

    def release(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    def _draft(self, sequence: DraftSequence, num_tokens: int) -> list[int]:
        if num_tokens < 1 or not sequence.token_ids:
            return []
        request = self._requests.get(sequence.request_id)
        if request is None:
            request = self._requests[sequence.request_id] = _Request(
                PromptLookupIndex(self.prompt_lookup_min, self.prompt_lookup_max)
            )
        request.history = list(sequence.token_ids[-self.suffix.context :])
        drafted = request.lookup.draft(sequence.token_ids, num_tokens)
        return drafted or self.suffix.draft(sequence.token_ids, num_tokens)
