"""The engine on a tiered KV pool: swap preemption, prefix-block demotion and promotion.

Three layers of checks:

* the KV manager on a tiny pool (no model): every block that leaves the
  device comes back to the right position with its bytes intact, full
  tiers push down, fall back, or refuse, and references all come back;
* configuration and command line: tier names, sizes, conflicts, exit 2;
* the whole engine in a pool too small for its eight requests, with
  ``device,host`` and ``device,host,disk``: the greedy tokens equal the
  same engine's without tiers, swaps, demotions and promotions happened
  (metrics), and every block is free again at the end.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
import torch
from engines_helpers import NUM_NEW_TOKENS, RunResult, drive

from sagellm.core import registry
from sagellm.core.config import EvictionPolicySection, KVPoolSection, PrefixCacheSection, load_config
from sagellm.core.errors import ConfigError
from sagellm.core.types import KVLayout, Request, SequenceState, Tier
from sagellm.engines import LLMEngine
from sagellm.engines.cli.main import main
from sagellm.engines.cli.options import add_engine_options, config_from_args
from sagellm.engines.engine.builder import build_ir_builder, kv_pool_section
from sagellm.engines.runtime.kv_manager import KVManager

BLOCK = 4  # tokens per block in the model-free tests
LAYOUT = KVLayout(num_layers=2, num_kv_heads=1, head_dim=2, block_size=BLOCK, num_blocks=8)


# ---------------------------------------------------------------------- KV manager, no model
def make_kv(host: int = 0, disk: int = 0, prefix_cache: bool = True) -> KVManager:
    options = {"host_blocks": host, "disk_blocks": disk}
    pool = registry.create_kv_pool(KVPoolSection(block_size=BLOCK, options=options), layout=LAYOUT)
    index = registry.create("prefix_index", PrefixCacheSection(), block_size=BLOCK) if prefix_cache else None
    policy = registry.create_eviction_policy(EvictionPolicySection()) if prefix_cache else None
    return KVManager(pool, index, policy)


def new_seq(name: str, tokens: list[int]) -> SequenceState:
    return SequenceState(Request(name, tuple(tokens)))


def kv_value(position: int, token: int) -> float:
    """What the fake model writes for one token: depends on its position and id, as real KV does."""
    return token * 100.0 + position


def compute(kv: KVManager, seq: SequenceState, num_tokens: int) -> None:
    """Run ``num_tokens`` more tokens of ``seq`` through a fake model and register them."""
    start = seq.num_computed_tokens
    end = start + num_tokens
    kv.allocate_for(seq, end)
    positions = range(start, end)
    slots = torch.tensor([seq.block_ids[p // BLOCK] * BLOCK + p % BLOCK for p in positions])
    values = torch.tensor([kv_value(p, seq.token_ids[p]) for p in positions]).view(-1, 1, 1)
    for layer in range(LAYOUT.num_layers):
        key, value = kv.pool.flat_kv_tensors(layer)  # type: ignore[attr-defined]
        key[slots] = values.expand(-1, 1, 2)
        value[slots] = -values.expand(-1, 1, 2)
    seq.num_computed_tokens = end
    kv.register_computed(seq)


def start(kv: KVManager, seq: SequenceState, num_new_tokens: int = 1) -> int:
    """Admit a waiting sequence and run its first chunk; the tokens it got without compute."""
    assert kv.admit(seq, num_new_tokens) is not None
    restored = seq.num_computed_tokens
    compute(kv, seq, min(num_new_tokens, seq.num_tokens - restored))
    return restored


def assert_kv_intact(kv: KVManager, seq: SequenceState) -> None:
    """Every computed position holds what was written for it, in the block its table names."""
    for layer in range(LAYOUT.num_layers):
        key, value = kv.pool.flat_kv_tensors(layer)  # type: ignore[attr-defined]
        for p in range(seq.num_computed_tokens):
            slot = seq.block_ids[p // BLOCK] * BLOCK + p % BLOCK
            expected = kv_value(p, seq.token_ids[p])
            assert key[slot, 0, 0].item() == expected and value[slot, 0, 1].item() == -expected, f"position {p}"


def tier_used(kv: KVManager, tier: Tier) -> int:
    return next(u.num_used_blocks for u in kv.pool.stats().tiers if u.tier is tier)


PROMPT_A = list(range(1, 14))  # 13 tokens: 3 full blocks (12 tokens) can be cached, the 13th always runs
PROMPT_B = list(range(50, 79))  # 29 tokens: 8 blocks, the whole device


def test_eviction_demotes_cached_blocks_and_a_hit_promotes_them_intact() -> None:
    kv = make_kv(host=4)
    a = new_seq("a", PROMPT_A)
    start(kv, a, 13)
    kv.release(a)
    b = new_seq("b", PROMPT_B)
    start(kv, b, 29)  # needs every device block: a's three cached blocks go to the host
    assert kv.counters.kv_demoted_blocks == 3 and kv.entries.num_in(Tier.HOST) == 3
    assert tier_used(kv, Tier.HOST) == 3 and kv.num_evictions == 3
    kv.release(b)

    again = new_seq("a2", PROMPT_A)
    assert kv.peek_cached_tokens(again) == 12  # still in the index, one tier down
    assert start(kv, again) == 12
    assert kv.counters.kv_promoted_blocks == 3
    assert_kv_intact(kv, again)
    # making room for the promotions evicted b's cached blocks in turn: dropped while a's filled the host,
    # demoted once they had left it
    assert tier_used(kv, Tier.HOST) == kv.entries.num_in(Tier.HOST) == 1
    kv.release(again)
    assert kv.num_free_blocks == LAYOUT.num_blocks


def fill_device_demoting(kv: KVManager, prompt: list[int]) -> tuple[SequenceState, SequenceState]:
    """Cache ``prompt`` (3 blocks), then run 6 + 2 blocks of other prompts: the cached blocks go to the host."""
    a = new_seq("a", prompt)
    start(kv, a, 13)
    kv.release(a)
    c = new_seq("c", list(range(200, 223)))  # 23 tokens = 6 blocks
    start(kv, c, 23)
    d = new_seq("d", list(range(300, 305)))  # 5 tokens = 2 blocks (1 cached + 1 private)
    start(kv, d, 5)
    assert kv.entries.num_in(Tier.HOST) == 3 and kv.num_free_blocks == 0
    return c, d


def test_a_hit_on_demoted_blocks_without_device_room_waits_or_promotes_what_fits() -> None:
    kv = make_kv(host=4)
    c, d = fill_device_demoting(kv, PROMPT_A)
    waiting = new_seq("a2", PROMPT_A)
    assert kv.admit(waiting, 1) is None  # not even one block to run in: nothing changes
    assert waiting.block_ids == [] and kv.num_free_blocks == 0 and kv.counters.kv_promotion_missed_blocks == 0
    kv.release(d)  # 2 blocks: not enough for 3 promotions + 1, enough for 1 promotion + 1
    admission = kv.admit(waiting, 4)
    assert admission is not None and admission.num_hit_tokens == 4 and waiting.num_computed_tokens == 4
    assert kv.counters.kv_promotion_missed_blocks == 2 and kv.counters.kv_promoted_blocks == 1
    assert kv.entries.num_in(Tier.HOST) == 2  # the misses stay cached below, unreferenced
    compute(kv, waiting, 4)
    assert_kv_intact(kv, waiting)
    assert kv.index is not None and all(kv.index.is_evictable(e) for e in kv.entries.oldest(Tier.HOST))
    kv.release(waiting)
    kv.release(c)
    assert kv.num_free_blocks == LAYOUT.num_blocks


def test_a_hit_is_cut_at_its_first_demoted_block() -> None:
    kv = make_kv(host=4)
    a = new_seq("a", PROMPT_A)
    start(kv, a, 13)
    kv.release(a)
    held = new_seq("held", [1, 2, 3, 4, 900])  # shares a's first block and keeps it on the device
    assert start(kv, held) == 4
    c = new_seq("c", list(range(200, 223)))  # 6 blocks: a's other two cached blocks go to the host
    start(kv, c, 23)
    assert kv.entries.num_in(Tier.HOST) == 2 and kv.num_free_blocks == 0
    kv.release(held)  # 1 free, plus a's first block, which the hit itself holds
    again = new_seq("a2", PROMPT_A)
    admission = kv.admit(again, 1)
    assert admission is not None and admission.num_hit_tokens == 4 and again.num_computed_tokens == 4
    assert kv.counters.kv_promotion_missed_blocks == 2 and kv.entries.num_in(Tier.HOST) == 2
    compute(kv, again, 1)
    assert_kv_intact(kv, again)
    kv.release(again)
    kv.release(c)
    assert kv.num_free_blocks == LAYOUT.num_blocks


@pytest.mark.parametrize("prefix_cache", [True, False], ids=["prefix-on", "prefix-off"])
def test_swap_out_and_in_restores_the_kv_without_recompute(prefix_cache: bool) -> None:
    kv = make_kv(host=8, prefix_cache=prefix_cache)
    s = new_seq("s", list(range(1, 12)))  # 11 tokens
    start(kv, s, 10)  # 10 computed: 2 full blocks (cached when the prefix cache is on) + a partial one
    private = 1 if prefix_cache else 3
    assert kv.swap_out(s) == private
    assert s.block_ids == [] and kv.is_swapped(s) and tier_used(kv, Tier.HOST) == private
    assert kv.peek_cached_tokens(s) == 10  # what the scheduler sees: no compute needed for 10 tokens

    other = new_seq("o", list(range(500, 529)))  # fill the device: the cached blocks get demoted
    start(kv, other, 29)
    kv.release(other)

    admission = kv.admit(s, 1)
    assert admission is not None and admission.num_swapped_in_blocks == private
    assert s.num_computed_tokens == 10 and not kv.is_swapped(s)
    assert_kv_intact(kv, s)
    compute(kv, s, 1)
    assert kv.counters.swap_out == kv.counters.swap_in == 1
    assert kv.counters.swap_in_blocks == private and kv.counters.swap_discarded_blocks == 0
    kv.release(s)
    assert tier_used(kv, Tier.HOST) == kv.entries.num_in(Tier.HOST)  # only demoted cache entries remain
    assert kv.num_free_blocks == LAYOUT.num_blocks


def test_swap_out_without_host_room_changes_nothing() -> None:
    kv = make_kv(host=2, prefix_cache=False)
    s = new_seq("s", list(range(1, 12)))
    start(kv, s, 10)
    table = list(s.block_ids)
    assert kv.swap_out(s) is None  # 3 private blocks, 2 host blocks
    assert s.block_ids == table and s.num_computed_tokens == 10 and not kv.is_swapped(s)
    assert tier_used(kv, Tier.HOST) == 0
    assert make_kv(prefix_cache=False).swap_out(s) is None  # no host tier at all


def test_swapped_kv_behind_a_lost_prefix_is_discarded() -> None:
    kv = make_kv(host=3)
    s = new_seq("s", list(range(1, 12)))
    start(kv, s, 10)
    assert kv.swap_out(s) == 1  # the tail; its 2 cached blocks stay in the cache
    kv.ensure_free(LAYOUT.num_blocks)  # they are demoted: the host is full now
    assert kv.peek_cached_tokens(s) == 10
    p = new_seq("p", list(range(60, 69)))  # 2 more cached blocks, evicted in turn: s's prefix falls off
    start(kv, p, 9)
    kv.release(p)
    kv.ensure_free(LAYOUT.num_blocks)
    assert kv.counters.kv_lower_dropped_blocks == 2
    assert kv.peek_cached_tokens(s) == 0  # the swapped tail is stranded behind the hole
    admission = kv.admit(s, 11)
    assert admission is not None and admission.num_swapped_in_blocks == 0
    assert s.num_computed_tokens == 0 and kv.counters.swap_discarded_blocks == 1
    kv.release(s)
    assert tier_used(kv, Tier.HOST) == kv.entries.num_in(Tier.HOST) == 2


def test_releasing_a_swapped_out_sequence_frees_its_host_blocks() -> None:
    kv = make_kv(host=4, prefix_cache=False)
    s = new_seq("s", list(range(1, 12)))
    start(kv, s, 10)
    assert kv.swap_out(s) == 3 and tier_used(kv, Tier.HOST) == 3
    kv.release(s)  # an abort while swapped out
    assert not kv.is_swapped(s) and tier_used(kv, Tier.HOST) == 0


def test_full_lower_tiers_push_down_then_drop_the_oldest() -> None:
    kv = make_kv(host=2, disk=2)
    for i in range(3):  # three prompts of 2 cacheable blocks each, evicted in turn
        seq = new_seq(f"p{i}", [i * 100 + t for t in range(1, 10)])  # 9 tokens: 2 full blocks
        start(kv, seq, 9)
        kv.release(seq)
        kv.ensure_free(LAYOUT.num_blocks)
    assert kv.counters.kv_demoted_blocks == 6
    assert kv.counters.kv_lower_dropped_blocks == 2  # p0's blocks fell off the bottom
    assert kv.entries.num_in(Tier.HOST) == 2 and kv.entries.num_in(Tier.DISK) == 2
    assert kv.peek_cached_tokens(new_seq("q0", [t for t in range(1, 10)])) == 0
    assert kv.peek_cached_tokens(new_seq("q1", [100 + t for t in range(1, 10)])) == 8  # on the disk
    q2 = new_seq("q2", [200 + t for t in range(1, 10)])
    assert start(kv, q2) == 8  # the newest, on the host
    assert_kv_intact(kv, q2)
    q1 = new_seq("q1b", [100 + t for t in range(1, 10)])
    assert start(kv, q1) == 8  # promoted straight from the disk
    assert_kv_intact(kv, q1)


def test_a_swap_takes_host_room_from_demoted_prefix_blocks() -> None:
    kv = make_kv(host=2)
    cached = new_seq("c", list(range(1, 10)))
    start(kv, cached, 9)
    kv.release(cached)
    kv.ensure_free(LAYOUT.num_blocks)
    assert kv.entries.num_in(Tier.HOST) == 2
    s = new_seq("s", list(range(40, 47)))  # 7 tokens, 6 computed: 1 cached + 1 private block
    start(kv, s, 6)
    assert kv.swap_out(s) == 1
    assert kv.counters.kv_lower_dropped_blocks == 1 and kv.entries.num_in(Tier.HOST) == 1


# ---------------------------------------------------------------------- configuration and command line
def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    return parser.parse_args(list(argv))


def test_tier_flags_reach_the_config() -> None:
    args = parse("--kv-tiers", "host, device,disk", "--kv-host-gb", "0.5", "--kv-disk-gb", "2", "--kv-disk-dir", "/tmp")
    section = config_from_args(args).kv_pool
    assert section.tiers == "device,host,disk" and section.tier_names == ("device", "host", "disk")
    assert section.host_memory_gb == 0.5 and section.disk_memory_gb == 2.0 and section.disk_dir == "/tmp"
    assert config_from_args(parse()).kv_pool.tiers == "device"


@pytest.mark.parametrize(
    ("tiers", "message"),
    [("device,ssd", "unknown tier(s) ['ssd']"), ("host", "device included"), ("device,host,host", "each tier once")],
)
def test_a_bad_tier_list_exits_2_before_loading(tiers: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Hi", "--kv-tiers", tiers]) == 2
    err = capsys.readouterr().err
    assert "kv_pool.tiers" in err and message in err


def test_a_bad_tier_size_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Hi", "--kv-tiers", "device,host", "--kv-host-gb", "0"]) == 2
    assert "kv_pool.host_memory_gb" in capsys.readouterr().err


def test_tier_sizes_become_pool_options() -> None:
    bytes_per_block = LAYOUT.bytes_per_block
    config = load_config(
        kv_pool={"tiers": "device,host,disk", "host_memory_gb": 10 * bytes_per_block / 1024**3, "disk_num_blocks": 7}
    )
    section = kv_pool_section(config, LAYOUT)
    assert section.options == {"host_blocks": 10, "disk_blocks": 7}
    assert kv_pool_section(load_config(), LAYOUT).options == {}
    with pytest.raises(ConfigError, match="conflict with kv_pool.tiers"):
        kv_pool_section(load_config(kv_pool={"tiers": "device,host", "options": {"host_blocks": 4}}), LAYOUT)
    with pytest.raises(ConfigError, match="holds no KV block"):
        kv_pool_section(load_config(kv_pool={"tiers": "device,host", "host_memory_gb": 1e-12}), LAYOUT)


def test_the_scheduler_may_swap_only_with_a_host_tier() -> None:
    config = load_config()
    assert build_ir_builder(config, LAYOUT, can_swap=False).swap_available is None  # type: ignore[attr-defined]
    told = build_ir_builder(config, LAYOUT, can_swap=True)
    assert told.swap_available is True  # type: ignore[attr-defined]
    assert told.cost.kv_bytes_per_token == LAYOUT.bytes_per_token  # type: ignore[attr-defined]
    off = load_config(scheduler_ir={"options": {"swap_available": False}})
    assert build_ir_builder(off, LAYOUT, can_swap=True).swap_available is False  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the engine, token-exact
ENGINE_BLOCK = 16
TIERED = {
    "host": {"tiers": "device,host", "host_num_blocks": 64},
    "host-disk": {"tiers": "device,host,disk", "host_num_blocks": 8, "disk_num_blocks": 64},
}


def pool_blocks(prompts: list[list[int]]) -> int:
    """The largest request fits alone, with a few blocks to spare; the eight together need far more."""
    return max(-(-(len(p) + NUM_NEW_TOKENS) // ENGINE_BLOCK) for p in prompts) + 4


@pytest.fixture(scope="module")
def untiered(make_engine: Callable[..., LLMEngine], prompts: list[list[int]]) -> RunResult:
    """The same small pool without tiers: preempts by recompute, drops evicted blocks."""
    engine = make_engine(kv_pool={"num_blocks": pool_blocks(prompts), "block_size": ENGINE_BLOCK})
    result = drive(engine, prompts)
    assert engine.metrics.counter("preemptions_total").value > 0
    return result


def counter(engine: LLMEngine, name: str) -> float:
    return engine.metrics.counter(name).value


@pytest.mark.slow
@pytest.mark.parametrize("tiers", sorted(TIERED))
@pytest.mark.parametrize("prefix_cache", [True, False], ids=["prefix-on", "prefix-off"])
def test_tiered_engine_is_token_exact_and_frees_every_block(
    tiers: str,
    prefix_cache: bool,
    make_engine: Callable[..., LLMEngine],
    prompts: list[list[int]],
    untiered: RunResult,
) -> None:
    num_blocks = pool_blocks(prompts)
    kv_pool: dict[str, Any] = {"num_blocks": num_blocks, "block_size": ENGINE_BLOCK, **TIERED[tiers]}
    engine = make_engine(kv_pool=kv_pool, prefix_cache={"enabled": prefix_cache})
    result = drive(engine, prompts)

    assert result.token_ids == untiered.token_ids
    assert result.finish_reasons == ["length"] * len(prompts)
    assert counter(engine, "requests_finished_total") == len(prompts) and not engine.has_unfinished()
    assert counter(engine, "swap_out_total") > 0 and counter(engine, "swap_in_total") > 0
    swapped_out = counter(engine, "swap_out_blocks_total")
    assert swapped_out == counter(engine, "swap_in_blocks_total") + counter(engine, "swap_discarded_blocks_total")
    assert counter(engine, "swap_out_bytes_total") == swapped_out * engine.kv.pool.layout.bytes_per_block
    if prefix_cache:
        assert counter(engine, "kv_demoted_blocks_total") > 0 and counter(engine, "kv_promoted_blocks_total") > 0
    kv = engine.kv
    assert kv.num_free_blocks == num_blocks  # every device block free or evictable again
    for usage in kv.pool.stats().tiers:
        if usage.tier is not Tier.DEVICE:
            assert usage.num_used_blocks == kv.entries.num_in(usage.tier)  # only demoted cache entries remain
    if not prefix_cache:
        assert kv.pool.num_free_blocks == num_blocks
    if tiers == "host-disk" and prefix_cache:
        directions = {(m.src_tier, m.dst_tier) for m in kv.pool.stats().migrations}
        assert (Tier.HOST, Tier.DISK) in directions or (Tier.DEVICE, Tier.DISK) in directions
