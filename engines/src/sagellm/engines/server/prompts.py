"""Turn API prompts and conversations into token ids, with the model's own chat template.

Tokenizing here, before the request reaches the engine thread, lets a
handler know the prompt length up front: it fills ``usage`` and Anthropic's
``message_start``, and sets the default ``max_tokens`` of a chat request.
The chat template itself is the tokenizer's (``Tokenizer.encode_chat``), the
same one ``sagellm generate --chat`` and ``LLM.chat`` use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sagellm.engines.server.errors import BadParameterError
from sagellm.engines.server.protocol_anthropic import ContentBlock, MessagesRequest
from sagellm.engines.server.protocol_openai import ChatMessage, ContentPart
from sagellm.engines.tokenizer import Tokenizer

# OpenAI's newer "developer" role is what older templates call "system".
_ROLE_ALIASES = {"developer": "system"}


def encode_completion_prompts(
    tokenizer: Tokenizer, prompt: str | list[str] | list[int] | list[list[int]]
) -> list[list[int]]:
    """One token-id list per prompt: a string, a list of strings, token ids, or a list of those."""
    if isinstance(prompt, str):
        return [_encode_text(tokenizer, prompt)]
    if not prompt:
        raise BadParameterError("prompt must not be empty", "prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    if all(isinstance(p, str) for p in prompt):
        return [_encode_text(tokenizer, p) for p in prompt]  # type: ignore[arg-type]
    if any(not p for p in prompt):
        raise BadParameterError("prompt must not contain an empty token list", "prompt")
    return [list(p) for p in prompt]  # type: ignore[arg-type]


def encode_openai_chat(tokenizer: Tokenizer, messages: Sequence[ChatMessage]) -> list[int]:
    conversation = []
    for i, message in enumerate(messages):
        if message.role == "tool":
            raise BadParameterError(f"messages[{i}]: tool messages are not supported (no tool calling)", "messages")
        role = _ROLE_ALIASES.get(message.role, message.role)
        conversation.append({"role": role, "content": _text_of(message.content, "messages", f"messages[{i}].content")})
    return tokenizer.encode_chat(conversation)


def encode_anthropic_messages(tokenizer: Tokenizer, request: MessagesRequest) -> list[int]:
    """System prompt first; a final assistant turn is a prefill the reply continues, as Anthropic does."""
    conversation: list[dict[str, Any]] = []
    if request.system:
        conversation.append({"role": "system", "content": _text_of(request.system, "system", "system")})
    for i, message in enumerate(request.messages):
        conversation.append(
            {"role": message.role, "content": _text_of(message.content, "messages", f"messages[{i}].content")}
        )
    if conversation[-1]["role"] != "assistant":
        return tokenizer.encode_chat(conversation)
    prefill = conversation.pop()["content"].rstrip()  # Anthropic rejects trailing whitespace in a prefill
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True) + prefill
    return tokenizer.encode(text, add_special_tokens=False)


def _encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    if not text:
        raise BadParameterError("prompt must not be empty", "prompt")
    return tokenizer.encode(text)


def _text_of(content: str | Sequence[ContentPart | ContentBlock] | None, param: str, where: str) -> str:
    """Text content, joined from text parts; anything else (images, tool blocks) is refused.

    ``param`` is the top-level field (the error body's ``param``), ``where`` the exact spot.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise BadParameterError(f"{where}[{j}]: only text content is supported, got a {part.type!r} part", param)
        texts.append(part.text)
    return "".join(texts)
