"""Rejection sampling emits tokens distributed exactly as the target's own samples (chi-square, 20,000 draws)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
import torch

from sagellm.speculative_decoding import greedy_accepted, rejection_sample

VOCAB = 6
SAMPLES = 20_000
Z_1E4 = 3.719  # one-sided normal quantile for p = 1e-4


def chi_square_limit(dof: int) -> float:
    """The chi-square value exceeded with probability 1e-4 (Wilson-Hilferty; within 1 % for dof >= 3)."""
    return float(dof * (1 - 2 / (9 * dof) + Z_1E4 * math.sqrt(2 / (9 * dof))) ** 3)


def chi_square(counts: Counter[int], probs: torch.Tensor, total: int) -> float:
    return sum((counts.get(i, 0) - total * float(p)) ** 2 / (total * float(p)) for i, p in enumerate(probs))


def distributions(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.softmax(torch.randn(3, VOCAB, generator=generator) * 1.5, dim=-1)
    draft = torch.softmax(torch.randn(2, VOCAB, generator=generator) * 1.5, dim=-1)
    return target, draft


Sampler = Callable[[Sequence[int], torch.Tensor, "torch.Tensor | None", torch.Generator], list[int]]


def first_and_second(sampler: Sampler, point_mass: bool) -> tuple[Counter[int], Counter[int], int]:
    """Emitted first tokens; second tokens where the first draft was kept (then the target's row 1 applies)."""
    target, draft = distributions(0)
    generator = torch.Generator().manual_seed(1)
    first: Counter[int] = Counter()
    second: Counter[int] = Counter()
    for _ in range(SAMPLES):
        if point_mass:
            drafts = [2, 4]  # an n-gram guess: fixed tokens
            emitted = sampler(drafts, target, None, generator)
        else:
            drafts = [int(torch.multinomial(draft[i], 1, generator=generator)) for i in range(2)]
            emitted = sampler(drafts, target, draft, generator)
        first[emitted[0]] += 1
        if emitted[0] == drafts[0] and len(emitted) > 1:
            second[emitted[1]] += 1
    return first, second, sum(second.values())


@pytest.mark.parametrize("point_mass", [False, True], ids=["draft-model", "n-gram"])
def test_emitted_tokens_follow_the_target_distribution(point_mass: bool) -> None:
    target, _ = distributions(0)
    first, second, kept = first_and_second(rejection_sample, point_mass)
    limit = chi_square_limit(VOCAB - 1)
    assert chi_square(first, target[0], SAMPLES) < limit
    assert kept > 1000 and chi_square(second, target[1], kept) < limit


def test_a_sampler_that_keeps_every_draft_fails_the_same_check() -> None:
    """The check can fail: keeping drafts unconditionally emits the draft's distribution instead."""

    def always_keep(
        drafts: Sequence[int], target: torch.Tensor, draft: torch.Tensor | None, g: torch.Generator
    ) -> list[int]:
        return list(drafts) + [int(torch.multinomial(target[-1], 1, generator=g))]

    target, _ = distributions(0)
    first, _, _ = first_and_second(always_keep, point_mass=False)
    assert chi_square(first, target[0], SAMPLES) > chi_square_limit(VOCAB - 1)


def test_a_certain_target_keeps_its_drafts_and_rejects_others() -> None:
    target = torch.zeros(3, VOCAB)
    target[0, 2] = target[1, 4] = target[2, 1] = 1.0
    assert rejection_sample([2, 4], target) == [2, 4, 1]
    assert rejection_sample([2, 3], target) == [2, 4]
    with pytest.raises(ValueError, match="rows"):
        rejection_sample([2], target)


def test_greedy_acceptance_counts_the_leading_agreement() -> None:
    assert greedy_accepted([1, 2, 3], [1, 2, 5, 6]) == 2
    assert greedy_accepted([], [3]) == 0
