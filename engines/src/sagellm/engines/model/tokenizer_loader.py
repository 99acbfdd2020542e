"""The tokenizer of a model reference without its weights, for processes that only talk text.

A disaggregated server's front end tokenizes prompts and renders chat
templates but computes nothing; reading the tokenizer alone keeps it from
holding a third copy of the weights beside its two workers.
"""

from __future__ import annotations

from pathlib import Path

from sagellm.engines.model.gguf_loader import open_reader, read_metadata
from sagellm.engines.model.loader import resolve_model_path
from sagellm.engines.model.safetensors_loader import config_from_hf, read_hf_config
from sagellm.engines.tokenizer import Tokenizer


def load_tokenizer(model: str | Path | None) -> Tokenizer:
    """The same tokenizer the engine builds for ``model`` (None: the embedded default)."""
    path = resolve_model_path(model)
    if path.is_file():
        return Tokenizer.from_gguf_metadata(read_metadata(open_reader(path)), path)
    config = config_from_hf(read_hf_config(path), path)
    return Tokenizer.from_hf_dir(path, config.eos_token_ids)
