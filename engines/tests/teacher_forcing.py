"""Teacher forcing through the serving path, so two engines that round differently compare row by row.

A free-running greedy comparison of two engines that round differently
(bf16 kernels, int8 caches) parts for good at the first near-tie, and its
agreement share then says where that tie fell, which moves with the CPU's
kernels: the same fused kernels agreed with the unfused engine on 85 % of
tokens on an AMD EPYC and 64 % on an Intel Xeon. Forcing both engines
along the same continuation keeps their inputs equal at every step, so
every row is compared: top-1 agreement and mean KL divergence measure the
kernels, not the trajectory.

The engine runs as served -- continuous batching, chunked prefill, decode
kernels, prefix cache -- only the sampler's choice is replaced by the
continuation's next token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from engines_helpers import RunResult, drive, prompt_index

from sagellm.core.types import SamplingParams, SequenceState
from sagellm.engines import LLMEngine
from sagellm.engines.runtime.sampler import SampledToken


@dataclass(frozen=True, slots=True)
class ForcedRun:
    logits: list[torch.Tensor]  # per prompt: float32 rows [len(continuation), vocab] predicting each forced token
    run: RunResult  # what the engine did on the way (cached tokens, split prefill chunks, steps)


def teacher_forced_logits(
    engine: LLMEngine,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    arrivals: Sequence[int] | None = None,
) -> ForcedRun:
    """Serve ``prompts`` (prompt ``i`` joins at step ``arrivals[i]``), each forced along its continuation."""
    rows: list[dict[int, torch.Tensor]] = [{} for _ in prompts]

    def forced(logits: torch.Tensor, seqs: Sequence[SequenceState], masks: object = ()) -> list[SampledToken]:
        chosen = []
        for row, seq in zip(logits, seqs):
            index, k = prompt_index(seq.request_id), seq.num_output_tokens
            rows[index][k] = row.float().cpu()  # a recomputed row (preemption) replaces the first
            chosen.append(SampledToken(continuations[index][k]))
        return chosen

    sampling = [SamplingParams(temperature=0.0, max_tokens=len(c), ignore_eos=True) for c in continuations]
    original = engine.sampler.sample
    engine.sampler.sample = forced  # type: ignore[method-assign]
    try:
        result = drive(engine, prompts, arrivals, sampling=sampling)
    finally:
        engine.sampler.sample = original  # type: ignore[method-assign]
    assert result.token_ids == [list(c) for c in continuations]
    return ForcedRun([torch.stack([found[k] for k in range(len(c))]) for found, c in zip(rows, continuations)], result)


@dataclass(frozen=True, slots=True)
class Agreement:
    """How closely one set of logits rows follows a reference set over the same tokens."""

    top1: float  # share of rows whose argmax is the reference's
    mean_kl: float  # KL(reference || ours) in nats, averaged over rows
    max_abs: float  # largest |logit difference|
    rows: int


def agreement(ours: Sequence[torch.Tensor], reference: Sequence[torch.Tensor]) -> Agreement:
    mine, theirs = torch.cat(list(ours)).float(), torch.cat(list(reference)).float()
    assert mine.shape == theirs.shape
    kl = F.kl_div(mine.log_softmax(-1), theirs.log_softmax(-1), log_target=True, reduction="sum")
    rows = mine.shape[0]
    return Agreement(
        top1=float((mine.argmax(-1) == theirs.argmax(-1)).float().mean()),
        mean_kl=float(kl) / rows,
        max_abs=float((mine - theirs).abs().max()),
        rows=rows,
    )
