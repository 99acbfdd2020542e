"""A scripted vLLM scheduler/worker exchange with the real connector and vLLM's own types (needs vLLM).

vLLM's ``Request``, ``KVCacheBlocks``, ``SchedulerOutput`` / ``NewRequestData``,
``KVTransferConfig`` and ``KVCacheConfig`` are real; the config around
``kv_transfer_config`` is a namespace, since a full ``VllmConfig`` would
resolve a model. The calls come in the order vLLM's scheduler and model
runner make them, and the metadata crosses a pickle as between processes.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from vllm.config import KVTransferConfig
from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorRole
from vllm.sampling_params import SamplingParams
from vllm.v1.core.kv_cache_manager import KVCacheBlocks
from vllm.v1.core.kv_cache_utils import KVCacheBlock
from vllm.v1.core.sched.output import NewRequestData, SchedulerOutput
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.request import Request
from vllm_stand_ins import BLOCK_SIZE, HEAD_DIM, HEADS, NUM_BLOCKS, blocks_of, stand_in_caches, write_random

from sagellm.engines.vllm_plugin import CONNECTOR_MODULE, CONNECTOR_NAME
from sagellm.engines.vllm_plugin.connector import SageLLMConnector

PROMPT = list(range(100, 118))


def connectors(tmp_path: Path, caches: dict[str, torch.Tensor]) -> tuple[SageLLMConnector, SageLLMConnector]:
    """The scheduler's connector and one worker's, built as vLLM's factory builds them."""
    kv_pool = {"tiers": "device,host,disk", "num_blocks": 8, "host_num_blocks": 2, "disk_num_blocks": 8}
    extra = {"sagellm_config": {"kv_pool": kv_pool | {"disk_dir": str(tmp_path)}}}  # host 2: saves reach disk
    transfer = KVTransferConfig(
        kv_connector=CONNECTOR_NAME,
        kv_connector_module_path=CONNECTOR_MODULE,
        kv_role="kv_both",
        kv_connector_extra_config=extra,
    )
    vllm_config: Any = SimpleNamespace(kv_transfer_config=transfer, cache_config=SimpleNamespace(block_size=BLOCK_SIZE))
    spec = FullAttentionSpec(block_size=BLOCK_SIZE, num_kv_heads=HEADS, head_size=HEAD_DIM, dtype=torch.float32)
    kv_cache_config = KVCacheConfig(
        num_blocks=NUM_BLOCKS, kv_cache_tensors=[], kv_cache_groups=[KVCacheGroupSpec(list(caches), spec)]
    )
    scheduler = SageLLMConnector(vllm_config, KVConnectorRole.SCHEDULER, kv_cache_config)
    worker = SageLLMConnector(vllm_config, KVConnectorRole.WORKER, kv_cache_config)
    worker.register_kv_caches(caches)
    return scheduler, worker


def schedule_new(scheduler: SageLLMConnector, request: Request, block_ids: list[int], local_hit: int) -> Any:
    """The scheduler's admission of one waiting request, then its connector metadata for the step."""
    external, load_async = scheduler.get_num_new_matched_tokens(request, local_hit)
    assert load_async is False and external is not None
    scheduler.update_state_after_alloc(request, KVCacheBlocks((tuple(KVCacheBlock(b) for b in block_ids),)), external)
    request.num_computed_tokens = local_hit + external
    output = SchedulerOutput.make_empty()
    output.scheduled_new_reqs = [NewRequestData.from_request(request, (list(block_ids),))]
    output.num_scheduled_tokens = {request.request_id: request.num_tokens - request.num_computed_tokens}
    output.total_num_scheduled_tokens = sum(output.num_scheduled_tokens.values())
    return scheduler.build_connector_meta(output)


def run_worker(worker: SageLLMConnector, caches: dict[str, torch.Tensor], metadata: Any, forward: Any = None) -> None:
    """The model runner's calls for one step: bind, load, per-layer wait/forward/save, wait_for_save, clear."""
    worker.bind_connector_metadata(pickle.loads(pickle.dumps(metadata)))
    worker.start_load_kv(SimpleNamespace())
    for name in caches:
        worker.wait_for_layer_load(name)
    if forward is not None:
        forward()
    for name, kv in caches.items():
        worker.save_kv_layer(name, kv, None)
    worker.wait_for_save()
    worker.clear_connector_metadata()


def run_exchange(tmp_path: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Request a computes a prompt (stored); vLLM drops it; request b shares its prefix and loads it back."""
    caches = stand_in_caches("kv_major")
    scheduler, worker = connectors(tmp_path, caches)
    a = Request("a", PROMPT, SamplingParams(max_tokens=4), None)
    metadata = schedule_new(scheduler, a, [3, 5, 7, 9, 11], local_hit=0)
    assert metadata.plan.loads == () and len(metadata.plan.saves) == 4
    run_worker(worker, caches, metadata, lambda: write_random(caches, [3, 5, 7, 9, 11], seed=11))
    stored = blocks_of(caches, [3, 5, 7, 9])
    assert scheduler.request_finished(a, [3, 5, 7, 9, 11]) == (False, None)
    for kv in caches.values():
        kv.zero_()  # evicted from vLLM's cache, blocks reused

    b = Request("b", PROMPT[:16] + [7, 8, 9], SamplingParams(max_tokens=4), None)
    metadata = schedule_new(scheduler, b, [0, 1, 2, 4, 6], local_hit=0)
    assert [load.block_id for load in metadata.plan.loads] == [0, 1, 2, 4]
    run_worker(worker, caches, metadata)
    return blocks_of(caches, [0, 1, 2, 4]), stored
