"""sagellm.engines.lmdeploy without LMDeploy: it imports, builds its modules from config, and says what it lacks.

The hooks themselves run in LMDeploy's interpreter: third_party/tests/lmdeploy_hooks/
test_sagellm_adapter.py and LMDeploy's paging tests with the adapter plugged in, through
tools/tests/test_lmdeploy_patches.py, or here opt-in (``SAGELLM_LMDEPLOY_PYTHON``).
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch
from lmdeploy_fakes import FakeBlockManager, FakeScheduler, FakeSeq
from lmdeploy_tree import patched_tree, run_in_lmdeploy

from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import ConfigError, NotSupportedError, RegistryError
from sagellm.core.protocols import CommBackend, EvictionPolicy, IRBuilder, PrefixIndex
from sagellm.core.types import ExecutionPlan, ScheduledChunk
from sagellm.engines.lmdeploy import (
    IndexPrefixHook,
    IRPlanProvider,
    PolicyFeed,
    build_modules,
    install,
    planned_ids,
    scheduler_state,
)
from sagellm.engines.lmdeploy.comm_bridge import bridge_class

LMDEPLOY_INSTALLED = importlib.util.find_spec("lmdeploy") is not None


def config(**sections: dict) -> SageLLMConfig:
    scheduler = {"implementation": "fifo", "enable_chunked_prefill": False, "max_num_batched_tokens": 64}
    return load_config(scheduler_ir={**scheduler, **sections.pop("scheduler_ir", {})}, **sections)


# --------------------------------------------------------------------------- config -> modules


def test_modules_come_from_the_registry_as_configured() -> None:
    modules = build_modules(config(eviction_policy={"implementation": "arc"}), block_size=32)
    assert isinstance(modules.ir_builder, IRBuilder) and modules.ir_builder.name == "fifo"
    assert isinstance(modules.prefix_index, PrefixIndex) and modules.prefix_index.block_size == 32
    assert isinstance(modules.eviction_policy, EvictionPolicy) and modules.eviction_policy.name == "arc"
    assert modules.comm_backend is None


def test_slots_switched_off_leave_lmdeploys_own_behaviour() -> None:
    modules = build_modules(
        config(prefix_cache={"enabled": False}, scheduler_ir={"implementation": "none"}), block_size=16
    )
    assert modules.prefix_index is None and modules.eviction_policy is None and modules.ir_builder is None


def test_settings_lmdeploy_cannot_follow_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="enable_chunked_prefill"):
        build_modules(config(scheduler_ir={"enable_chunked_prefill": True}), block_size=16)
    with pytest.raises(ConfigError, match="rank"):
        build_modules(config(collective_ops={"implementation": "mock"}), block_size=16)
    with pytest.raises(RegistryError, match="available: hash_chain"):
        build_modules(config(prefix_cache={"implementation": "nope"}), block_size=16)
    with pytest.raises(ConfigError, match="no hook in LMDeploy"):  # named, so never silently ignored
        build_modules(config(quantization={"implementation": "w8a8"}), block_size=16)
    with pytest.raises(ConfigError, match="kv_pool settings would be ignored"):
        build_modules(config(kv_pool={"num_blocks": 64}), block_size=16)


def test_a_comm_backend_is_built_for_the_given_rank() -> None:
    modules = build_modules(config(collective_ops={"implementation": "mock"}), block_size=16, rank=0)
    assert isinstance(modules.comm_backend, CommBackend) and modules.comm_backend.name == "mock"


@pytest.mark.skipif(LMDEPLOY_INSTALLED, reason="lmdeploy is installed here")
def test_install_without_lmdeploy_is_not_supported() -> None:
    with pytest.raises(NotSupportedError, match="apply_patches.sh"):
        install(object(), config())


# --------------------------------------------------------------------------- translation and plan provider


def test_prefill_snapshot_and_plan_ids() -> None:
    waiting = [FakeSeq(7, [1] * 40, arrive_time=1.0), FakeSeq(8, [2] * 50, arrive_time=2.0)]
    running = [FakeSeq(3, [3] * 21, num_history_ids=20, blocks=[0, 1])]
    state = scheduler_state(True, waiting, running, num_free_blocks=9, block_size=16, cached_tokens=lambda s: 16)
    assert [(v.num_tokens, v.num_cached_tokens) for v in state.waiting] == [(40, 16), (50, 16)]
    assert [(v.num_tokens, v.num_computed_tokens, v.num_blocks_held) for v in state.running] == [(20, 20, 2)]
    plan = build_modules(config(), block_size=16).ir_builder.build(state)  # 64 tokens: 24 + 34 from the cache on
    assert planned_ids(True, plan, waiting) == [7, 8]


def test_decode_plan_puts_preempted_sequences_at_the_tail() -> None:
    seqs = [FakeSeq(i, [i] * 5, num_history_ids=4) for i in range(4)]
    plan = ExecutionPlan(
        chunks=(ScheduledChunk("1", 4, 1, True), ScheduledChunk("0", 4, 1, True)), preempted=("3", "2")
    )
    assert planned_ids(False, plan, seqs) == [1, 0, 2, 3]  # LMDeploy pops 3 first, as the builder did


def test_the_provider_answers_with_the_builders_plan() -> None:
    scheduler = FakeScheduler(running=[], num_free=3)
    builder = build_modules(config(), block_size=16).ir_builder
    provider = IRPlanProvider(builder, scheduler, lambda ids: ("plan", ids))
    candidates = [FakeSeq(i, [i] * 20, arrive_time=float(i)) for i in range(3)]
    assert provider(True, candidates) == ("plan", [0])  # 2 blocks each, 3 free
    assert provider.last is not None and provider.last.state.num_free_blocks == 3
    scheduler.hanging = [FakeSeq(9, [9] * 32, blocks=[5, 6])]  # a stopped sequence: LMDeploy reclaims its blocks
    assert provider(True, candidates) == ("plan", [0, 1])


# --------------------------------------------------------------------------- prefix index and eviction feed


def test_the_index_hook_stores_proposes_and_forgets() -> None:
    modules = build_modules(config(), block_size=4)
    manager = FakeBlockManager(num_free=0)
    hook = IndexPrefixHook(modules.prefix_index, manager, PolicyFeed(modules.eviction_policy, manager))
    first = FakeSeq(0, [1, 1, 1, 1, 2, 2, 2, 2, 3], blocks=[10, 11, 12])
    hook.store(first, 0, [10, 11])
    assert hook.cached_blocks == {10, 11} and len(modules.eviction_policy) == 2
    again = FakeSeq(1, [1, 1, 1, 1, 2, 2, 2, 2, 5])
    assert hook.lookup(again, 0) == [10, 11] and hook.lookup(again, 4) == [11]
    assert hook.cached_tokens(again) == 8
    assert hook.lookup(FakeSeq(2, [1, 1, 1, 1]), 0) == []  # the last token always runs
    hook.on_eviction([12], "preempt")
    hook.on_eviction([11], "prefix")
    assert hook.cached_blocks == {10} and hook.lookup(again, 0) == [10]
    assert hook.feed.stats.prefix_blocks == 1 and hook.feed.stats.preempted_blocks == 1
    assert len(modules.eviction_policy) == 1


# --------------------------------------------------------------------------- comm bridge


class TorchDistributedBase:
    """Where LMDeploy's ``distributed.CommBackend`` would be."""


def test_the_comm_bridge_reshapes_collectives_for_a_sagellm_backend() -> None:
    modules = build_modules(config(collective_ops={"implementation": "mock"}), block_size=16, rank=0)
    bridge = bridge_class(TorchDistributedBase)(modules.comm_backend)
    x = torch.arange(6.0).reshape(2, 3)
    assert bridge.all_reduce(x, torch.distributed.ReduceOp.SUM, None, False) is None
    out = [torch.zeros(2, 3)]
    assert bridge.all_gather(out, x, None, True).wait()
    into, scattered = torch.zeros(2, 3), torch.zeros(2, 3)
    bridge.all_gather_into_tensor(into, x, None, False)
    bridge.reduce_scatter(scattered, [x], torch.distributed.ReduceOp.MAX, None, False)
    assert torch.equal(out[0], x) and torch.equal(into, x) and torch.equal(scattered, x)
    with pytest.raises(NotSupportedError, match="reduce op"):
        bridge.all_reduce(x, torch.distributed.ReduceOp.PRODUCT, None, False)


# --------------------------------------------------------------------------- opt-in: inside LMDeploy


@pytest.mark.slow
def test_inside_a_patched_lmdeploy(tmp_path) -> None:
    """The hook tests, the scripted workload and LMDeploy's paging tests with sageLLM plugged in."""
    python = os.environ.get("SAGELLM_LMDEPLOY_PYTHON")
    if not python:
        pytest.skip("SAGELLM_LMDEPLOY_PYTHON unset: no interpreter with LMDeploy's dependencies (see tools/README.md)")
    tree = patched_tree(tmp_path)
    result = run_in_lmdeploy(python, tree)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "skipped" not in result.stdout.splitlines()[-1], result.stdout[-2000:]
