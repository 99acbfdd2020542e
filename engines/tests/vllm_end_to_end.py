"""vLLM itself with the sageLLM connector, end to end (run as a script: ``python vllm_end_to_end.py MODEL_DIR``).

The connector is named only by ``kv_connector`` ("SageLLMConnector"), so
vLLM finds it through the plugin's ``vllm.general_plugins`` entry point. A
prompt of several blocks is generated greedily; vLLM's own prefix cache is
reset, so the same prompt again can only hit the sageLLM tiers (a host tier
of 2 blocks: the rest went to disk); then once more with every loaded block
zeroed, to show the loaded KV is what attention reads. Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # scheduler and worker in this process: inspectable
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

import torch  # noqa: E402
from vllm import LLM, SamplingParams  # noqa: E402
from vllm.config import KVTransferConfig  # noqa: E402

from sagellm.engines.vllm_plugin import worker_side  # noqa: E402


def main(model: str) -> None:
    kv_pool = {"tiers": "device,host,disk", "num_blocks": 32, "host_num_blocks": 2, "disk_num_blocks": 64}
    extra = {"sagellm_config": {"kv_pool": kv_pool | {"disk_dir": tempfile.mkdtemp()}}}
    transfer = KVTransferConfig(kv_connector="SageLLMConnector", kv_role="kv_both", kv_connector_extra_config=extra)
    llm = LLM(model=model, dtype="bfloat16", max_model_len=2048, enforce_eager=True, kv_transfer_config=transfer)
    connector = llm.llm_engine.engine_core.engine_core.scheduler.connector
    side = connector._scheduler
    words = " ".join(f"item{i} is {i * 7 % 13}" for i in range(140))
    prompt = f"Here is a list. {words}. Repeat the list from item5 on:"
    params = SamplingParams(max_tokens=48, temperature=0)
    first = llm.generate([prompt], params)[0]
    saved = side.stats.num_saved_blocks
    tiers = {tier.value: side.directory.num_entries(tier) for tier in side.directory.tiers}
    llm.reset_prefix_cache()
    again = llm.generate([prompt], params)[0]
    loaded = side.stats.num_loaded_blocks
    llm.reset_prefix_cache()
    real_rows = worker_side.pool_rows
    worker_side.pool_rows = lambda key, value, slots: torch.zeros_like(real_rows(key, value, slots))
    zeroed = llm.generate([prompt], params)[0]
    worker_side.pool_rows = real_rows
    print(
        json.dumps(
            {
                "connector": f"{type(connector).__module__}.{type(connector).__name__}",
                "block_size": connector._shape.block_size,
                "prompt_tokens": len(first.prompt_token_ids),
                "saved_blocks": saved,
                "tiers": tiers,
                "loaded_blocks": loaded,
                "hit_tokens": side.stats.num_hit_tokens,
                "same_text": first.outputs[0].text == again.outputs[0].text,
                "zeroed_differs": zeroed.outputs[0].text != first.outputs[0].text,
                "text": first.outputs[0].text,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
