"""The tokenizer the bench builds prompts with, and how to get one without loading weights.

The in-process backend uses its engine's tokenizer. Against an HTTP server
the bench still needs one to cut real text to exact token lengths and to
count prompt tokens: it reads the tokenizer (and the model's shape, for
FLOP estimates) from ``--model`` -- seconds, where loading the weights
would take many more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.loader import resolve_model_path
from sagellm.engines.tokenizer import Tokenizer


class TokenizerLike(Protocol):
    """What workloads need from a tokenizer (the engine's :class:`Tokenizer` is one)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...

    def encode_chat(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = True) -> list[int]: ...


def load_tokenizer(model: str | Path | None) -> tuple[Tokenizer, ModelConfig]:
    """Tokenizer and architecture of a GGUF file or Hugging Face directory (None: the embedded default)."""
    path = resolve_model_path(model)
    if path.is_file():
        from sagellm.engines.model.gguf_loader import config_from_metadata, open_reader, read_metadata

        reader = open_reader(path)
        metadata = read_metadata(reader)
        config = config_from_metadata(metadata, path)
        tied = not any(t.name == "output.weight" for t in reader.tensors)
        config = replace(config, tie_word_embeddings=tied)
        return Tokenizer.from_gguf_metadata(metadata, path), config
    from sagellm.engines.model.safetensors_loader import config_from_hf, read_hf_config

    config = config_from_hf(read_hf_config(path), path)
    return Tokenizer.from_hf_dir(path, config.eos_token_ids), config
