"""The tokenizer the bench builds prompts with, and how to get one without loading weights.

The in-process backend uses its engine's tokenizer. Against an HTTP server
the bench still needs one to cut real text to exact token lengths and to
count prompt tokens: it reads the tokenizer (and the model's shape, for
FLOP estimates) from ``--model`` -- seconds, where loading the weights
would take many more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sagellm.engines.model.tokenizer_loader import load_tokenizer_and_config as load_tokenizer

__all__ = ["TokenizerLike", "load_tokenizer"]


class TokenizerLike(Protocol):
    """What workloads need from a tokenizer (the engine's :class:`Tokenizer` is one)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]: ...
