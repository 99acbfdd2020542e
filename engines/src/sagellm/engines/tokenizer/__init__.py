"""Tokenizers and chat templates read from the model's own files."""

from sagellm.engines.tokenizer.chat_template import render_chat
from sagellm.engines.tokenizer.detokenizer import IncrementalDetokenizer
from sagellm.engines.tokenizer.tokenizer import Tokenizer

__all__ = ["IncrementalDetokenizer", "Tokenizer", "render_chat"]
