"""Shared helpers of the engine tests: the prompt set, an engine driver, a logits probe.

The driver runs an :class:`LLMEngine` step by step and adds each prompt at
the step its ``arrival`` says, so prompts join a batch that is already
decoding (continuous batching) instead of all starting together.

The probe wraps ``engine.runner.execute`` to see every logits row the engine
samples from. Row ``k`` of a sequence (``k`` = tokens generated so far)
predicts output token ``k``; Hugging Face's ``generate(output_logits=True)``
returns the same rows, so each can be compared wherever our tokens so far
equal the reference. Rows are compared with the reference's float64 rows,
against a bound derived from transformers' own float32 error in the same
run (``logits_reference.py`` says why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from logits_reference import Reference, logits_bound
from margins import record_margin

from sagellm.core.types import SamplingParams
from sagellm.engines import LLMEngine
from sagellm.engines.runtime.input_batch import ChunkWork

NUM_NEW_TOKENS = 64
# The engine the token-exact tests hold to transformers: float32, activations kept float32 for the packed GGUF
# weights (the default int8 activations are llama.cpp's rounding: test_llama_cpp_reference.py holds those).
EXACT_MODEL = {"dtype": "float32", "device": "cpu", "ggml_activations": "float32"}
GREEDY = SamplingParams(temperature=0.0, max_tokens=NUM_NEW_TOKENS, ignore_eos=True)

LIBRARIAN = (
    "You are a meticulous research assistant for a small public library. Answer questions about books, "
    "authors and literary history accurately and concisely. When you are not sure, say so plainly and "
    "suggest where a reader could look for more information. Keep every answer short unless asked for detail, "
    "and never invent titles, dates or quotations."
)

# (kind, content): "chat" is a list of messages rendered with the model's template, "text" is plain text.
PROMPTS: list[tuple[str, Any]] = [
    ("chat", [{"role": "user", "content": "What is the capital of France?"}]),
    (
        "chat",
        [
            {"role": "system", "content": LIBRARIAN},
            {"role": "user", "content": "Who wrote Pride and Prejudice, and when was it published?"},
        ],
    ),
    (
        "chat",
        [
            {"role": "system", "content": LIBRARIAN},
            {"role": "user", "content": "Recommend three classic science fiction novels for a teenager."},
        ],
    ),
    ("text", "The quick brown fox jumps over the lazy dog. Then the dog"),
    (
        "text",
        "In the early nineteenth century, the steam locomotive changed the way people and goods moved across "
        "Britain. Before the railways, a journey from London to Manchester took the better part of two days by "
        "coach; within a generation it took a few hours. Towns that the lines reached grew quickly, while "
        "villages that the engineers passed by often shrank, and",
    ),
    ("text", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("chat", [{"role": "user", "content": "Explain in simple terms why the sky is blue."}]),
    ("text", "Voici une recette simple pour une tarte aux pommes : "),
]
SHARED_PREFIX_PAIR = (1, 2)  # prompts 1 and 2 share the long librarian system prompt


def prompt_token_ids(tokenizer: Any) -> list[list[int]]:
    """Our tokenizer's ids; the same ids go to Hugging Face, so tokenization cannot cause a mismatch."""
    ids = []
    for kind, content in PROMPTS:
        ids.append(tokenizer.encode_chat(content) if kind == "chat" else tokenizer.encode(content))
    return ids


@dataclass
class RunResult:
    token_ids: list[list[int]]
    finish_reasons: list[str | None]
    num_cached_tokens: list[int]
    texts: list[str]
    num_steps: int
    probe: LogitsProbe


@dataclass
class LogitsProbe:
    """Compares every sampled logits row with the reference row of the same step."""

    references: Sequence[Reference] | None
    max_abs_err: dict[int, float] = field(default_factory=dict)  # prompt index -> worst |ours - float64| logit
    rows_checked: int = 0
    split_prompt_chunks: int = 0  # prefill chunks that stopped short of the prompt's end
    works_seen: int = 0

    def attach(self, engine: LLMEngine) -> None:
        original = engine.runner.execute

        def execute(works: Sequence[ChunkWork]) -> tuple[torch.Tensor, list[Any]]:
            logits, seqs = original(works)
            self._observe(works, logits, seqs)
            return logits, seqs

        engine.runner.execute = execute  # type: ignore[method-assign]

    def _observe(self, works: Sequence[ChunkWork], logits: torch.Tensor, seqs: list[Any]) -> None:
        self.works_seen += len(works)
        self.split_prompt_chunks += sum(1 for w in works if w.end < w.seq.num_prompt_tokens)
        if self.references is None:
            return
        for row, seq in zip(logits, seqs):
            index = prompt_index(seq.request_id)
            ref = self.references[index]
            k = seq.num_output_tokens
            if seq.output_token_ids != ref.token_ids[:k] or k >= len(ref.token_ids):
                continue  # already diverged: the token comparison reports it
            err = float((row.cpu().double() - ref.exact[k]).abs().max())
            self.max_abs_err[index] = max(self.max_abs_err.get(index, 0.0), err)
            self.rows_checked += 1


def request_id_of(index: int) -> str:
    return f"prompt-{index}"


def prompt_index(request_id: str) -> int:
    return int(request_id.rsplit("-", 1)[1])


def drive(
    engine: LLMEngine,
    prompts: Sequence[Sequence[int]],
    arrivals: Sequence[int] | None = None,
    sampling: SamplingParams | Sequence[SamplingParams] = GREEDY,
    references: Sequence[Reference] | None = None,
    one_at_a_time: bool = False,
    max_steps: int = 5000,
) -> RunResult:
    """Run prompts to completion; prompt ``i`` is added before step ``arrivals[i]``.

    ``one_at_a_time``: each prompt is added once the previous one finished.
    """
    arrivals = list(arrivals) if arrivals is not None else [0] * len(prompts)
    params = [sampling] * len(prompts) if isinstance(sampling, SamplingParams) else list(sampling)
    probe = LogitsProbe(references)
    original = engine.runner.execute
    probe.attach(engine)
    n = len(prompts)
    tokens: list[list[int]] = [[] for _ in range(n)]
    texts = [""] * n
    reasons: list[str | None] = [None] * n
    cached = [0] * n
    step = 0
    try:
        pending = list(range(n))
        while pending or engine.has_unfinished():
            if one_at_a_time:
                ready = pending[:1] if not engine.has_unfinished() else []
            else:
                ready = [i for i in pending if arrivals[i] <= step]
            for i in ready:
                pending.remove(i)
                engine.add_request(list(prompts[i]), params[i], request_id=request_id_of(i))
            for out in engine.step() if engine.has_unfinished() else []:
                i = prompt_index(out.request_id)
                tokens[i].extend(out.new_token_ids)
                texts[i] += out.new_text
                reasons[i] = out.finish_reason
                cached[i] = max(cached[i], out.num_cached_tokens)
            step += 1
            if step > max_steps:
                raise AssertionError(f"engine did not finish within {max_steps} steps")
    finally:
        engine.runner.execute = original  # type: ignore[method-assign]
    return RunResult(tokens, reasons, cached, texts, step, probe)


class no_eos:
    """Let ``generate`` run past EOS, as ``ignore_eos=True`` does (``min_new_tokens`` would forbid EOS instead)."""

    def __init__(self, model: Any) -> None:
        self.config = model.generation_config
        self.saved: Any = None

    def __enter__(self) -> None:
        self.saved = self.config.eos_token_id
        self.config.eos_token_id = None

    def __exit__(self, *exc: object) -> None:
        self.config.eos_token_id = self.saved


def assert_token_exact(result: RunResult, references: list[Reference]) -> None:
    for i, ref in enumerate(references):
        ours = result.token_ids[i]
        assert result.finish_reasons[i] == "length", f"prompt {i}: finish reason {result.finish_reasons[i]}"
        assert len(ours) == NUM_NEW_TOKENS, f"prompt {i}: {len(ours)} tokens"
        if ours != ref.token_ids:
            first = next((k for k, (a, b) in enumerate(zip(ours, ref.token_ids)) if a != b), len(ref.token_ids) - 1)
            pytest.fail(
                f"prompt {i} diverges from transformers' greedy output at token {first}: "
                f"ours {ours[first : first + 5]}, transformers {ref.token_ids[first : first + 5]}"
            )


def assert_logits_close(result: RunResult, references: list[Reference]) -> None:
    probe = result.probe
    # Every prompt's 64 sampling rows were compared (more when preemption recomputed some).
    assert probe.rows_checked >= len(references) * NUM_NEW_TOKENS
    assert sorted(probe.max_abs_err) == list(range(len(references)))
    worst, bound = max(probe.max_abs_err.values()), logits_bound(references)
    record_margin("max |logit - float64|", worst, bound)
    per_prompt = {i: f"{err:.2e}" for i, err in probe.max_abs_err.items()}
    assert worst <= bound, f"max abs logits error {worst:.2e} > bound {bound:.2e} (per prompt: {per_prompt})"
