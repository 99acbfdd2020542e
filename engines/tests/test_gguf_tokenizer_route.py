"""The SentencePiece GGUF tokenizer built by transformers' converter directly equals AutoTokenizer's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from gguf import GGUFWriter

from sagellm.engines.tokenizer.gguf_tokenizer import hf_converted_from_gguf

transformers = pytest.importorskip("transformers")

PIECES = [
    "\u2581the",
    "\u2581a",
    "\u2581cat",
    "\u2581sat",
    "\u2581on",
    "\u2581mat",
    "at",
    "th",
    "e",
    "c",
    "s",
    "m",
    "o",
    "n",
]


def write_sentencepiece_llama(path: Path) -> Path:
    """Model metadata without tensors (enough for both routes) and a small SentencePiece vocabulary."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    tokens = ["<unk>", "<s>", "</s>", "\u2581", *PIECES, *(f"<0x{b:02X}>" for b in range(256))]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0, 0.0, 0.0, -1.0, *(-2.0 - i for i in range(len(PIECES))), *([-100.0] * 256)])
    writer.add_token_types([2, 3, 3, 1, *([1] * len(PIECES)), *([6] * 256)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_direct_conversion_equals_autotokenizer(tmp_path: Path) -> None:
    path = write_sentencepiece_llama(tmp_path / "sp.gguf")
    direct = hf_converted_from_gguf(str(path))
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=os.path.basename(path))
    assert direct.to_str() == auto.backend_tokenizer.to_str()
    text = "the cat sat on the mat, é!"
    assert direct.encode(text).ids == auto.backend_tokenizer.encode(text).ids
    assert direct.encode(text).ids[0] == 1  # BOS, as the file asks
