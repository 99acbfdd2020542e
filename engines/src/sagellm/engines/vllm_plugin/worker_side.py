"""The connector's worker half: vLLM's KV blocks in and out of a sageLLM TieredKVPool.

The pool comes from the registry (``kv_pool.implementation``, ``paged`` by
default) with a layout whose block is one vLLM block of every layer
(:mod:`block_layout`). Its device tier, on vLLM's device, is a *staging*
area: copies between vLLM's cache and staging are plain tensor copies on
the compute stream, and the pool's own migrations (its copy stream and
worker threads on CUDA) move staging blocks to and from host and disk::

    start_load_kv        migrate(copy host/disk entry -> staging)        submitted, not waited
    wait_for_layer_load  wait once; staging layer l -> vLLM blocks        (before layer l's attention)
    save_kv_layer        vLLM blocks, layer l -> staging                  (after layer l wrote its KV)
    wait_for_save        any layer not seen yet, both ways; drops; demotions; migrate(staging -> host)

The worker executes the plan exactly: every placement was decided on the
scheduler's side (:mod:`scheduler_side`), which knows the same capacities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from sagellm.core import registry
from sagellm.core.errors import ConfigError, KVBlockError
from sagellm.core.protocols import MigrationTicket, TieredKVPool
from sagellm.core.types import BlockId, BlockMove, MigrationPlan, Tier
from sagellm.engines.engine.builder import kv_pool_section
from sagellm.engines.vllm_plugin.block_layout import (
    BlockShape,
    block_dim,
    pool_rows,
    put_pool_rows,
    read_blocks,
    shape_of,
    write_blocks,
)
from sagellm.engines.vllm_plugin.plan import StepPlan, TierSizes
from sagellm.engines.vllm_plugin.settings import PluginSettings


@dataclass(slots=True)
class _Step:
    """One step in flight: its plan, staging blocks, and which layers are done."""

    plan: StepPlan
    load_slots: list[BlockId] = field(default_factory=list)  # one staging block per distinct entry
    load_rows: list[BlockId] = field(default_factory=list)  # the staging block of each load, in plan order
    load_ticket: MigrationTicket | None = None
    save_slots: list[BlockId] | None = None
    loaded: set[str] = field(default_factory=set)
    saved: set[str] = field(default_factory=set)


class TierStore:
    """Stored entries (entry id -> tier and pool block) and the copies of each step's plan."""

    def __init__(
        self, pool: TieredKVPool, kv_caches: Mapping[str, torch.Tensor], num_blocks: int, sizes: TierSizes
    ) -> None:
        self.pool = pool
        self.sizes = sizes
        self._caches = dict(kv_caches)
        self._layer = {name: i for i, name in enumerate(self._caches)}
        self._dims = {name: block_dim(kv, num_blocks) for name, kv in self._caches.items()}
        self._where: dict[int, tuple[Tier, BlockId]] = {}
        self._step: _Step | None = None

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def tier_of(self, entry_id: int) -> Tier | None:
        where = self._where.get(entry_id)
        return where[0] if where is not None else None

    @property
    def in_step(self) -> bool:
        return self._step is not None

    @property
    def num_entries(self) -> int:
        return len(self._where)

    # -- start_load_kv -----------------------------------------------------

    def begin(self, plan: StepPlan) -> None:
        """Start the step: copy the entries to load into staging blocks (waited for per layer).

        Idempotent for the step's plan: vLLM starts loads after the forward
        in steps without synchronous loads, when ``save_kv_layer`` has begun
        the step already.
        """
        if self._step is not None and self._step.plan is plan:
            return
        if self._step is not None:
            self.finish()  # vLLM skipped wait_for_save: never leave a step half done
        if plan.sizes != self.sizes:
            raise ConfigError(
                f"the scheduler plans for tiers {plan.sizes} but this worker's pool has {self.sizes}: "
                "both sides must see the same sageLLM config and vLLM block shape"
            )
        step = _Step(plan)
        entries = list(dict.fromkeys(load.entry_id for load in plan.loads))  # two requests may load one entry
        if entries:
            missing = [entry for entry in entries if entry not in self._where]
            if missing:
                raise KVBlockError(f"the plan loads entries this worker never stored: {missing}")
            moves = tuple(
                BlockMove(self._where[entry][1], self._where[entry][0], Tier.DEVICE, keep_source=True)
                for entry in entries
            )
            ticket = self.pool.migrate(MigrationPlan(moves))
            step.load_ticket = ticket
            step.load_slots = list(ticket.dst_block_ids)
            slot_of = dict(zip(entries, step.load_slots, strict=True))
            step.load_rows = [slot_of[load.entry_id] for load in plan.loads]
        self._step = step

    # -- wait_for_layer_load / save_kv_layer -------------------------------

    def load_layer(self, name: str) -> None:
        """Copy layer ``name`` of this step's loaded entries into vLLM's blocks."""
        step = self._step
        if step is None or not step.plan.loads or name in step.loaded or name not in self._layer:
            return
        if not step.loaded and step.load_ticket is not None:
            step.load_ticket.wait()
        key, value = self.pool.kv_tensors(self._layer[name])
        rows = pool_rows(key, value, step.load_rows)
        write_blocks(self._caches[name], self._dims[name], [load.block_id for load in step.plan.loads], rows)
        step.loaded.add(name)

    def save_layer(self, name: str) -> None:
        """Copy layer ``name`` of this step's saved blocks from vLLM's cache into staging."""
        step = self._step
        if step is None or not step.plan.saves or name in step.saved or name not in self._layer:
            return
        if step.save_slots is None:
            step.save_slots = self.pool.allocate(len(step.plan.saves), Tier.DEVICE)
        rows = read_blocks(self._caches[name], self._dims[name], [save.block_id for save in step.plan.saves])
        key, value = self.pool.kv_tensors(self._layer[name])
        put_pool_rows(key, value, step.save_slots, rows)
        step.saved.add(name)

    # -- wait_for_save -----------------------------------------------------

    def finish(self) -> None:
        """Complete the step: remaining layers, staging freed, tier changes, saves moved down (all waited)."""
        step = self._step
        if step is None:
            return
        for name in self._caches:
            self.load_layer(name)
            self.save_layer(name)
        if step.load_slots:
            self.pool.free(step.load_slots, Tier.DEVICE)
        self._apply_changes(step.plan)
        if step.plan.saves and step.save_slots is not None:
            moves = [(slot, save.tier) for slot, save in zip(step.save_slots, step.plan.saves, strict=True)]
            placed = self._migrate(moves, Tier.DEVICE)
            for save, block in zip(step.plan.saves, placed, strict=True):
                self._where[save.entry_id] = (save.tier, block)
        self._step = None

    def _apply_changes(self, plan: StepPlan) -> None:
        """Drops first (they make room in the bottom tier), then demotions in one migration."""
        demotions: list[tuple[int, Tier]] = []
        for change in plan.changes:
            tier, block = self._where.get(change.entry_id, (None, None))
            if tier is None or block is None:
                continue  # saved in a step whose plan this worker did not see: nothing to move
            if change.dst is None:
                self.pool.free([block], tier)
                del self._where[change.entry_id]
            else:
                demotions.append((change.entry_id, change.dst))
        by_src: dict[Tier, list[tuple[int, Tier]]] = {}
        for entry_id, dst in demotions:
            by_src.setdefault(self._where[entry_id][0], []).append((entry_id, dst))
        for src, group in by_src.items():
            placed = self._migrate([(self._where[e][1], dst) for e, dst in group], src)
            for (entry_id, dst), block in zip(group, placed, strict=True):
                self._where[entry_id] = (dst, block)

    def _migrate(self, moves: Sequence[tuple[BlockId, Tier]], src: Tier) -> list[BlockId]:
        plan = MigrationPlan(tuple(BlockMove(block, src, dst) for block, dst in moves))
        ticket = self.pool.migrate(plan)
        ticket.wait()
        return list(ticket.dst_block_ids)


def build_store(
    settings: PluginSettings, kv_caches: Mapping[str, torch.Tensor], num_blocks: int, spec_shape: BlockShape
) -> TierStore:
    """The pool the config names, shaped for vLLM's caches, on their device.

    Tier sizes come from ``spec_shape`` (what the scheduler side derives from
    vLLM's KV spec), so both sides count the same blocks; the pool's block
    follows the tensors themselves.
    """
    shape = shape_of(kv_caches, num_blocks, spec_shape.block_size)
    sizes = settings.tier_sizes(spec_shape)
    device = str(next(iter(kv_caches.values())).device)
    layout = shape.pool_layout(sizes.staging, device)
    section = kv_pool_section(settings.config, layout)
    if "block_size" in section.model_fields_set and section.block_size != layout.block_size:
        raise ConfigError(
            f"kv_pool.block_size is {section.block_size} but vLLM's blocks hold {layout.block_size} tokens: "
            "the block size is vLLM's (--block-size); leave kv_pool.block_size out"
        )
    pool = registry.create_kv_pool(section.model_copy(update={"block_size": layout.block_size}), layout=layout)
    if not isinstance(pool, TieredKVPool):
        raise ConfigError(
            f"kv_pool.implementation '{settings.config.kv_pool.implementation}' is not a TieredKVPool; "
            "the sageLLM connector stores vLLM's blocks in its host and disk tiers"
        )
    return TierStore(pool, kv_caches, num_blocks, sizes)
