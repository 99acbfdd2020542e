"""The shape of a step's cost in its number of rows, measured once per model at start-up.

Speculation's budget (:mod:`draft_budget`) must know what a few more rows
cost before it has run them: on the 4-bit CPU kernel 4 rows cost about as
much as 2 and 5 rows twice as much, a step no online estimate finds without
trying every row count. So the engine times a forward pass of R rows shaped
as a verify (decode queries over cached context, logits at every row) for R
on a grid up to the largest step
speculation could make, through the engine's own runner and kernels: about
4 s for 320 rows on 2 cores, paid only when speculation is configured, once
per loaded model.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable

import torch

from sagellm.core.config import SageLLMConfig
from sagellm.core.types import DraftSequence, Request, SequenceState, blocks_for
from sagellm.engines.engine import warm_up
from sagellm.engines.engine.step_cost import StepCostModel
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.draft_runner import PagedDraftModel
from sagellm.engines.runtime.input_batch import ChunkWork
from sagellm.engines.tokenizer import Tokenizer

REPEATS = 2  # after one untimed pass per shape; the fastest counts (noise only adds); steps correct the level
CONTEXT = 128  # tokens of KV each row attends to (a short chat's worth)
DENSE_UP_TO = 17  # every row count up to here (kernel blocking shows at this scale), then a coarser grid
_calibrations: weakref.WeakKeyDictionary[LlamaForCausalLM, dict[int, float]] = weakref.WeakKeyDictionary()


def row_grid(max_rows: int) -> list[int]:
    """1..17, then about 25 % apart: 31 points for 320 rows."""
    rows = list(range(1, min(max_rows, DENSE_UP_TO) + 1))
    while rows[-1] < max_rows:
        rows.append(min(max_rows, max(rows[-1] + 1, int(rows[-1] * 1.25))))
    return rows


def calibrated_row_costs(
    config: SageLLMConfig, model: LlamaForCausalLM, tokenizer: Tokenizer, max_rows: int
) -> dict[int, float]:
    """Seconds of a forward pass of R rows (fastest of a few), for R on :func:`row_grid` (cached per model)."""
    cached = _calibrations.get(model)
    if cached is not None and max(cached) >= max_rows:
        return cached
    costs = _measure(config, model, tokenizer, row_grid(max_rows))
    _calibrations[model] = costs
    return costs


@torch.inference_mode()
def _measure(config: SageLLMConfig, model: LlamaForCausalLM, tokenizer: Tokenizer, grid: list[int]) -> dict[int, float]:
    from sagellm.engines.engine.builder import assemble_engine  # the builder calls this module

    scratch_config = warm_up.scratch_config(config, blocks_for(CONTEXT + grid[-1], config.kv_pool.block_size))
    scratch = assemble_engine(scratch_config, model, tokenizer)  # a scratch config speculates not
    seq = SequenceState(Request("row-cost", (0,) * CONTEXT))
    scratch.kv.allocate_for(seq, CONTEXT + grid[-1])
    costs = time_verify_shapes(scratch.runner.logits_of_every_token, seq, grid)
    scratch.kv.release(seq)
    return costs


@torch.inference_mode()
def draft_pass_costs(draft: PagedDraftModel, max_rows: int) -> StepCostModel:
    """A draft model's pass cost by rows (one per drafting sequence), for R on :func:`row_grid`.

    The forward passes are timed bare, as the target's are; the target then
    learns its step overhead from every step it runs, but a draft that the
    budget keeps off would never show its own. So one real drafting call is
    timed too (one sequence in step, several passes) and observed as the
    one-row pass: drafts are planned with their Python overhead from the start.
    """
    grid = row_grid(max_rows)
    seq = draft.scratch_sequence(CONTEXT + grid[-1])
    try:
        cost = StepCostModel(time_verify_shapes(draft.logits_of_every_token, seq, grid))
    finally:
        draft.release(seq.request_id)
    cost.observe(1, _greedy_pass_seconds(draft))
    return cost


def _greedy_pass_seconds(draft: PagedDraftModel, passes: int = 8) -> float:
    """Seconds per pass of ``greedy`` for one sequence whose KV the draft already holds (fastest of two)."""
    context = [DraftSequence("draft-timing", (0,) * CONTEXT)]
    draft.greedy(context, passes)  # the context's catch-up, and the shapes' first use
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        draft.greedy(context, passes)  # the same tokens again: only the last token catches up
        samples.append((time.perf_counter() - started) / passes)
    draft.release("draft-timing")
    return min(samples)


def time_verify_shapes(
    run: Callable[[list[ChunkWork]], object], seq: SequenceState, grid: list[int]
) -> dict[int, float]:
    """Seconds ``run`` takes for a pass of R decode rows over ``CONTEXT`` tokens of ``seq``, for R on ``grid``.

    ``seq`` needs KV blocks for ``CONTEXT + max(grid)`` tokens; its first
    ``CONTEXT`` are run first, as the context the rows attend to.
    """
    run([ChunkWork(seq, 0, CONTEXT)])
    costs: dict[int, float] = {}
    for rows in grid:
        work = [ChunkWork(seq, CONTEXT - 1, 1, drafts=(0,) * (rows - 1))]  # rows attend as decode queries
        run(work)  # first use of a shape allocates
        samples = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            run(work)
            samples.append(time.perf_counter() - started)
        costs[rows] = min(samples)
    return costs
