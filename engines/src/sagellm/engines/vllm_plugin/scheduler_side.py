"""The connector's scheduler half: sageLLM's prefix index and tier directory behind vLLM's scheduler calls.

Blocks are stored *write-through*: every full block vLLM computes is saved
to the host tier in the step that computes it, so when vLLM later evicts
it from its own cache nothing is lost, and a prompt whose prefix vLLM no
longer holds is loaded back from host or disk::

    get_num_new_matched_tokens   index.peek(tokens[:-1]) past vLLM's own hit   (no side effects)
    update_state_after_alloc     index.lookup: entries of the matched blocks -> loads into vLLM's blocks
    build_connector_meta         index.insert of newly full blocks -> saves; directory makes room
                                 (demote to disk, drop: index.remove) -> StepPlan for the workers
    request_finished             forget the request (vLLM frees its blocks at once: nothing is pending)

Block arithmetic (block size 16; vLLM hit 16 tokens, index hit 40)::

    tokens:  [0 ........ 15][16 ....... 31][32 .. 39|40 41]   the last token always runs
    vLLM:    [  computed    ]
    index:   [  entry 7     ][  entry 9    ]                   a hit covers full blocks only
    loads:                  [ 9 -> vLLM block b1 ]             external tokens = 32 - 16 = 16

A step's loads and saves share the pool's staging blocks (its device
tier): a hit is cut where the staging area is full, and saves past it
wait for a later step (or are skipped if the request finishes first; the
cache is best effort, so vLLM never waits for a save).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sagellm.core.errors import KVBlockError
from sagellm.core.protocols import PrefixIndex
from sagellm.engines.vllm_plugin.plan import BlockLoad, BlockSave, ScheduledRequest, StepPlan, TierSizes
from sagellm.engines.vllm_plugin.tier_directory import TierDirectory


class RequestLike(Protocol):
    """What the connector reads from vLLM's ``Request`` (``lora_request`` is read when present)."""

    @property
    def request_id(self) -> str: ...

    @property
    def all_token_ids(self) -> Sequence[int]: ...


@dataclass(slots=True)
class ConnectorStats:
    """What the scheduler side did, cumulative (tokens and blocks)."""

    num_queries: int = 0
    num_hit_tokens: int = 0  # tokens vLLM was told it can load
    num_loaded_blocks: int = 0
    num_saved_blocks: int = 0
    num_deferred_blocks: int = 0  # full blocks left for a later step (staging full)
    num_dropped_blocks: int = 0


@dataclass(slots=True)
class _Tracked:
    request: RequestLike
    namespace: str
    block_ids: list[int]
    num_stored_blocks: int = 0  # leading full blocks known to be stored (or planned)
    entries: list[int] = field(default_factory=list)


class SchedulerSide:
    """Matching, load/save planning and tier placement for one vLLM scheduler."""

    def __init__(self, index: PrefixIndex, sizes: TierSizes) -> None:
        self.index = index
        self.sizes = sizes
        self.block_size = index.block_size
        self.directory = TierDirectory(sizes.lower())
        self.stats = ConnectorStats()
        self._requests: dict[str, _Tracked] = {}
        self._matched_from: dict[str, int] = {}  # request -> vLLM's computed tokens at its last match
        self._loads: list[BlockLoad] = []

    # -- vLLM: get_num_new_matched_tokens ----------------------------------

    def num_new_matched_tokens(self, request: RequestLike, num_computed_tokens: int) -> int:
        """Tokens past vLLM's own ``num_computed_tokens`` that stored blocks can supply (block-aligned)."""
        tokens = list(request.all_token_ids)
        cached = self.index.peek(tokens[:-1], namespace_of(request))
        room = self.sizes.staging - len(self._loads)
        end = min(cached, (num_computed_tokens // self.block_size + room) * self.block_size)
        self.stats.num_queries += 1
        self._matched_from[request.request_id] = num_computed_tokens
        return max(0, end - num_computed_tokens)

    # -- vLLM: update_state_after_alloc ------------------------------------

    def after_alloc(self, request: RequestLike, block_ids: Sequence[int], num_external_tokens: int) -> None:
        """Track the request; plan the loads of its ``num_external_tokens`` into the blocks vLLM allocated."""
        start = self._matched_from.pop(request.request_id, 0)
        namespace = namespace_of(request)
        self._requests[request.request_id] = _Tracked(request, namespace, list(block_ids))
        if num_external_tokens <= 0:
            return
        end = start + num_external_tokens
        hit = self.index.lookup(list(request.all_token_ids)[:end], namespace)
        self.index.release(hit.block_ids)
        if hit.num_matched_tokens < end:
            raise KVBlockError(
                f"request {request.request_id}: {end} tokens were matched but the index now holds "
                f"{hit.num_matched_tokens}; the index changed between match and allocation"
            )
        first = start // self.block_size
        entries = [int(entry) for entry in hit.block_ids[first : end // self.block_size]]
        loads = [BlockLoad(entry, block_ids[first + i]) for i, entry in enumerate(entries)]
        self.directory.pin(entries)
        self.directory.touch(reversed(entries))  # the first block ends up most recent, as in build_plan
        self._loads.extend(loads)
        self.stats.num_hit_tokens += num_external_tokens
        self.stats.num_loaded_blocks += len(loads)

    # -- vLLM: build_connector_meta ----------------------------------------

    def build_plan(self, scheduled: Iterable[ScheduledRequest], finished_ids: Iterable[str] = ()) -> StepPlan:
        """This step's loads, saves and tier changes; resets the per-step state."""
        for req_id in finished_ids:
            self.forget(req_id)
        budget = self.sizes.staging - len(self._loads)
        pending: list[tuple[int, int]] = []  # (vLLM block, new entry)
        for step in scheduled:
            tracked = self._requests.get(step.req_id)
            if tracked is None:
                continue
            if step.replaces_blocks:
                tracked.block_ids = list(step.new_block_ids)
            else:
                tracked.block_ids.extend(step.new_block_ids)
            new = self._new_full_blocks(tracked, step, budget)
            pending.extend(new)
            budget -= len(new)
        # Each request's new blocks are placed last block first, so its first block is the most recent:
        # a deeper block is useless without the ones before it, so it should be the first to go (as in vLLM).
        dropped = self.directory.place(entry for _, entry in reversed(pending))
        self.index.remove(dropped)
        self.stats.num_dropped_blocks += len(dropped)
        saves = tuple(
            BlockSave(block_id, entry, tier)
            for block_id, entry in pending
            if (tier := self.directory.tier_of(entry)) is not None
        )
        self.stats.num_saved_blocks += len(saves)
        loads = tuple(self._loads)
        self.directory.unpin(load.entry_id for load in loads)
        self._loads.clear()
        return StepPlan(self.sizes, loads, saves, self.directory.take_changes())

    def _new_full_blocks(self, tracked: _Tracked, step: ScheduledRequest, budget: int) -> list[tuple[int, int]]:
        """Index the request's newly full blocks (up to ``budget``); (vLLM block, entry) of each to save."""
        tokens = list(tracked.request.all_token_ids)
        done = min(step.num_computed_tokens + step.num_scheduled_tokens, len(tokens))
        num_full = min(done // self.block_size, len(tracked.block_ids))
        if num_full <= tracked.num_stored_blocks:
            return []
        # Look the prefix up again: an entry saved earlier may have been dropped since; then it is saved anew
        # from vLLM's block, which the running request still holds.
        hit = self.index.lookup(tokens[: num_full * self.block_size], tracked.namespace)
        self.index.release(hit.block_ids)
        have = hit.num_matched_blocks
        count = min(num_full - have, max(budget, 0))
        self.stats.num_deferred_blocks += num_full - have - count
        if count <= 0:
            tracked.num_stored_blocks = max(tracked.num_stored_blocks, have)
            return []
        ids = self.directory.new_ids(count)
        end = have + count
        adopted = set(self.index.insert(tokens[: end * self.block_size], [*hit.block_ids, *ids], tracked.namespace))
        self.index.release(list(adopted))
        tracked.num_stored_blocks = end
        return [(tracked.block_ids[have + i], entry) for i, entry in enumerate(ids) if entry in adopted]

    # -- vLLM: request_finished --------------------------------------------

    def forget(self, req_id: str) -> None:
        """Stop tracking a finished or preempted request (its saves so far stay stored)."""
        self._requests.pop(req_id, None)
        self._matched_from.pop(req_id, None)

    @property
    def num_tracked(self) -> int:
        return len(self._requests)


def namespace_of(request: Any) -> str:
    """Prefixes of different LoRA adapters never share KV: the adapter's name is the index namespace."""
    lora = getattr(request, "lora_request", None)
    return str(getattr(lora, "lora_name", "") or "") if lora is not None else ""
