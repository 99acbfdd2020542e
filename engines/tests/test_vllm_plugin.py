"""The vLLM plugin: sageLLM's prefix index and KV tiers behind vLLM V1's KV connector.

Part 1 runs everywhere: the plugin's sageLLM side (matching, plans, tier
placement, a store/load round trip of KV blocks through the pool's host
and disk tiers) against stand-in caches. Part 2 runs where vLLM imports:
the connector against vLLM's real ``KVConnectorBase_V1`` (subclass,
abstract methods and their signatures, a scripted exchange with vLLM's own
request, block and scheduler-output types, the plugin entry point).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from vllm_stand_ins import (
    Exchange,
    StandInRequest,
    blocks_of,
    prefill,
    settings,
    stand_in_caches,
    write_random,
)

from sagellm.core.errors import ConfigError
from sagellm.core.types import Tier
from sagellm.engines.vllm_plugin import PluginSettings, ScheduledRequest, TierDirectory, register
from sagellm.engines.vllm_plugin.block_layout import BlockShape

VLLM = importlib.util.find_spec("vllm") is not None
NEEDS_VLLM = pytest.mark.skipif(
    not VLLM,
    reason="vLLM is not installed in this venv; the contract tests run where it is (engines/README.md, 'vLLM plugin')",
)
VLLM_MODEL = os.environ.get("SAGELLM_VLLM_MODEL")  # a Hugging Face directory: opt-in end-to-end run of vLLM
PROMPT = list(range(100, 118))  # 18 tokens: 4 full blocks of 4 and a partial one


# ---- part 1: the sageLLM side, no vLLM ------------------------------------


def test_the_directory_demotes_the_oldest_and_drops_from_the_bottom() -> None:
    directory = TierDirectory({Tier.HOST: 2, Tier.DISK: 2})
    first = directory.new_ids(4)
    assert directory.place(first) == []
    assert directory.take_changes() == ()  # new entries travel as saves, with their final tier
    assert [directory.tier_of(e) for e in first] == [Tier.DISK, Tier.DISK, Tier.HOST, Tier.HOST]
    directory.pin([first[0]])  # a load reads it this step
    assert directory.place(directory.new_ids(1)) == [first[1]]  # the oldest unpinned disk entry goes
    changes = {change.entry_id: (change.src, change.dst) for change in directory.take_changes()}
    assert changes == {first[1]: (Tier.DISK, None), first[2]: (Tier.HOST, Tier.DISK)}


def test_changes_list_drops_before_demotions_and_net_moves_only() -> None:
    directory = TierDirectory({Tier.HOST: 1, Tier.DISK: 1})
    a, b, c = directory.new_ids(3)
    directory.place([a])
    directory.take_changes()
    directory.place([b, c])  # a: host -> disk -> dropped within one step; b: host -> disk
    changes = directory.take_changes()
    assert [(ch.entry_id, ch.src, ch.dst) for ch in changes] == [(a, Tier.HOST, None)]
    assert directory.tier_of(b) is Tier.DISK and directory.tier_of(c) is Tier.HOST


@pytest.mark.parametrize("index", ["hash_chain", "radix"])
@pytest.mark.parametrize("layout", ["kv_major", "block_major"])
def test_blocks_saved_by_one_request_load_into_another(tmp_path: Path, layout: str, index: str) -> None:
    ex = Exchange(settings(tmp_path, index=index), stand_in_caches(layout))
    a = StandInRequest("a", PROMPT)
    assert ex.admit(a, [3, 5, 7, 9, 11]) == 0
    plan = ex.step([prefill("a", [3, 5, 7, 9, 11], 18)], lambda: write_random(ex.caches, [3, 5, 7, 9, 11], seed=1))
    assert [save.block_id for save in plan.saves] == [3, 5, 7, 9]  # full blocks only
    assert all(save.tier is Tier.HOST for save in plan.saves)
    stored = blocks_of(ex.caches, [3, 5, 7, 9])
    ex.scheduler.forget("a")
    for kv in ex.caches.values():
        kv.zero_()  # vLLM evicted them and reused the blocks

    b = StandInRequest("b", PROMPT[:16] + [7, 8, 9])
    assert ex.admit(b, [0, 1, 2, 4, 6]) == 16
    plan = ex.step([prefill("b", [0, 1, 2, 4, 6], 19, num_computed=16)])
    assert [(load.block_id) for load in plan.loads] == [0, 1, 2, 4]
    assert plan.saves == ()  # its full blocks are stored already
    for got, want in zip(blocks_of(ex.caches, [0, 1, 2, 4]), stored, strict=True):
        assert torch.equal(got, want)


def test_a_hit_starts_past_vllms_own_and_leaves_the_last_token_to_run(tmp_path: Path) -> None:
    ex = Exchange(settings(tmp_path), stand_in_caches("kv_major"))
    ex.admit(StandInRequest("a", PROMPT[:16]), [1, 2, 3, 4])
    ex.step([prefill("a", [1, 2, 3, 4], 16)], lambda: write_random(ex.caches, [1, 2, 3, 4], seed=2))
    same = StandInRequest("same", PROMPT[:16])
    assert ex.scheduler.num_new_matched_tokens(same, 0) == 12  # the 16th token must run: 3 blocks
    longer = StandInRequest("longer", PROMPT[:16] + [1])
    assert ex.scheduler.num_new_matched_tokens(longer, 8) == 8  # vLLM holds 2 blocks itself
    assert ex.admit(longer, [5, 6, 7, 8, 9], vllm_hit_tokens=8) == 8
    plan = ex.step([prefill("longer", [5, 6, 7, 8, 9], 17, num_computed=16)])
    assert [(load.block_id) for load in plan.loads] == [7, 8]
    other = StandInRequest("other", [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert ex.scheduler.num_new_matched_tokens(other, 0) == 0


def test_blocks_come_back_from_disk_after_demotion(tmp_path: Path) -> None:
    ex = Exchange(settings(tmp_path, host=2, disk=4), stand_in_caches("kv_major"))
    ex.admit(StandInRequest("a", PROMPT), [3, 5, 7, 9, 11])
    plan = ex.step([prefill("a", [3, 5, 7, 9, 11], 18)], lambda: write_random(ex.caches, [3, 5, 7, 9], seed=3))
    assert [save.tier for save in plan.saves] == [Tier.HOST, Tier.HOST, Tier.DISK, Tier.DISK]  # prefix kept fastest
    stored = blocks_of(ex.caches, [3, 5, 7, 9])
    assert [ex.store.tier_of(save.entry_id) for save in plan.saves] == [save.tier for save in plan.saves]
    for kv in ex.caches.values():
        kv.zero_()
    ex.admit(StandInRequest("b", PROMPT[:16] + [0]), [10, 12, 13, 14, 15])
    ex.step([prefill("b", [10, 12, 13, 14, 15], 17, num_computed=16)])
    for got, want in zip(blocks_of(ex.caches, [10, 12, 13, 14]), stored, strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("index", ["hash_chain", "radix"])
def test_dropped_blocks_leave_the_index_and_are_saved_again(tmp_path: Path, index: str) -> None:
    ex = Exchange(settings(tmp_path, host=2, index=index), stand_in_caches("kv_major"))
    a = StandInRequest("a", PROMPT[:8])
    ex.admit(a, [1, 2])
    ex.step([prefill("a", [1, 2], 8)], lambda: write_random(ex.caches, [1, 2], seed=4))
    ex.admit(StandInRequest("c", [1, 2, 3, 4, 5, 6, 7, 8]), [3, 4])
    plan = ex.step([prefill("c", [3, 4], 8)], lambda: write_random(ex.caches, [3, 4], seed=5))
    assert sorted(change.dst is None for change in plan.changes) == [True, True]  # a's two entries dropped
    assert ex.store.num_entries == 2 and len(ex.scheduler.index) == 2
    assert ex.scheduler.num_new_matched_tokens(StandInRequest("a2", PROMPT[:9]), 0) == 0
    a.all_token_ids += [1, 2, 3, 4]  # a, still running, fills its third block: its dropped ones go back too
    plan = ex.step([ScheduledRequest("a", (5,), False, 8, 4)], lambda: write_random(ex.caches, [5], seed=6))
    assert [save.block_id for save in plan.saves] == [1, 2]  # 2 host blocks: the deepest block is the one left out
    assert ex.scheduler.num_new_matched_tokens(StandInRequest("a3", [*a.all_token_ids, 0]), 0) == 8


def test_saves_past_the_staging_area_wait_for_the_next_step(tmp_path: Path) -> None:
    ex = Exchange(settings(tmp_path, staging=3), stand_in_caches("kv_major"))
    ex.admit(StandInRequest("a", PROMPT), [3, 5, 7, 9, 11])
    plan = ex.step([prefill("a", [3, 5, 7, 9, 11], 18)], lambda: write_random(ex.caches, [3, 5, 7, 9], seed=6))
    assert [save.block_id for save in plan.saves] == [3, 5, 7]
    assert ex.scheduler.stats.num_deferred_blocks == 1
    plan = ex.step([ScheduledRequest("a", (), False, 18, 1)])  # the next decode step
    assert [save.block_id for save in plan.saves] == [9]
    assert ex.scheduler.num_new_matched_tokens(StandInRequest("b", PROMPT[:16] + [0]), 0) == 12  # staging cap


def test_lora_adapters_do_not_share_blocks(tmp_path: Path) -> None:
    class Lora:
        lora_name = "adapter-1"

    ex = Exchange(settings(tmp_path), stand_in_caches("kv_major"))
    ex.admit(StandInRequest("a", PROMPT), [3, 5, 7, 9, 11])
    ex.step([prefill("a", [3, 5, 7, 9, 11], 18)], lambda: write_random(ex.caches, [3, 5, 7, 9], seed=7))
    assert ex.scheduler.num_new_matched_tokens(StandInRequest("b", PROMPT, Lora()), 0) == 0
    assert ex.scheduler.num_new_matched_tokens(StandInRequest("c", PROMPT), 0) == 16


def test_a_plan_survives_pickling(tmp_path: Path) -> None:
    """vLLM ships the metadata from the scheduler process to the workers."""
    ex = Exchange(settings(tmp_path), stand_in_caches("kv_major"))
    ex.admit(StandInRequest("a", PROMPT), [3, 5, 7, 9, 11])
    plan = ex.scheduler.build_plan([prefill("a", [3, 5, 7, 9, 11], 18)])
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_settings_refuse_what_the_connector_cannot_follow(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tiers"):
        PluginSettings.from_extra_config({})  # device only: nowhere to store
    with pytest.raises(ConfigError, match="unknown sageLLM connector option"):
        PluginSettings.from_extra_config({"sagellm_confg": {}})
    with pytest.raises(ConfigError, match="scheduler_ir"):
        PluginSettings.from_extra_config(
            {"sagellm_config": {"kv_pool": {"tiers": "device,host"}, "scheduler_ir": {"implementation": "slo"}}}
        )
    with pytest.raises(ConfigError, match="prefix_cache"):
        PluginSettings.from_extra_config(
            {"sagellm_config": {"kv_pool": {"tiers": "device,host"}, "prefix_cache": {"enabled": False}}}
        )
    plugin = settings(tmp_path, staging=4, host=16, disk=32)
    shape = BlockShape(num_layers=2, block_size=4, elements_per_layer=2 * 4 * 2 * 8, dtype="float32")
    sizes = plugin.tier_sizes(shape)
    assert (sizes.staging, sizes.host, sizes.disk) == (4, 16, 32)


def test_a_block_that_does_not_split_into_token_rows_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot store"):
        BlockShape(num_layers=1, block_size=16, elements_per_layer=24, dtype="float16").pool_layout(4, "cpu")


def test_the_scheduler_and_worker_must_agree_on_sizes(tmp_path: Path) -> None:
    ex = Exchange(settings(tmp_path), stand_in_caches("kv_major"))
    other = Exchange(settings(tmp_path, host=3), stand_in_caches("kv_major"))
    with pytest.raises(ConfigError, match="same sageLLM config"):
        ex.store.begin(other.scheduler.build_plan([]))


@pytest.mark.skipif(VLLM, reason="vLLM is installed: the plugin loader test covers register()")
def test_register_without_vllm_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    register()
    with pytest.raises(ImportError):
        importlib.import_module("sagellm.engines.vllm_plugin.connector")


# ---- part 2: against vLLM's connector interface ----------------------------


@NEEDS_VLLM
def test_the_connector_is_a_kv_connector_base_v1() -> None:
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1, KVConnectorMetadata

    from sagellm.engines.vllm_plugin.connector import SageLLMConnector, SageLLMConnectorMetadata

    assert issubclass(SageLLMConnector, KVConnectorBase_V1)
    assert issubclass(SageLLMConnectorMetadata, KVConnectorMetadata)
    assert not getattr(SageLLMConnector, "__abstractmethods__", frozenset())


@NEEDS_VLLM
def test_every_method_vllm_calls_has_vllms_signature() -> None:
    from vllm.distributed.kv_transfer.kv_connector.v1.base import KVConnectorBase_V1

    from sagellm.engines.vllm_plugin.connector import SageLLMConnector

    required = set(KVConnectorBase_V1.__abstractmethods__)
    assert {"get_num_new_matched_tokens", "update_state_after_alloc", "build_connector_meta"} <= required
    assert {"start_load_kv", "wait_for_layer_load", "save_kv_layer", "wait_for_save"} <= required
    overridden = required | {"__init__", "register_kv_caches", "request_finished"}
    for name in sorted(overridden):
        ours = [(p.name, p.kind) for p in inspect.signature(getattr(SageLLMConnector, name)).parameters.values()]
        theirs = [(p.name, p.kind) for p in inspect.signature(getattr(KVConnectorBase_V1, name)).parameters.values()]
        assert ours == theirs, name
        assert getattr(SageLLMConnector, name) is not getattr(KVConnectorBase_V1, name), name


@NEEDS_VLLM
def test_a_scripted_exchange_through_vllms_types(tmp_path: Path) -> None:
    from vllm_connector_script import run_exchange

    loaded, stored = run_exchange(tmp_path)
    for got, want in zip(loaded, stored, strict=True):
        assert torch.equal(got, want)


@NEEDS_VLLM
def test_vllms_plugin_loader_registers_the_connector() -> None:
    from importlib.metadata import entry_points

    if not any(ep.value == "sagellm.engines.vllm_plugin:register" for ep in entry_points(group="vllm.general_plugins")):
        pytest.skip("sagellm-engines is installed without its vllm.general_plugins entry point here")
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
    from vllm.plugins import load_general_plugins

    from sagellm.engines.vllm_plugin.connector import SageLLMConnector

    load_general_plugins()
    assert KVConnectorFactory.get_connector_class_by_name("SageLLMConnector") is SageLLMConnector


@pytest.mark.skipif(
    not VLLM_MODEL,
    reason="set SAGELLM_VLLM_MODEL to a Hugging Face model directory to run vLLM end to end (~35 s on 2 cores)",
)
@NEEDS_VLLM
def test_vllm_serves_a_prefix_back_from_the_tiers() -> None:
    script = Path(__file__).with_name("vllm_end_to_end.py")
    done = subprocess.run(
        [sys.executable, str(script), str(VLLM_MODEL)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["connector"] == "sagellm.engines.vllm_plugin.connector.SageLLMConnector"
    assert result["saved_blocks"] == result["prompt_tokens"] // result["block_size"]
    assert result["tiers"]["disk"] > 0  # the 2-block host tier pushed the rest down
    assert result["loaded_blocks"] == result["saved_blocks"]  # vLLM's cache was reset: every block came back
    assert result["same_text"], result
    assert result["zeroed_differs"], "attention did not read the loaded blocks"
