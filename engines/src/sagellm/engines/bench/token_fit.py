"""Prompts of exact token lengths: real text cut or repeated, synthetic ids, trace blocks.

A benchmark shape such as "512 -> 128" is a promise about token counts, so
prompts are assembled from token ids, not from strings: ``prefix + body +
suffix`` where the body (real text, repeated if too short) is cut so the
total is exactly the target. Concatenating id sequences keeps lengths
exact; the text they decode to is the original text with, at worst, one
odd merge at each seam.

    target = 512
    |prefix (instruction)|body (document, cut to fit)............|suffix ("Summary:")|
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sagellm.engines.bench.request import Message
from sagellm.engines.bench.tokenizer_source import TokenizerLike

# Random ids stay clear of both ends of the vocabulary, where tokenizers keep
# their special and reserved tokens (SmolLM2: 0-16; Llama 3: the top 256).
VOCAB_MARGIN = 300


def repeat_to(body: Sequence[int], length: int) -> list[int]:
    """``body`` repeated and cut to exactly ``length`` ids."""
    if length <= 0:
        return []
    if not body:
        raise ValueError("cannot fill a prompt from an empty body")
    reps = -(-length // len(body))
    return (list(body) * reps)[:length]


def fit_tokens(target: int, body: Sequence[int], prefix: Sequence[int] = (), suffix: Sequence[int] = ()) -> list[int]:
    """``prefix + body + suffix`` with the body cut or repeated to make exactly ``target`` ids.

    When prefix and suffix alone are longer than the target, the end is cut
    (the instruction survives, the tail of the question does not).
    """
    room = target - len(prefix) - len(suffix)
    if room < 0:
        return (list(prefix) + list(suffix))[:target]
    return list(prefix) + repeat_to(body, room) + list(suffix)


def fit_chat_turn(tokenizer: TokenizerLike, question: str, filler: Sequence[int], target: int) -> tuple[Message, ...]:
    """One user message whose chat-templated prompt is ``target`` tokens (within a token or two).

    The template's own tokens are outside our control, so the filler length
    is corrected a few times against the real templated count; the
    question itself is cut when it alone is too long.
    """

    def templated(content: str) -> int:
        return len(tokenizer.encode_chat([{"role": "user", "content": content}]))

    overflow = templated(question) - target
    if overflow > 0:
        ids = tokenizer.encode(question, add_special_tokens=False)
        question = tokenizer.decode(ids[: max(1, len(ids) - overflow)])
    content = question
    room = target - templated(question)
    for _ in range(4):
        if room <= 0:
            break
        content = tokenizer.decode(repeat_to(filler, room)) + "\n\n" + question
        miss = target - templated(content)
        if miss == 0:
            break
        room += miss
    return ({"role": "user", "content": content},)


def random_token_ids(rng: np.random.Generator, length: int, vocab_size: int) -> list[int]:
    """Uniform ids from the ordinary part of the vocabulary (synthetic prompts, vLLM's "random" data set)."""
    low, high = _ordinary_range(vocab_size)
    return [int(t) for t in rng.integers(low, high, size=length)]


def block_token_ids(hash_id: int, block_tokens: int, vocab_size: int, seed: int = 0) -> list[int]:
    """The token block a trace's hash id stands for: same id, same block, in every request and run.

    Seeding a generator with ``(seed, hash_id)`` makes the mapping a pure
    function, so two requests listing the same hash id share that block --
    the prefix the trace says they share -- without keeping a table.
    """
    if hash_id < 0:
        raise ValueError(f"hash ids are non-negative; got {hash_id}")
    rng = np.random.default_rng([seed, hash_id])
    return random_token_ids(rng, block_tokens, vocab_size)


def _ordinary_range(vocab_size: int) -> tuple[int, int]:
    if vocab_size > 4 * VOCAB_MARGIN:
        return VOCAB_MARGIN, vocab_size - VOCAB_MARGIN
    return 0, vocab_size
