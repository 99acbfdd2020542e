"""Run one short request before serving, so that no real request pays first-use costs.

First use compiles the fused C++ kernels (~30 s on a fresh machine, then
cached), creates oneDNN primitives and touches fresh allocator pages: paid by
the first request, that was a 30 s TTFT on a fresh machine. ``build_engine``
pays it instead, so ``sagellm serve`` answers ``/health`` with 200 and
``sagellm generate`` prints only once the engine is warm. The request runs on
a scratch engine around the same model (its own small pool, prefix cache and
metrics), which leaves the real engine's counters and cache untouched.
"""

from __future__ import annotations

import logging
import sys
import time

from sagellm.core.config import SageLLMConfig
from sagellm.core.registry import NO_IMPLEMENTATION
from sagellm.core.types import SamplingParams
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

WARM_UP_TEXT = "Warm up the engine."
WARM_UP_NEW_TOKENS = 2  # a prefill step, then a decode step
SCRATCH_BLOCKS = 8
TIER_OPTIONS = ("host_blocks", "disk_blocks", "disk_dir")  # lower tiers stay out of the scratch pool


def warm_up(config: SageLLMConfig, model: LlamaForCausalLM, tokenizer: Tokenizer, announce: bool) -> float:
    """Prefill and decode one short prompt through every stage of a scratch engine; returns seconds taken."""
    from sagellm.engines.engine.builder import assemble_engine  # the builder calls this module

    if announce:
        print("sagellm: warming up (one prefill and one decode step) ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    engine = assemble_engine(scratch_config(config), model, tokenizer)
    prompt = tokenizer.encode(WARM_UP_TEXT)[: config.kv_pool.block_size * (SCRATCH_BLOCKS // 2)]
    engine.add_request(prompt, SamplingParams(max_tokens=WARM_UP_NEW_TOKENS, temperature=0.0, ignore_eos=True))
    while engine.has_unfinished():
        engine.step()
    seconds = time.perf_counter() - started
    logger.info("warm-up step took %.2f s", seconds)
    return seconds


def scratch_config(config: SageLLMConfig, num_blocks: int = SCRATCH_BLOCKS) -> SageLLMConfig:
    """``config`` with a pool of a few device blocks: the same kernels and dtypes, little memory.

    Speculation is off there: its start-up work (timing passes, choosing
    layers, loading a draft model) belongs to the engine that serves.
    """
    pool = config.kv_pool
    options = {key: value for key, value in pool.options.items() if key not in TIER_OPTIONS}
    scratch_pool = pool.model_copy(update={"num_blocks": num_blocks, "tiers": "device", "options": options})
    no_speculation = config.speculative_decoding.model_copy(update={"implementation": NO_IMPLEMENTATION})
    return config.model_copy(update={"kv_pool": scratch_pool, "speculative_decoding": no_speculation})
