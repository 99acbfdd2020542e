"""Build a fast BPE tokenizer from the vocabulary a GGUF file carries.

llama.cpp names the pre-tokenizer (``tokenizer.ggml.pre``); we rebuild the
same splitting with the ``tokenizers`` library. For SmolLM that means
splitting digits one by one before byte-level BPE, as its original
``tokenizer.json`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as FastTokenizer

from sagellm.core.errors import ModelLoadError

CONTROL, USER_DEFINED = 3, 4

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _byte_level() -> Any:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def _split_then_bytes(pattern: str) -> Callable[[], Any]:
    def build() -> Any:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )

    return build


def _digits_then_bytes() -> Any:
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _byte_level()])


PRE_TOKENIZERS: dict[str, Callable[[], Any]] = {
    "default": _byte_level,
    "gpt2": _byte_level,
    "smollm": _digits_then_bytes,
    "llama-bpe": _split_then_bytes(_LLAMA3_SPLIT),
    "llama3": _split_then_bytes(_LLAMA3_SPLIT),
    "smaug-bpe": _split_then_bytes(_LLAMA3_SPLIT),  # llama.cpp gives Smaug Llama 3's regex
    "qwen2": _split_then_bytes(_QWEN2_SPLIT),  # Qwen2, 2.5 and 3
}


def byte_level_bpe_from_gguf(metadata: dict[str, Any]) -> FastTokenizer:
    """A byte-level BPE (``tokenizer.ggml.model == "gpt2"``) from GGUF fields."""
    tokens: list[str] = list(metadata.get("tokenizer.ggml.tokens") or [])
    merges: list[str] = list(metadata.get("tokenizer.ggml.merges") or [])
    if not tokens or not merges:
        raise ModelLoadError("GGUF file carries no BPE vocabulary/merges")
    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    bpe = models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False)  # type: ignore[arg-type]
    tokenizer = FastTokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizer(str(metadata.get("tokenizer.ggml.pre", "default")))
    tokenizer.decoder = decoders.ByteLevel()
    types = list(metadata.get("tokenizer.ggml.token_type") or [])
    special = [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == CONTROL]
    plain = [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types) if k == USER_DEFINED]
    tokenizer.add_special_tokens(special)
    tokenizer.add_tokens(plain)
    return tokenizer


def pre_tokenizer(name: str) -> Any:
    """The splitting llama.cpp's ``name`` stands for; an unknown one is refused rather than guessed,
    since a wrong split tokenizes text differently from the model's training and silently degrades it."""
    build = PRE_TOKENIZERS.get(name)
    if build is None:
        raise ModelLoadError(
            f"GGUF pre-tokenizer {name!r} is not supported (supported: {', '.join(sorted(PRE_TOKENIZERS))})"
        )
    return build()


def hf_converted_from_gguf(path: str) -> FastTokenizer:
    """Other vocabularies (SentencePiece) via transformers' converter, when installed.

    The converter is called directly where transformers exposes it: ``AutoTokenizer`` first builds a
    model config by reading the whole file with ``gguf.GGUFReader`` (20 s of a Gemma 3 load); the
    tokenizer both routes make is the same (``tests/test_gguf_tokenizer_route.py``).
    """
    try:
        from transformers import AutoTokenizer, PreTrainedTokenizerFast
    except ImportError:
        raise ModelLoadError("this GGUF uses a SentencePiece vocabulary; install transformers to convert it") from None
    try:
        from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer
    except ImportError:  # a transformers without the split-out converter: its whole route
        import os

        return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path)).backend_tokenizer
    architecture, vocabulary, settings = get_gguf_tokenizer(path)
    converted, _ = convert_gguf_tokenizer(architecture, vocabulary)
    # The wrapper adds what ``settings`` asks for (BOS) to the converted tokenizer's post-processor.
    return PreTrainedTokenizerFast(tokenizer_object=converted, **settings).backend_tokenizer
