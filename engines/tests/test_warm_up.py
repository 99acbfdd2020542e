"""The engine is warm before it is handed out: kernels built, one step run, on a scratch engine."""

from __future__ import annotations

from sagellm.core.config import SageLLMConfig
from sagellm.engines import LLM
from sagellm.engines.engine.warm_up import SCRATCH_BLOCKS, scratch_config, warm_up


def test_warm_up_leaves_the_real_engine_untouched(llm: LLM) -> None:
    engine = llm.engine
    before = engine.metrics.counter("requests_total", "requests received").value
    queried = engine.kv.num_queried_tokens
    seconds = warm_up(llm.config, engine.runner.model, engine.tokenizer, announce=False)
    assert seconds > 0
    assert engine.metrics.counter("requests_total", "requests received").value == before
    assert engine.kv.num_queried_tokens == queried
    assert not engine.has_unfinished()


def test_scratch_pool_is_small_and_on_the_device_only() -> None:
    config = SageLLMConfig.model_validate(
        {"kv_pool": {"tiers": "device,host,disk", "memory_gb": 4.0, "options": {"disk_dir": "/x", "keep": 1}}}
    )
    scratch = scratch_config(config)
    assert scratch.kv_pool.num_blocks == SCRATCH_BLOCKS
    assert scratch.kv_pool.tier_names == ("device",)
    assert scratch.kv_pool.options == {"keep": 1}
    assert config.kv_pool.tiers == "device,host,disk"  # the caller's config is not changed
