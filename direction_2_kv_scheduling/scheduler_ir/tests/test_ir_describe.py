"""describe_plan: one readable line per chunk."""

from __future__ import annotations

from sagellm.core.types import ExecutionPlan, ScheduledChunk
from sagellm.scheduler_ir import describe_plan


def test_describe_plan_lists_every_chunk() -> None:
    plan = ExecutionPlan(
        chunks=(ScheduledChunk("r0", 12, 1, True), ScheduledChunk("w4", 8, 64, False)),
        admitted=("w4",),
        preempted=("r3",),
    )
    lines = describe_plan(plan).splitlines()
    assert lines[0] == "2 chunks, 65 tokens (1 decode + 64 prefill), 1 admitted, 1 preempted"
    assert lines[1].split() == ["decode", "r0", "[12,", "13)", "1", "tok"]
    assert lines[2].split() == ["prefill", "w4", "[8,", "72)", "64", "tok", "admitted"]
    assert lines[3] == "  preempted: r3"
    assert len(lines) == 4


def test_describe_empty_plan_is_one_line() -> None:
    assert describe_plan(ExecutionPlan()) == "0 chunks, 0 tokens (0 decode + 0 prefill), 0 admitted, 0 preempted"


def test_describe_names_the_policy_and_swapped_victims() -> None:
    plan = ExecutionPlan(preempted=("r3", "r4"), swapped_out=("r4",), policy="adaptive:slo")
    lines = describe_plan(plan).splitlines()
    assert lines[0].endswith("2 preempted [adaptive:slo]")
    assert lines[1] == "  preempted: r3, r4 (swap)"
