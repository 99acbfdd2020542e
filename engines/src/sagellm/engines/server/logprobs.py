"""Logprobs in OpenAI's two shapes: completions' parallel lists and chat's per-token objects.

The engine reports the sampled token's logprob only; top alternatives are
refused up front (see ``sampling.py``), so these carry no ``top_logprobs``.
A token's text is decoded alone, special tokens included, so a byte-level
token that splits a UTF-8 character shows as U+FFFD, as in OpenAI's API.
"""

from __future__ import annotations

from collections.abc import Sequence

from sagellm.engines.server.protocol_openai import ChatLogprobs, ChatTokenLogprob, CompletionLogprobs
from sagellm.engines.tokenizer import Tokenizer


def token_texts(tokenizer: Tokenizer, token_ids: Sequence[int]) -> list[str]:
    return [tokenizer.decode([t], skip_special_tokens=False) for t in token_ids]


def completion_logprobs(
    tokenizer: Tokenizer, token_ids: Sequence[int], logprobs: Sequence[float], text_offset: int = 0
) -> CompletionLogprobs:
    """``text_offset``: where this piece starts in the choice's text (streaming continues the count)."""
    texts = token_texts(tokenizer, token_ids)
    offsets = []
    for text in texts:
        offsets.append(text_offset)
        text_offset += len(text)
    return CompletionLogprobs(tokens=texts, token_logprobs=list(logprobs), top_logprobs=None, text_offset=offsets)


def chat_logprobs(tokenizer: Tokenizer, token_ids: Sequence[int], logprobs: Sequence[float]) -> ChatLogprobs:
    texts = token_texts(tokenizer, token_ids)
    return ChatLogprobs(
        content=[
            ChatTokenLogprob(token=text, logprob=logprob, bytes=list(text.encode()))
            for text, logprob in zip(texts, logprobs)
        ]
    )
