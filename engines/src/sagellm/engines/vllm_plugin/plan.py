"""What the scheduler-side connector tells the worker-side one each step: a final plan of block moves.

vLLM runs its connector twice: once beside the scheduler (it decides) and
once in every worker (it copies). They share nothing but the metadata
vLLM pickles from one to the other each step, so the plan is complete and
final: entry ids, tiers and vLLM block ids are all decided on the
scheduler's side, and the worker executes them in a fixed order::

    start_load_kv      loads:    tier entry ──copy──► staging (pool device tier)
    wait_for_layer_load(l)       staging layer l ──► vLLM block, layer l
    save_kv_layer(l)   saves:    vLLM block, layer l ──► staging layer l
    wait_for_save      changes:  drops (free), then demotions (host ──► disk)
                       saves:    staging ──move──► host tier

Entry ids are the connector's own (vLLM block ids are recycled by vLLM
and pool ids are the pool's choice), the ids the prefix index keys by.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import Tier


@dataclass(frozen=True, slots=True)
class TierSizes:
    """Blocks per storage place: the staging area on the device and the tiers below it."""

    staging: int  # pool device-tier blocks: a step's loads plus saves fit in it
    host: int
    disk: int

    def lower(self) -> dict[Tier, int]:
        """Capacity of every lower tier that exists, fastest first."""
        sizes = {Tier.HOST: self.host, Tier.DISK: self.disk}
        return {tier: size for tier, size in sizes.items() if size > 0}


@dataclass(frozen=True, slots=True)
class BlockLoad:
    """Copy stored entry ``entry_id`` into vLLM's block ``block_id`` (the entry stays stored)."""

    entry_id: int
    block_id: int


@dataclass(frozen=True, slots=True)
class BlockSave:
    """Store vLLM's block ``block_id`` as the new entry ``entry_id`` in ``tier``."""

    block_id: int
    entry_id: int
    tier: Tier = Tier.HOST


@dataclass(frozen=True, slots=True)
class TierChange:
    """Where a stored entry was at the start of the step and where it is at the end.

    ``dst`` None: dropped. Only the net change of a step travels, so an
    entry demoted and then dropped within one step is a single drop (new
    entries travel as :class:`BlockSave` with their final tier).
    """

    entry_id: int
    src: Tier
    dst: Tier | None


@dataclass(frozen=True, slots=True)
class StepPlan:
    """Everything the workers do for one step, in the order of :mod:`plan`'s diagram."""

    sizes: TierSizes
    loads: tuple[BlockLoad, ...] = ()
    saves: tuple[BlockSave, ...] = ()
    changes: tuple[TierChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.loads or self.saves or self.changes)


@dataclass(frozen=True, slots=True)
class ScheduledRequest:
    """One request of vLLM's SchedulerOutput, as the plan needs it.

    ``new_block_ids`` are appended to the blocks the connector knows, or
    replace them when ``replaces_blocks`` (a new or resumed request).
    """

    req_id: str
    new_block_ids: tuple[int, ...]
    replaces_blocks: bool
    num_computed_tokens: int  # before this step
    num_scheduled_tokens: int
