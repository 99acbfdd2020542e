"""Every installed policy choice keeps the output token-exact.

Eviction policies, scheduling policies and prefix indexes decide *which*
KV survives and *when* each sequence runs, never what it computes. So with
any of them, in a pool small enough to force evictions and preemptions,
every request must still produce transformers' greedy tokens and every
block must come back. The parameters come from the installed entry points,
so a newly installed policy is tested without editing this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from engines_helpers import NUM_NEW_TOKENS, Reference, assert_token_exact, drive

from sagellm.core import registry
from sagellm.engines import LLMEngine

pytestmark = pytest.mark.slow

BLOCK_SIZE = 16
ARRIVALS = [0, 0, 1, 2, 3, 5, 8, 13]  # prompts join while others decode


def _installed(kind: str) -> list[str]:
    return sorted(registry.available(kind))


def _pool_blocks(prompts: list[list[int]]) -> int:
    largest = max(-(-(len(p) + NUM_NEW_TOKENS) // BLOCK_SIZE) for p in prompts)
    return largest + 8  # the largest fits with room to spare; all eight together do not


def _run(
    make_engine: Callable[..., LLMEngine], prompts: list[list[int]], refs: list[Reference], **sections: Any
) -> LLMEngine:
    num_blocks = _pool_blocks(prompts)
    engine = make_engine(kv_pool={"num_blocks": num_blocks, "block_size": BLOCK_SIZE}, **sections)
    result = drive(engine, prompts, ARRIVALS, references=refs)
    assert_token_exact(result, refs)
    assert not engine.has_unfinished()
    assert engine.kv.num_free_blocks == num_blocks  # every block free or evictable again
    return engine


@pytest.mark.parametrize("policy", _installed("eviction_policy"))
def test_every_eviction_policy(
    policy: str, make_engine: Callable[..., LLMEngine], prompts: list[list[int]], hf_reference: list[Reference]
) -> None:
    engine = _run(make_engine, prompts, hf_reference, eviction_policy={"implementation": policy})
    assert engine.kv.num_evictions > 0, "the pool must be small enough for the policy to matter"


@pytest.mark.parametrize("predictor", _installed("lifetime_predictor"))
def test_learned_eviction_with_every_lifetime_predictor(
    predictor: str, make_engine: Callable[..., LLMEngine], prompts: list[list[int]], hf_reference: list[Reference]
) -> None:
    if "learned" not in _installed("eviction_policy"):
        pytest.skip("no learned eviction policy installed")
    sections = {"eviction_policy": {"implementation": "learned"}, "lifetime_predictor": {"implementation": predictor}}
    engine = _run(make_engine, prompts, hf_reference, **sections)
    assert engine.kv.num_evictions > 0


@pytest.mark.parametrize("scheduler", _installed("ir_builder"))
def test_every_scheduler(
    scheduler: str, make_engine: Callable[..., LLMEngine], prompts: list[list[int]], hf_reference: list[Reference]
) -> None:
    sections = {"scheduler_ir": {"implementation": scheduler, "max_num_batched_tokens": 64}}
    engine = _run(make_engine, prompts, hf_reference, **sections)
    assert engine.metrics.counter("preemptions_total").value > 0


@pytest.mark.parametrize("index", _installed("prefix_index"))
def test_every_prefix_index(
    index: str, make_engine: Callable[..., LLMEngine], prompts: list[list[int]], hf_reference: list[Reference]
) -> None:
    engine = _run(make_engine, prompts, hf_reference, prefix_cache={"implementation": index})
    assert engine.kv.hit_rate() > 0  # the two prompts sharing a prefix met in the cache
