"""A pool too small for all requests: preemption (recompute) and nothing lost.

Eight prompts arrive at once into a pool that holds the largest request
alone plus a few blocks, so sequences are preempted as their decodes grow,
requeued by arrival and recomputed (from the prefix cache, where it still
holds their blocks). Every request must still finish with exactly
transformers' greedy tokens, and every block must come back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from engines_helpers import NUM_NEW_TOKENS, Reference, assert_logits_close, assert_token_exact, drive

from sagellm.engines import LLMEngine

pytestmark = pytest.mark.slow

BLOCK_SIZE = 16


def blocks_needed(prompt: list[int]) -> int:
    return -(-(len(prompt) + NUM_NEW_TOKENS) // BLOCK_SIZE)


@pytest.mark.parametrize("prefix_cache", [True, False], ids=["prefix-on", "prefix-off"])
def test_tiny_pool_preempts_and_every_request_finishes_token_exact(
    prefix_cache: bool,
    make_engine: Callable[..., LLMEngine],
    prompts: list[list[int]],
    hf_reference: list[Reference],
) -> None:
    largest = max(blocks_needed(p) for p in prompts)
    num_blocks = largest + 4  # the largest request fits alone; the eight together need far more
    assert sum(blocks_needed(p) for p in prompts) > 4 * num_blocks
    engine = make_engine(
        kv_pool={"num_blocks": num_blocks, "block_size": BLOCK_SIZE}, prefix_cache={"enabled": prefix_cache}
    )
    result = drive(engine, prompts, references=hf_reference)

    assert engine.metrics.counter("preemptions_total").value > 0
    assert_token_exact(result, hf_reference)
    assert_logits_close(result, hf_reference)
    assert engine.metrics.counter("requests_finished_total").value == len(prompts)
    assert not engine.has_unfinished() and engine.num_running == 0 and engine.num_waiting == 0
    assert engine.kv.num_free_blocks == num_blocks  # every block free or evictable again
    if not prefix_cache:
        assert engine.kv.pool.num_free_blocks == num_blocks
