"""The bytes each token id stands for, read from sageLLM's own tokenizer: what a grammar engine matches against.

A grammar constrains bytes; the sampler picks token ids. Every grammar
engine (llguidance, xgrammar, outlines-core) therefore needs, for each id,
the exact bytes it appends to the output. Those are not
``tokenizer.decode([id])``: a byte-level BPE token can be half of a UTF-8
character, and SentencePiece drops a leading space when a token is decoded
alone. So the bytes are read from the vocabulary itself:

* byte-level BPE (GPT-2, SmolLM, Llama 3, Qwen): each character of a token
  stands for one byte through GPT-2's printable byte alphabet;
* SentencePiece (Llama 2, Mistral): ``▁`` is a space and ``<0xNN>`` the
  byte NN (byte fallback).

Special (control) tokens are listed apart: they are not text, and a
grammar must never let ``<|im_end|>`` appear inside a JSON string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.engines.tokenizer import Tokenizer

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True, slots=True)
class GrammarVocab:
    """``token_bytes[i]``: the bytes token ``i`` appends (a special token: its text, flagged in ``special_ids``)."""

    token_bytes: tuple[bytes, ...]
    special_ids: frozenset[int]
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None

    @property
    def size(self) -> int:
        return len(self.token_bytes)


def grammar_vocab(tokenizer: Tokenizer) -> GrammarVocab:
    """The tokenizer's vocabulary as bytes; ConfigError for a vocabulary kind it cannot read."""
    backend = tokenizer.backend
    added = backend.get_added_tokens_decoder()
    special = frozenset(i for i, token in added.items() if token.special)
    decoder = backend.decoder  # its JSON alone: the whole tokenizer's (merges included) takes ~0.5 s to parse
    kind = _vocab_kind(None if decoder is None else json.loads(decoder.__getstate__()))
    to_bytes = _byte_level_bytes if kind == "byte_level" else _sentencepiece_bytes
    token_bytes = [b""] * tokenizer.vocab_size  # a hole in the id space matches nothing
    for text, i in backend.get_vocab(with_added_tokens=False).items():
        if i < len(token_bytes):
            token_bytes[i] = to_bytes(text)
    for i, token in added.items():
        if i < len(token_bytes):
            token_bytes[i] = token.content.encode()  # added tokens are literal text, not byte-mapped
    return GrammarVocab(tuple(token_bytes), special, tuple(tokenizer.eos_token_ids), tokenizer.bos_token_id)


def _vocab_kind(decoder: Any) -> str:
    """``byte_level`` or ``sentencepiece``, from the tokenizer's decoder (the step that turns pieces into text)."""
    types = set(_decoder_types(decoder))
    if "ByteLevel" in types:
        return "byte_level"
    if types & {"ByteFallback", "Metaspace"} or _replaces_metaspace(decoder):
        return "sentencepiece"
    raise ConfigError(
        f"cannot read token bytes from a tokenizer with decoder {sorted(types) or None}: "
        "structured output supports byte-level BPE and SentencePiece vocabularies"
    )


def _decoder_types(decoder: Any) -> list[str]:
    if not isinstance(decoder, dict):
        return []
    inner = decoder.get("decoders") or []
    return [str(decoder.get("type")), *(t for d in inner for t in _decoder_types(d))]


def _replaces_metaspace(decoder: Any) -> bool:
    if not isinstance(decoder, dict):
        return False
    if decoder.get("type") == "Replace" and (decoder.get("pattern") or {}).get("String") == "\u2581":
        return True
    return any(_replaces_metaspace(d) for d in decoder.get("decoders") or [])


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, int]:
    """GPT-2's stand-in characters back to the bytes they stand for (``Ġ`` is a space, ``Ċ`` a newline), as a
    ``str.translate`` table to the Latin-1 character of each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: b for b in printable}
    stand_ins = [b for b in range(256) if b not in table]
    table.update({256 + n: b for n, b in enumerate(stand_ins)})
    for b in stand_ins:  # the raw character of a replaced byte never appears in a byte-level vocabulary
        table[b] = 0x110000 - 1  # maps to a character Latin-1 cannot encode: refused below
    return table


def _byte_level_bytes(text: str) -> bytes:
    try:
        return text.translate(_byte_alphabet()).encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(f"token {text!r} has a character outside the byte-level alphabet") from None


def _sentencepiece_bytes(text: str) -> bytes:
    byte = _BYTE_TOKEN.fullmatch(text)
    if byte is not None:
        return bytes([int(byte.group(1), 16)])
    return text.replace("\u2581", " ").encode()
