"""The token ids a request is finally sent with: conversation history, then the context limit.

A follow-up turn is only known once the turn before has been answered, so
its prompt is built at send time: the earlier turn's messages, the model's
actual answer, then the new user message. Its templated ids begin with the
earlier prompt -- the shared prefix a prefix cache should find.

Requests longer than the model's context are clipped rather than failed, so
a trace recorded on a 128K-context model still replays on an 8K one:

    max_model_len
    |<------------- prompt kept ------------->|<-- output (<= half) -->|
    |head of the prompt (shared prefixes live here) ...|tail of a chat prompt|

The output keeps at most half the context, the prompt keeps its head (and,
for chat, its last few tokens: the "assistant:" header the model answers
after).
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.engines.bench.request import BenchRequest, Message
from sagellm.engines.bench.tokenizer_source import TokenizerLike

CHAT_TAIL_TOKENS = 8


@dataclass(frozen=True, slots=True)
class ResolvedPrompt:
    token_ids: list[int]
    max_tokens: int
    clipped: bool = False


class PromptResolver:
    def __init__(self, tokenizer: TokenizerLike, max_model_len: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.num_clipped = 0
        self._sent: dict[str, tuple[Message, ...]] = {}
        self._history: dict[str, tuple[Message, ...]] = {}

    def resolve(self, request: BenchRequest) -> ResolvedPrompt:
        if request.is_chat:
            messages = self._history.pop(request.follows, ()) if request.follows else ()
            messages = messages + request.messages
            self._sent[request.request_id] = messages
            ids = self.tokenizer.encode_chat(list(messages))
        else:
            ids = list(request.prompt_token_ids)
        resolved = clip_to_context(ids, request.max_tokens, self.max_model_len, request.is_chat)
        self.num_clipped += resolved.clipped
        return resolved

    def answered(self, request_id: str, text: str) -> None:
        """Remember a chat turn's answer for the turn that follows it (failed turns: pass "")."""
        messages = self._sent.pop(request_id, None)
        if messages is not None:
            self._history[request_id] = messages + ({"role": "assistant", "content": text},)


def clip_to_context(ids: list[int], max_tokens: int, max_model_len: int | None, keep_tail: bool) -> ResolvedPrompt:
    """Fit ``prompt + max_tokens`` into ``max_model_len`` (see the module diagram)."""
    if max_model_len is None or len(ids) + max_tokens <= max_model_len:
        return ResolvedPrompt(ids, max_tokens)
    out = min(max_tokens, max(1, max_model_len // 2))
    keep = min(len(ids), max_model_len - out)
    tail = min(CHAT_TAIL_TOKENS, keep // 4) if keep_tail else 0
    kept = ids[: keep - tail] + (ids[len(ids) - tail :] if tail else [])
    return ResolvedPrompt(kept, out, clipped=True)
