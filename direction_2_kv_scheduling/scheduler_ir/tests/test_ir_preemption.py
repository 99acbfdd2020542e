"""Preemption mode: swap or recompute by cost, only when the engine can swap; the plan says which."""

from __future__ import annotations

import pytest
from views import BS, run

from sagellm.core.protocols import SwapCapableIRBuilder
from sagellm.core.types import ExecutionPlan, SchedulerState
from sagellm.core.types.plan import PreemptionMode
from sagellm.scheduler_ir import (
    AdaptiveIRBuilder,
    CostModel,
    FIFOIRBuilder,
    PriorityIRBuilder,
    SLOIRBuilder,
    cheaper_mode,
    describe_plan,
)

#: 1 µs per token to swap (2 × 500 B / 1 GB/s); recompute 0.1 µs per token plus attention (1e-3 × n² / 2 µs).
COST = CostModel(
    kv_bytes_per_token=500,
    host_bandwidth_bytes_per_s=1e9,
    flops_per_token=100,
    attention_flops_coeff=1,
    compute_flops_per_s=1e9,
)


def test_cost_model_arithmetic() -> None:
    view = run("r", tokens=101, computed=100)  # 25 blocks of 4
    assert COST.swap_seconds(view, BS) == pytest.approx(2 * 25 * 4 * 500 / 1e9)
    assert COST.recompute_seconds(view) == pytest.approx((100 * 100 + 100 * 50) / 1e9)
    assert COST.prefill_seconds(100, 10) == pytest.approx((100 * 10 + 10 * 105) / 1e9)
    assert COST.step_seconds(64) == pytest.approx(0.02 + 64 * 100 / 1e9)
    assert COST.tokens_within(0.01) == 0  # inside the fixed overhead


def test_short_contexts_recompute_long_ones_swap() -> None:
    # swap 1e-6 n vs recompute 1e-7 n + 5e-10 n^2: crossover at n = 1800
    assert cheaper_mode(run("s", tokens=1001, computed=1000), BS, COST) is PreemptionMode.RECOMPUTE
    assert cheaper_mode(run("l", tokens=4001, computed=4000), BS, COST) is PreemptionMode.SWAP


def test_cpu_defaults_favour_swap() -> None:
    # host memory is the device's memory on CPU: copying is far cheaper than a prefill
    assert cheaper_mode(run("r", tokens=17, computed=16), BS, CostModel()) is PreemptionMode.SWAP


def out_of_blocks() -> SchedulerState:
    """Four decodes at block boundaries, no free block: the newest ("short") goes to make room for
    r0 and r1, then "long" finds nobody left behind it and preempts itself."""
    runs = (
        run("r0", 9, computed=8, arrival=0.0),
        run("r1", 9, computed=8, arrival=1.0),
        run("long", 4001, computed=4000, arrival=2.0, prompt=3000),
        run("short", 9, computed=8, arrival=3.0),
    )
    return SchedulerState(runs, (), num_free_blocks=0, block_size=BS)


@pytest.mark.parametrize("cls", [FIFOIRBuilder, PriorityIRBuilder, SLOIRBuilder, AdaptiveIRBuilder])
def test_every_policy_chooses_per_victim_when_swap_is_available(cls: type) -> None:
    plan: ExecutionPlan = cls(swap_available=True, cost=COST).build(out_of_blocks())
    assert plan.preempted == ("short", "long")
    assert plan.preemption_mode("long") is PreemptionMode.SWAP
    assert plan.preemption_mode("short") is PreemptionMode.RECOMPUTE
    assert plan.swapped_out == ("long",)


@pytest.mark.parametrize("cls", [FIFOIRBuilder, PriorityIRBuilder, SLOIRBuilder, AdaptiveIRBuilder])
def test_without_a_swap_tier_every_victim_recomputes(cls: type) -> None:
    plan: ExecutionPlan = cls(cost=COST).build(out_of_blocks())  # never told it may swap
    assert plan.preempted and plan.swapped_out == ()
    assert {plan.preemption_mode(r) for r in plan.preempted} == {PreemptionMode.RECOMPUTE}


def test_mode_of_a_sequence_that_is_not_preempted_is_none() -> None:
    plan = FIFOIRBuilder(swap_available=True, cost=COST).build(out_of_blocks())
    assert plan.preemption_mode("r0") is None


def test_describe_marks_swapped_victims() -> None:
    plan = FIFOIRBuilder(swap_available=True, cost=COST).build(out_of_blocks())
    assert "long (swap)" in describe_plan(plan).splitlines()[-1]


@pytest.mark.parametrize("cls", [FIFOIRBuilder, PriorityIRBuilder, SLOIRBuilder, AdaptiveIRBuilder])
def test_the_engine_turns_swapping_on_with_its_kv_bytes(cls: type) -> None:
    builder = cls(cost=COST)
    assert isinstance(builder, SwapCapableIRBuilder)
    builder.use_swap(int(COST.kv_bytes_per_token))
    assert builder.build(out_of_blocks()).swapped_out == ("long",)
    builder.use_swap(10**9)  # a token's KV so heavy that copying beats nothing: every victim recomputes
    assert builder.build(out_of_blocks()).swapped_out == ()


def test_swapping_configured_off_stays_off() -> None:
    builder = FIFOIRBuilder(swap_available=False, cost=COST)
    builder.use_swap(int(COST.kv_bytes_per_token))
    assert builder.swap_available is False and builder.build(out_of_blocks()).swapped_out == ()
