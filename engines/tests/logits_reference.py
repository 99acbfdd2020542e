"""transformers' greedy output as the outside reference, and the float32 logits bound it implies.

Two float32 implementations of the same model never agree bit for bit:
each sums its matmuls in the order its CPU's kernels choose (blocking,
vector width, threads), so each lands a little off the exact function, in
a different direction. How far is a property of the CPU, not of our code:
on the 2-core AMD EPYC our logits sat 5-8e-5 from transformers', on an
Intel Xeon 1.1-1.7e-4. A fixed absolute tolerance therefore guards the
machine as much as the engine.

So each reference carries the same rows computed in float64 (transformers
on a float64 copy of the model): the function both float32 sides
approximate. transformers' own float32 distance from it, measured in the
same run on the same CPU, is the noise floor; our rows must stay within
``NOISE_FACTOR`` times that floor of the float64 rows::

    |ours - exact|  <=  NOISE_FACTOR * max over references |transformers fp32 - exact|

What it guards against: a change of the computed function, however small
its effect on greedy tokens. Measured on SmolLM2-135M (noise floor
~6e-5): RoPE base off by 0.1 % gives 2.5e-3 (40x the floor), RMSNorm
epsilon 1e-6 instead of 1e-5 gives 1.2e-2, one layer's attention output
rounded to float16 1.1e-2, to bfloat16 5e-2, decode positions off by one
3-9 (``test_logits_bound.py`` shows such bugs fail it). Clean runs use
0.8-1.3x the floor, so 4x leaves room for another CPU's kernels and still
fails the smallest of those bugs by 10x.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

NOISE_FACTOR = 4.0
# float32 noise of a 135M model is ~1e-4; a derived bound above this would mean the reference itself ran at a lower
# precision (and would let the smallest planted bug, 2.5e-3, through): test_logits_bound checks it stays below.
MAX_BOUND = 1e-3


@dataclass
class Reference:
    """transformers' greedy continuation of one prompt and the logits of each step ([n, vocab]).

    ``logits`` are what transformers computes in float32; ``exact`` the same
    rows in float64, the value both float32 implementations approximate.
    """

    token_ids: list[int]
    logits: torch.Tensor
    exact: torch.Tensor

    @cached_property
    def noise(self) -> float:
        """transformers' own float32 rounding on these rows: the largest |fp32 - fp64| logit."""
        return float((self.logits.double() - self.exact).abs().max())


def float64_copy(model: Any) -> Any:
    """A float64 copy of a transformers model (the original stays float32)."""
    return copy.deepcopy(model).to(torch.float64).eval()


def exact_rows(exact_model: Any, prompt: Sequence[int], continuation: Sequence[int]) -> torch.Tensor:
    """float64 logits of the rows that predict each continuation token ([len(continuation), vocab])."""
    ids = torch.tensor([list(prompt) + list(continuation[:-1])])
    with torch.inference_mode():
        return exact_model(ids).logits[0, len(prompt) - 1 :].double()


def verified_reference(hf_model: Any, exact_model: Any, prompt: Sequence[int], candidate: Sequence[int]) -> Reference:
    """transformers' greedy continuation of ``prompt``, found by verifying ``candidate`` in one pass.

    Greedy decoding is the sequence with ``G[k] = argmax f(prompt + G[:k])``.
    One forward pass over ``prompt + candidate[:-1]`` gives the argmax of
    every position; where all agree with ``candidate``, it *is* the greedy
    output (induction on ``k``); at the first ``k`` where they differ,
    transformers' token there is known and the reference stops at it.
    """
    ids = torch.tensor([list(prompt) + list(candidate[:-1])])
    with torch.inference_mode():
        logits = hf_model(ids).logits[0, len(prompt) - 1 :].float()
    greedy = logits.argmax(-1).tolist()
    diverged = next((k for k, (a, b) in enumerate(zip(greedy, candidate)) if a != b), None)
    tokens = list(candidate) if diverged is None else list(candidate[:diverged]) + [greedy[diverged]]
    return Reference(tokens, logits[: len(tokens)], exact_rows(exact_model, prompt, tokens))


def logits_bound(references: Sequence[Reference]) -> float:
    """The largest |ours - exact| logit error allowed: ``NOISE_FACTOR`` x transformers' worst in this run."""
    return NOISE_FACTOR * max(ref.noise for ref in references)
