"""Logprobs in OpenAI's two shapes: completions' parallel lists and chat's per-token objects.

Each sampled token's logprob always; its most likely alternatives
(``top_logprobs``) when the request asked for some (completions:
``logprobs=N``, chat: ``top_logprobs=N``). A token's text is decoded alone, special tokens included, so a byte-level
token that splits a UTF-8 character shows as U+FFFD, as in OpenAI's API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagellm.engines.server.choices import Alternatives
from sagellm.engines.server.protocol_openai import ChatLogprobs, ChatTokenLogprob, CompletionLogprobs
from sagellm.engines.tokenizer import Tokenizer


def token_texts(tokenizer: Tokenizer, token_ids: Sequence[int]) -> list[str]:
    return [_text(tokenizer, t) for t in token_ids]


def completion_logprobs(
    tokenizer: Tokenizer,
    token_ids: Sequence[int],
    logprobs: Sequence[float],
    tops: Sequence[Alternatives] = (),
    text_offset: int = 0,
) -> CompletionLogprobs:
    """``text_offset``: where this piece starts in the choice's text (streaming continues the count)."""
    texts = token_texts(tokenizer, token_ids)
    offsets = []
    for text in texts:
        offsets.append(text_offset)
        text_offset += len(text)
    top = [{_text(tokenizer, t): lp for t, lp in alternatives} for alternatives in tops] if tops else None
    return CompletionLogprobs(tokens=texts, token_logprobs=list(logprobs), top_logprobs=top, text_offset=offsets)


def chat_logprobs(
    tokenizer: Tokenizer, token_ids: Sequence[int], logprobs: Sequence[float], tops: Sequence[Alternatives] = ()
) -> ChatLogprobs:
    texts = token_texts(tokenizer, token_ids)
    alternatives = list(tops) or [()] * len(texts)
    return ChatLogprobs(
        content=[
            ChatTokenLogprob(
                token=text,
                logprob=logprob,
                bytes=list(text.encode()),
                top_logprobs=[_chat_alternative(tokenizer, t, lp) for t, lp in alts],
            )
            for text, logprob, alts in zip(texts, logprobs, alternatives)
        ]
    )


def _text(tokenizer: Tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def _chat_alternative(tokenizer: Tokenizer, token_id: int, logprob: float) -> dict[str, Any]:
    text = _text(tokenizer, token_id)
    return {"token": text, "logprob": logprob, "bytes": list(text.encode())}
