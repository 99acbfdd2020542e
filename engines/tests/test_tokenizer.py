"""The tokenizer built from the GGUF file: round trips, agreement with transformers, chat template, streaming.

SmolLM2's original ``tokenizer.json`` (not available offline) splits digits
one by one before byte-level BPE; ours rebuilds that from the GGUF's
``tokenizer.ggml.pre``. transformers' GGUF converter is compared on text
without digits, where the two pre-tokenizers cannot legitimately differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.model.gguf_loader import open_reader, read_metadata
from sagellm.engines.tokenizer import IncrementalDetokenizer, Tokenizer, render_chat

TEXTS = [
    "Hello, world!",
    "  leading spaces, a\ttab,\nnew lines\n\n\nand trailing spaces   ",
    "naïve café, Straße, Ærøskøbing, São Paulo",
    "日本語のテキストと中文，还有한국어",
    "emoji 🎉🚀👍🏽 and a family 👨‍👩‍👧 done",
    "def square(x):\n    return x * x  # comment\n",
    "It's, we've, they'll, I'd, DON'T",
    "Ünïcödé — “quotes” … ellipsis «guillemets»",
    "\u00a0non-breaking\u2003em space\u200bzero width",
    "Привет, мир! Γειά σου κόσμε! مرحبا بالعالم",
]
DIGIT_TEXTS = ["12345", "In 2024, 3.14159 and 1,000,000 people", "phone: 555-0199"]
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


@pytest.fixture(scope="module")
def tokenizer(model_path: Path) -> Tokenizer:
    """Built straight from the GGUF metadata (no model weights needed)."""
    return Tokenizer.from_gguf_metadata(read_metadata(open_reader(model_path)), model_path)


@pytest.mark.parametrize("text", TEXTS + DIGIT_TEXTS)
def test_encode_decode_round_trip(tokenizer: Tokenizer, text: str) -> None:
    ids = tokenizer.encode(text)
    assert ids and all(0 <= i < tokenizer.vocab_size for i in ids)
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("text", TEXTS)
def test_agrees_with_transformers_gguf_tokenizer_on_text_without_digits(
    tokenizer: Tokenizer, hf_tokenizer: Any, text: str
) -> None:
    assert tokenizer.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == hf_tokenizer.decode(ids)


@pytest.mark.parametrize("text", DIGIT_TEXTS)
def test_digits_are_split_one_by_one(tokenizer: Tokenizer, text: str) -> None:
    pieces = [tokenizer.decode([i]) for i in tokenizer.encode(text)]
    digit_pieces = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digit_pieces and all(len(p.strip()) == 1 for p in digit_pieces), pieces


def test_special_tokens_and_eos(tokenizer: Tokenizer) -> None:
    assert tokenizer.encode("<|im_start|>user\nhi<|im_end|>") == [1, 4093, 198, 6004, 2]
    assert tokenizer.decode([1, 4093, 198, 6004, 2]) == "user\nhi"
    assert tokenizer.decode([1, 4093, 198, 6004, 2], skip_special_tokens=False) == "<|im_start|>user\nhi<|im_end|>"
    assert 2 in tokenizer.eos_token_ids  # <|im_end|> ends a chat turn
    assert tokenizer.vocab_size == 49152
    assert tokenizer.encode("hi") == [6004]  # SmolLM adds no BOS to plain text


def test_chat_template_renders_smollm_default_system_prompt(tokenizer: Tokenizer) -> None:
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3? Réponds en français 🎉"},
        ],
    ],
)
def test_chat_template_matches_transformers(
    tokenizer: Tokenizer, hf_tokenizer: Any, messages: list[dict[str, str]]
) -> None:
    ours = tokenizer.apply_chat_template(messages)
    theirs = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert ours == theirs
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=False) == hf_tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=False
    )
    if messages[0]["role"] == "system":
        assert DEFAULT_SYSTEM not in ours


def test_encode_chat_keeps_special_tokens_whole(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode_chat([{"role": "user", "content": "Hi"}])
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 2  # three <|im_start|>, two <|im_end|>
    assert ids[-4:] == tokenizer.encode("<|im_start|>assistant\n")


def test_chatml_fallback_and_bad_messages() -> None:
    assert (
        render_chat(None, [{"role": "user", "content": "x"}])
        == "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    )
    with pytest.raises(InvalidRequestError):
        render_chat(None, [{"role": "user"}])
    with pytest.raises(InvalidRequestError):
        render_chat(None, ["not a dict"])  # type: ignore[list-item]


def stream(tokenizer: Tokenizer, prompt_ids: list[int], output_ids: list[int]) -> list[str]:
    detok = IncrementalDetokenizer(tokenizer, prompt_ids)
    return [detok.push(i) for i in output_ids]


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_deltas_concatenate_to_the_full_decode(tokenizer: Tokenizer, text: str) -> None:
    prompt = tokenizer.encode("Say it:")
    output = tokenizer.encode(" " + text)
    deltas = stream(tokenizer, prompt, output)
    assert "".join(deltas) == tokenizer.decode(output)
    assert not any("\ufffd" in d for d in deltas)  # never half a character


def test_multibyte_characters_wait_for_their_last_byte(tokenizer: Tokenizer) -> None:
    output = tokenizer.encode("🎉")
    assert len(output) > 1  # one character, several byte-level tokens
    deltas = stream(tokenizer, [], output)
    assert deltas[:-1] == [""] * (len(output) - 1) and deltas[-1] == "🎉"


def test_incremental_skips_special_tokens(tokenizer: Tokenizer) -> None:
    output = tokenizer.encode("Paris.<|im_end|>")
    assert "".join(stream(tokenizer, [1], output)) == "Paris."


def test_an_unknown_gguf_pre_tokenizer_is_refused(model_path: Path) -> None:
    from sagellm.core.errors import ModelLoadError
    from sagellm.engines.tokenizer.gguf_tokenizer import byte_level_bpe_from_gguf

    metadata = {**read_metadata(open_reader(model_path)), "tokenizer.ggml.pre": "tekken"}
    with pytest.raises(ModelLoadError, match="'tekken' is not supported.*smollm"):
        byte_level_bpe_from_gguf(metadata)
