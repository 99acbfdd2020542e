"""Adaptive policy: FIFO when calm, the loaded policy under load, hysteresis, and reporting."""

from __future__ import annotations

from views import BS, ids, run, wait

from sagellm.core.metrics import MetricsRegistry
from sagellm.core.types import SchedulerState
from sagellm.scheduler_ir import AdaptiveIRBuilder, Load, LoadMonitor


def state(num_waiting: int = 0, held: int = 0, free: int = 100, now: float = 100.0) -> SchedulerState:
    """``held`` blocks in one running decode; ``num_waiting`` small requests, newest most urgent."""
    running = (run("r", tokens=held * BS + 1, computed=held * BS, prompt=4),) if held else ()
    waiting = tuple(wait(f"w{i}", arrival=float(i), priority=-i) for i in range(num_waiting))
    return SchedulerState(running, waiting, num_free_blocks=free, block_size=BS, now=now)


def test_load_reads_queue_length_and_kv_usage() -> None:
    assert Load.of(state(num_waiting=3, held=30, free=70)) == Load(3, 0.3)
    assert Load.of(SchedulerState((), (), num_free_blocks=0, block_size=BS)) == Load(0, 0.0)


def test_monitor_switches_with_hysteresis() -> None:
    monitor = LoadMonitor(queue_high=10, queue_low=4, kv_high=0.9, kv_low=0.7)
    trace = [(0, 0.0), (9, 0.5), (10, 0.5), (6, 0.5), (5, 0.8), (4, 0.7), (9, 0.85), (0, 0.95)]
    assert [monitor.update(Load(q, kv)) for q, kv in trace] == [
        False,  # calm
        False,  # below both high marks
        True,  # queue reached 10
        True,  # inside the band: stays loaded
        True,  # queue low enough but KV 0.8 > 0.7
        False,  # both at their low marks
        False,  # inside the band: stays calm
        True,  # KV reached 0.9
    ]
    assert monitor.num_switches == 3


def test_calm_runs_fifo_loaded_runs_slo_and_the_plan_says_which() -> None:
    builder = AdaptiveIRBuilder(max_num_seqs=64, queue_high=8, queue_low=2)
    calm = builder.build(state(num_waiting=3))
    assert calm.policy == "adaptive:fifo" and builder.mode == "fifo" and calm.admitted == ("w0", "w1", "w2")
    loaded = builder.build(state(num_waiting=8))
    assert loaded.policy == "adaptive:slo" and builder.mode == "slo" and builder.num_switches == 1
    assert builder.build(state(num_waiting=5)).policy == "adaptive:slo"  # in the band
    assert builder.build(state(num_waiting=2)).policy == "adaptive:fifo"
    assert builder.num_switches == 2


def test_loaded_priority_mode_follows_priorities() -> None:
    builder = AdaptiveIRBuilder(max_num_seqs=2, loaded_policy="priority", aging_rate=0.0, queue_high=4, queue_low=1)
    assert builder.build(state(num_waiting=3)).admitted == ("w0", "w1")  # calm: arrival order
    plan = builder.build(state(num_waiting=4))
    assert plan.policy == "adaptive:priority" and plan.admitted == ("w3", "w2")  # loaded: most urgent first


def test_kv_pressure_alone_switches() -> None:
    builder = AdaptiveIRBuilder(kv_high=0.5, kv_low=0.2)
    assert builder.build(state(held=60, free=40)).policy == "adaptive:slo"
    assert builder.build(state(held=30, free=70)).policy == "adaptive:slo"  # 0.3: in the band
    assert builder.build(state(held=10, free=90)).policy == "adaptive:fifo"


def test_switches_and_mode_are_recorded_in_metrics() -> None:
    metrics = MetricsRegistry()
    builder = AdaptiveIRBuilder(queue_high=4, queue_low=1, metrics=metrics)
    for n in (0, 5, 5, 0, 6):
        builder.build(state(num_waiting=n))
    values = {m.name: m.value for m in metrics.collect() if hasattr(m, "value")}
    assert values["sagellm_scheduler_adaptive_switches_total"] == 3
    assert values["sagellm_scheduler_adaptive_loaded"] == 1.0


def test_the_loaded_policy_gets_its_options_and_the_common_ones() -> None:
    builder = AdaptiveIRBuilder(ttft_slo_ms=250, swap_available=True, prefix_window=8)
    loaded = builder.loaded_builder
    assert loaded.targets.ttft_s == 0.25  # type: ignore[attr-defined]
    assert loaded.swap_available and loaded.prefix_window == 8
    assert ids(builder.order(state(num_waiting=2)).waiting) == ["w0", "w1"]
