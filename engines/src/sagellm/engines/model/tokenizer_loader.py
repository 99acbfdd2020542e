"""The tokenizer (and shape) of a model reference without its weights, for processes that only talk text.

A disaggregated server's front end tokenizes prompts and renders chat
templates but computes nothing; a benchmark client against an HTTP server
cuts prompts to exact lengths. Reading the tokenizer alone takes seconds
and keeps them from holding another copy of the weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sagellm.engines.model.config import ModelConfig
from sagellm.engines.model.loader import resolve_model_path
from sagellm.engines.tokenizer import Tokenizer
from sagellm.engines.tokenizer.chat_template import resolve_chat_template


def load_tokenizer_and_config(model: str | Path | None) -> tuple[Tokenizer, ModelConfig]:
    """Tokenizer and architecture of a GGUF file or Hugging Face directory (None: the embedded default)."""
    path = resolve_model_path(model)
    if path.is_file():
        from sagellm.engines.model.gguf_loader import config_from_metadata, open_reader, read_metadata

        reader = open_reader(path)
        metadata = read_metadata(reader)
        config = config_from_metadata(metadata, path)
        tied = not any(t.name == "output.weight" for t in reader.tensors)
        return Tokenizer.from_gguf_metadata(metadata, path), replace(config, tie_word_embeddings=tied)
    from sagellm.engines.model.safetensors_loader import config_from_hf, read_hf_config

    config = config_from_hf(read_hf_config(path), path)
    return Tokenizer.from_hf_dir(path, config.eos_token_ids), config


def load_tokenizer(model: str | Path | None, chat_template: str | None = None) -> Tokenizer:
    """The tokenizer the engine builds for ``model``, with ``chat_template`` (a file or Jinja text) if given."""
    tokenizer, _ = load_tokenizer_and_config(model)
    return with_chat_template(tokenizer, chat_template)


def with_chat_template(tokenizer: Tokenizer, chat_template: str | None) -> Tokenizer:
    """``tokenizer`` rendering chats with ``chat_template`` instead of the model's own (None: unchanged)."""
    if chat_template is None:
        return tokenizer
    return replace(tokenizer, chat_template=resolve_chat_template(chat_template))
