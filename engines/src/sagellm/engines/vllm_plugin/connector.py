"""``SageLLMConnector``: vLLM V1's ``KVConnectorBase_V1`` over sageLLM's prefix index and KV tiers.

This is the one module of the plugin that imports vLLM (vLLM imports it
through ``kv_connector_module_path``); everything it decides is in
:mod:`scheduler_side` and everything it copies in :mod:`worker_side`, both
free of vLLM. Which vLLM call maps to what:

=============================  ====================================================================
vLLM (scheduler process)       sageLLM
=============================  ====================================================================
get_num_new_matched_tokens     ``PrefixIndex.peek`` past vLLM's own hit -> (tokens, False: sync load)
update_state_after_alloc       ``PrefixIndex.lookup`` -> loads of stored entries into vLLM's blocks
build_connector_meta           ``PrefixIndex.insert`` of newly full blocks -> saves; tier directory
                               demotes/drops (``PrefixIndex.remove``) -> ``StepPlan`` in the metadata
request_finished               forget the request; (False, None): vLLM frees its blocks at once
=============================  ====================================================================

=============================  ====================================================================
vLLM (each worker)             sageLLM
=============================  ====================================================================
register_kv_caches             ``registry.create_kv_pool``: a TieredKVPool shaped for vLLM's blocks
start_load_kv                  ``TieredKVPool.migrate`` host/disk -> staging (copy, not waited)
wait_for_layer_load            wait once, staging layer -> vLLM's blocks
save_kv_layer                  vLLM's blocks, layer -> staging
wait_for_save                  remaining layers; drops, demotions, staging -> host (waited)
=============================  ====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)

from sagellm.core import registry
from sagellm.core.errors import ConfigError
from sagellm.engines.vllm_plugin.block_layout import BlockShape, shape_from_spec
from sagellm.engines.vllm_plugin.plan import ScheduledRequest, StepPlan
from sagellm.engines.vllm_plugin.scheduler_side import SchedulerSide
from sagellm.engines.vllm_plugin.settings import PluginSettings
from sagellm.engines.vllm_plugin.worker_side import TierStore, build_store

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.attention.backend import AttentionMetadata
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.request import Request


@dataclass
class SageLLMConnectorMetadata(KVConnectorMetadata):
    """What the scheduler side sends the workers each step (pickled by vLLM)."""

    plan: StepPlan


class SageLLMConnector(KVConnectorBase_V1):
    """vLLM's prefix cache extended by sageLLM's prefix index and host/disk KV tiers (write-through)."""

    def __init__(self, vllm_config: VllmConfig, role: KVConnectorRole, kv_cache_config: KVCacheConfig) -> None:
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        self._settings = PluginSettings.from_extra_config(self._kv_transfer_config.kv_connector_extra_config)
        self._shape = _spec_shape(kv_cache_config)
        self._scheduler: SchedulerSide | None = None
        self._store: TierStore | None = None
        if role == KVConnectorRole.SCHEDULER:
            index = registry.create_prefix_index(self._settings.config, block_size=self._shape.block_size)
            self._scheduler = SchedulerSide(index, self._settings.tier_sizes(self._shape))

    @property
    def requires_kv_delivery(self) -> bool:
        return False  # a best-effort cache: a save that never happens is a later miss, not an error

    # ==== scheduler side ====================================================

    def get_num_new_matched_tokens(self, request: Request, num_computed_tokens: int) -> tuple[int | None, bool]:
        return self._scheduler_side().num_new_matched_tokens(request, num_computed_tokens), False

    def update_state_after_alloc(self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int) -> None:
        self._scheduler_side().after_alloc(request, blocks.get_block_ids()[0], num_external_tokens)

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        ended = set(scheduler_output.finished_req_ids) | set(scheduler_output.preempted_req_ids or ())
        plan = self._scheduler_side().build_plan(scheduled_requests(scheduler_output), ended)
        return SageLLMConnectorMetadata(plan)

    def request_finished(self, request: Request, block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        self._scheduler_side().forget(request.request_id)
        return False, None

    # ==== worker side =======================================================

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        self._store = build_store(self._settings, kv_caches, self._kv_cache_config.num_blocks, self._shape)

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        self._worker_store().begin(self._plan())

    def wait_for_layer_load(self, layer_name: str) -> None:
        self._worker_store().load_layer(layer_name)

    def save_kv_layer(
        self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: AttentionMetadata, **kwargs: Any
    ) -> None:
        store = self._worker_store()
        store.begin(self._plan())  # no-op once begun; vLLM starts loads after the forward when none are sync
        store.save_layer(layer_name)

    def wait_for_save(self) -> None:
        if not self.has_connector_metadata():
            return
        store = self._worker_store()
        store.begin(self._plan())
        store.finish()

    # ==== helpers ===========================================================

    def _plan(self) -> StepPlan:
        metadata = self._get_connector_metadata()
        if not isinstance(metadata, SageLLMConnectorMetadata):
            raise TypeError(f"SageLLMConnector got {type(metadata).__name__} metadata")
        return metadata.plan

    def _scheduler_side(self) -> SchedulerSide:
        if self._scheduler is None:
            raise RuntimeError("a scheduler-side method was called on the worker's SageLLMConnector")
        return self._scheduler

    def _worker_store(self) -> TierStore:
        if self._store is None:
            raise RuntimeError("SageLLMConnector: vLLM has not registered its KV caches with this worker")
        return self._store


def scheduled_requests(scheduler_output: Any) -> list[ScheduledRequest]:
    """The requests of a vLLM ``SchedulerOutput`` (new, resumed and running) as plan inputs."""
    counts = scheduler_output.num_scheduled_tokens
    found = [
        ScheduledRequest(new.req_id, tuple(new.block_ids[0]), True, new.num_computed_tokens, counts[new.req_id])
        for new in scheduler_output.scheduled_new_reqs
    ]
    cached = scheduler_output.scheduled_cached_reqs
    for i, req_id in enumerate(cached.req_ids):
        new_ids = cached.new_block_ids[i]
        found.append(
            ScheduledRequest(
                req_id,
                tuple(new_ids[0]) if new_ids else (),
                req_id in cached.resumed_req_ids,
                cached.num_computed_tokens[i],
                counts.get(req_id, 0),
            )
        )
    return found


def _spec_shape(kv_cache_config: Any) -> BlockShape:
    """The block shape of vLLM's one KV cache group (hybrid models with several groups are refused)."""
    groups = list(kv_cache_config.kv_cache_groups)
    if len(groups) != 1:
        raise ConfigError(f"the sageLLM connector supports one KV cache group, this model has {len(groups)}")
    return shape_from_spec(groups[0].kv_cache_spec, len(groups[0].layer_names))
