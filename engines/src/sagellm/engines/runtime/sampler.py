"""Pick the next token of each sampled sequence from its logits.

Penalties follow the conventions users know: ``repetition_penalty`` as in
transformers (over prompt and output), presence/frequency penalties as in
the OpenAI API (over output only). Greedy rows skip all randomness; a
sampled token is the inverse CDF of its distribution at a uniform draw,
which for a seeded request is fixed by the seed and the token's position,
so a seed reproduces its output no matter what else shares the batch or
how many drafts speculation verified.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sagellm.core.types import SamplingParams, SequenceState


@dataclass(frozen=True, slots=True)
class SampledToken:
    token_id: int
    logprob: float | None = None
    top_logprobs: tuple[tuple[int, float], ...] = ()


class Sampler:
    def sample(
        self, logits: torch.Tensor, seqs: Sequence[SequenceState], masks: Sequence[torch.Tensor | None] = ()
    ) -> list[SampledToken]:
        """``logits`` is float32 [S, vocab], one row per sequence.

        ``masks`` (empty, or one per row): a grammar's additive mask (0 where
        a token is allowed, -inf elsewhere; None: unconstrained), added
        before penalties and filtering, so greedy, sampled and logprobs all
        see only the allowed tokens. ``logits`` itself is left unchanged.
        """
        masks = list(masks) or [None] * len(seqs)
        if all(_plain_greedy(seq.request.sampling) for seq in seqs):
            # One argmax over the batch: per-row calls cost ~3 ms a step at 64 sequences.
            token_ids = logits.argmax(dim=-1)
            masked = [i for i, mask in enumerate(masks) if mask is not None]
            if masked:
                rows = logits[masked] + torch.stack([mask for mask in masks if mask is not None])
                token_ids[masked] = rows.argmax(dim=-1)
            return [SampledToken(token_id) for token_id in token_ids.tolist()]
        tokens: list[SampledToken] = []
        for row, seq, mask in zip(logits, seqs, masks):
            params = seq.request.sampling
            scores = self._penalised(row if mask is None else row + mask, seq, params)
            token = _choose(scores, params, seq.num_tokens)
            tokens.append(_with_logprobs(token, scores, params))
        return tokens

    def verify(
        self,
        logits: torch.Tensor,
        seq: SequenceState,
        drafts: Sequence[int],
        count_agreeing: Callable[[Sequence[int], Sequence[int]], int],
    ) -> list[SampledToken]:
        """What a speculating sequence grows by: its kept drafts, then one token of the target's own.

        ``logits`` (float32 ``[len(drafts) + 1, vocab]``) are the target's at
        the last token and at each draft. Plain greedy keeps the drafts the
        decoder's ``count_agreeing`` accepts against the argmax of each row.
        Otherwise each position's token is chosen exactly as ``sample``
        would choose it there (penalties see the kept drafts; a seeded
        request uses that position's uniform) and drafts are kept while
        they equal it. For a deterministic proposer this is rejection
        sampling: a draft ``x`` survives with probability ``p(x)`` and a
        rejection yields ``p`` renormalised without ``x``. So the output is
        distributed exactly as without speculation, and a seeded request's
        output is the same token for token, whatever was drafted.
        """
        params = seq.request.sampling
        if _plain_greedy(params):
            targets = logits.argmax(dim=-1).tolist()
            kept = count_agreeing(drafts, targets[: len(drafts)])
            return [SampledToken(token_id) for token_id in targets[: kept + 1]]
        emitted: list[SampledToken] = []
        for offset, row in enumerate(logits):
            scores = self._penalised(row, seq, params, drafts[:offset])
            token = _choose(scores, params, seq.num_tokens + offset)
            emitted.append(_with_logprobs(token, scores, params))
            if offset == len(drafts) or token != drafts[offset]:
                break
        return emitted

    def _penalised(
        self, row: torch.Tensor, seq: SequenceState, params: SamplingParams, extra: Sequence[int] = ()
    ) -> torch.Tensor:
        """``row`` with the penalties applied; ``extra``: tokens taken as already appended (kept drafts)."""
        if params.repetition_penalty != 1.0:
            seen = torch.tensor(sorted(set(seq.token_ids) | set(extra)), dtype=torch.long, device=row.device)
            picked = row.index_select(0, seen)
            picked = torch.where(picked < 0, picked * params.repetition_penalty, picked / params.repetition_penalty)
            row = row.index_copy(0, seen, picked)
        if params.presence_penalty or params.frequency_penalty:
            output = [*seq.output_token_ids, *extra]
            if output:
                ids, counts = torch.tensor(output, device=row.device).unique(return_counts=True)
                delta = params.frequency_penalty * counts.float() + params.presence_penalty
                row = row.index_add(0, ids, -delta)
        return row


def _choose(scores: torch.Tensor, params: SamplingParams, position: int) -> int:
    """The token at ``position`` of the sequence: argmax, or the inverse CDF of the filtered distribution."""
    if params.is_greedy:
        return int(scores.argmax())
    probs = _filtered_probs(scores / params.temperature, params)
    cdf = probs.cumsum(dim=-1)
    target = _uniform(params.seed, position) * float(cdf[-1])
    return min(int(torch.searchsorted(cdf, torch.tensor(target), right=True)), probs.shape[-1] - 1)


def _uniform(seed: int | None, position: int) -> float:
    """A uniform draw in [0, 1): from torch's global generator, or fixed by (seed, position).

    Tying a seeded draw to the token's position, not to a per-request
    stream, makes a seed reproduce its output whatever else changes how
    many draws a step makes (the batch, speculation's drafts).
    """
    if seed is None:
        return float(torch.rand(()))
    return random.Random(f"{seed}:{position}").random()


def _plain_greedy(params: SamplingParams) -> bool:
    """Greedy with nothing that needs the row on its own (penalties, logprobs)."""
    return (
        params.is_greedy
        and params.repetition_penalty == 1.0
        and not params.presence_penalty
        and not params.frequency_penalty
        and params.logprobs is None
    )


def _filtered_probs(scores: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Softmax after top-k, top-p (nucleus) and min-p filtering."""
    if params.top_k and params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        cumulative = sorted_probs.cumsum(-1)
        drop = cumulative - sorted_probs > params.top_p  # keep the token that crosses top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    if params.min_p > 0.0:
        probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
    return probs / probs.sum()


def _with_logprobs(token_id: int, scores: torch.Tensor, params: SamplingParams) -> SampledToken:
    if params.logprobs is None:
        return SampledToken(token_id)
    logprobs = torch.log_softmax(scores, dim=-1)
    top: tuple[tuple[int, float], ...] = ()
    if params.logprobs > 0:
        values, ids = torch.topk(logprobs, params.logprobs)
        top = tuple((int(i), float(v)) for i, v in zip(ids, values))
    return SampledToken(token_id, float(logprobs[token_id]), top)
