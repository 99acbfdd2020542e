"""sageLLM's IR builder as LMDeploy's plan provider (patch 0003).

Each LMDeploy step that has candidates asks ``provider(is_prefill,
candidates)``; the provider snapshots the scheduler as a SchedulerState
(translate.py), lets the configured IRBuilder plan the step, and answers
with the plan's sequence ids. LMDeploy then takes exactly those, in that
order, and still allocates and stops when blocks run out -- so the builder
is priced with LMDeploy's own free-block count (plus what the trie can
evict on demand) to keep its plan one LMDeploy can apply as is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sagellm.core.protocols import IRBuilder
from sagellm.core.types import ExecutionPlan, SchedulerState
from sagellm.engines.lmdeploy.prefix_hook import IndexPrefixHook
from sagellm.engines.lmdeploy.translate import LMDeploySequence, planned_ids, scheduler_state


@dataclass(frozen=True, slots=True)
class PlannedStep:
    """One step as planned: the snapshot, the builder's plan, and the ids handed to LMDeploy."""

    is_prefill: bool
    state: SchedulerState
    plan: ExecutionPlan
    seq_ids: tuple[int, ...]


class IRPlanProvider:
    """A ``PlanProvider`` for ``Scheduler.set_plan_provider``: LMDeploy's candidates in, ``ExternalPlan`` out."""

    def __init__(
        self,
        builder: IRBuilder,
        scheduler: Any,
        external_plan: Callable[[list[int]], Any],
        prefix_hook: IndexPrefixHook | None = None,
    ) -> None:
        self.builder = builder
        self.scheduler = scheduler
        self.external_plan = external_plan  # lmdeploy's ExternalPlan, passed in so lmdeploy stays a lazy import
        self.prefix_hook = prefix_hook
        self.last: PlannedStep | None = None

    def __call__(self, is_prefill: bool, candidates: Sequence[LMDeploySequence]) -> Any:
        state = self.snapshot(is_prefill, candidates)
        plan = self.builder.build(state)
        seq_ids = planned_ids(is_prefill, plan, candidates)
        self.last = PlannedStep(is_prefill, state, plan, tuple(seq_ids))
        return self.external_plan(seq_ids)

    def snapshot(self, is_prefill: bool, candidates: Sequence[LMDeploySequence]) -> SchedulerState:
        """The scheduler as the builder should see it for this step."""
        hook = self.prefix_hook
        running = [] if not is_prefill else sorted(self.scheduler.running, key=lambda seq: seq.arrive_time)
        return scheduler_state(
            is_prefill,
            candidates,
            running,
            num_free_blocks=self.num_free_blocks(),
            block_size=self.scheduler.cache_config.block_size,
            cached_tokens=hook.cached_tokens if hook is not None and self.scheduler.block_trie.enable else None,
        )

    def num_free_blocks(self) -> int:
        """Free device blocks plus those LMDeploy's eviction helper reclaims on demand.

        It frees stopped ("hanging") sequences and, through ``BlockTrie.evict``,
        cached blocks no sequence uses; a block counts when every reference
        it has (patch 0001's ``ref_count``) comes from those holders.
        """
        manager = self.scheduler.block_manager
        holders: Counter[int] = Counter()
        for seq in self.scheduler.hanging:
            holders.update(int(block) for block in seq.logical_blocks.get_real_blocks())
        cached = self.prefix_hook.cached_blocks if self.prefix_hook is not None else frozenset()
        candidates = sorted(set(holders) | cached)
        reclaimable = sum(
            1
            for info in (manager.get_block_info(candidates) if candidates else [])
            if info.device == "gpu" and info.ref_count == holders[info.logical_id] + (info.logical_id in cached)
        )
        return int(manager.get_num_free_gpu_blocks()) + reclaimable
