"""Which drafts a target pass keeps: greedy agreement, or exact rejection sampling at temperature > 0.

Rejection sampling (Leviathan et al. 2023; Chen et al. 2023) keeps draft
``x`` with probability ``min(1, p(x) / q(x))`` and otherwise samples from
the normalised ``max(p - q, 0)``, so the tokens it emits are distributed
exactly as sampling the target alone would be. An n-gram draft is a point
mass (``q(x) = 1``): it is kept with probability ``p(x)`` and a rejection
samples from ``p`` with ``x`` removed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def greedy_accepted(draft_token_ids: Sequence[int], target_token_ids: Sequence[int]) -> int:
    """Leading drafts equal to the target's greedy choice at their position."""
    accepted = 0
    for draft, target in zip(draft_token_ids, target_token_ids):
        if draft != target:
            break
        accepted += 1
    return accepted


def rejection_sample(
    draft_token_ids: Sequence[int],
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """The tokens a sequence grows by: kept drafts, then one token of the target's own.

    ``target_probs`` is ``[len(draft) + 1, vocab]``: the target's distribution
    at each draft position and after the last draft. ``draft_probs``
    (``[len(draft), vocab]``) is the proposer's; None means point masses.
    """
    if target_probs.shape[0] != len(draft_token_ids) + 1:
        raise ValueError(f"target_probs has {target_probs.shape[0]} rows for {len(draft_token_ids)} drafts (+1)")
    emitted: list[int] = []
    for position, token in enumerate(draft_token_ids):
        p = target_probs[position].float()
        q = _draft_row(draft_probs, position, token, p)
        keep = min(1.0, float(p[token]) / max(float(q[token]), 1e-30))
        if float(torch.rand((), generator=generator)) < keep:
            emitted.append(token)
            continue
        emitted.append(_sample(torch.clamp(p - q, min=0.0), fallback=p, generator=generator))
        return emitted
    emitted.append(_sample(target_probs[-1].float(), fallback=None, generator=generator))
    return emitted


def _draft_row(draft_probs: torch.Tensor | None, position: int, token: int, like: torch.Tensor) -> torch.Tensor:
    if draft_probs is not None:
        return draft_probs[position].float()
    point = torch.zeros_like(like)
    point[token] = 1.0
    return point


def _sample(weights: torch.Tensor, fallback: torch.Tensor | None, generator: torch.Generator | None) -> int:
    """One index drawn in proportion to ``weights`` (``fallback`` where they are all zero: p == q)."""
    if float(weights.sum()) <= 0.0 and fallback is not None:
        weights = fallback
    return int(torch.multinomial(weights, 1, generator=generator))
