"""Wiring: entry points, config section, package registry, options."""

from __future__ import annotations

from importlib.metadata import distribution

import pytest

from sagellm.core.config import SchedulerSection, load_config
from sagellm.core.errors import ConfigError, RegistryError
from sagellm.core.protocols import IRBuilder
from sagellm.core.registry import available, create_ir_builder, load
from sagellm.scheduler_ir import (
    BUILDERS,
    AdaptiveIRBuilder,
    FIFOIRBuilder,
    PriorityIRBuilder,
    SLOIRBuilder,
    ViewPrefixProbe,
    builder_class,
    builder_from_section,
)


def test_create_ir_builder_from_default_config() -> None:
    builder = create_ir_builder(load_config())
    assert isinstance(builder, FIFOIRBuilder) and isinstance(builder, IRBuilder)
    assert builder.name == "fifo"
    assert builder.limits.max_num_seqs == 64 and builder.limits.max_num_batched_tokens == 512
    assert builder.limits.enable_chunked_prefill
    assert not builder.swap_available and builder.prefix_window == 0


def test_config_values_reach_the_builder() -> None:
    cfg = load_config(scheduler_ir={"max_num_seqs": 8, "max_num_batched_tokens": 256, "enable_chunked_prefill": False})
    limits = create_ir_builder(cfg).limits  # type: ignore[attr-defined]
    assert (limits.max_num_seqs, limits.max_num_batched_tokens, limits.enable_chunked_prefill) == (8, 256, False)


@pytest.mark.parametrize("name", ["fifo", "priority", "slo", "adaptive"])
def test_every_policy_is_an_entry_point_built_from_config(name: str) -> None:
    builder = create_ir_builder(load_config(scheduler_ir={"implementation": name}))
    assert isinstance(builder, BUILDERS[name]) and isinstance(builder, IRBuilder)
    assert builder.name == name


def test_every_package_policy_has_an_entry_point() -> None:
    assert set(BUILDERS) <= set(available("ir_builder"))
    for name, cls in BUILDERS.items():
        assert load("ir_builder", name) is cls


def test_policy_options_reach_the_builder() -> None:
    options = {
        "ttft_slo_ms": 500,
        "tpot_slo_ms": 50,
        "swap_available": True,
        "prefix_window": 16,
        "compute_flops_per_s": 4e14,
        "kv_bytes_per_token": 131_072,
    }
    builder = create_ir_builder(load_config(scheduler_ir={"implementation": "slo", "options": options}))
    assert isinstance(builder, SLOIRBuilder)
    assert (builder.targets.ttft_s, builder.targets.tpot_s, builder.targets.max_wait_s) == (0.5, 0.05, 5.0)
    assert builder.swap_available and builder.prefix_window == 16
    assert builder.cost.compute_flops_per_s == 4e14 and builder.cost.kv_bytes_per_token == 131_072
    priority = PriorityIRBuilder.from_config(SchedulerSection(options={"aging_rate": 0.25}))
    assert priority.aging_rate == 0.25


def test_engine_dependencies_pass_through_from_config() -> None:
    probe = ViewPrefixProbe()
    builder = create_ir_builder(load_config(scheduler_ir={"implementation": "priority"}), prefix_probe=probe)
    assert builder.prefix_probe is probe  # type: ignore[attr-defined]


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ConfigError, match="aging_rate"):
        FIFOIRBuilder.from_config(SchedulerSection(options={"aging_rate": 0.1}))
    with pytest.raises(ConfigError, match="ttft_slo_ms"):
        PriorityIRBuilder.from_config(SchedulerSection(options={"ttft_slo_ms": 100}))


@pytest.mark.parametrize(
    ("cls", "options", "match"),
    [
        (PriorityIRBuilder, {"aging_rate": -1}, "aging_rate"),
        (SLOIRBuilder, {"ttft_slo_ms": 0}, "ttft_slo_ms"),
        (SLOIRBuilder, {"tpot_slo_ms": "fast"}, "tpot_slo_ms"),
        (SLOIRBuilder, {"min_prefill_tokens": -1}, "min_prefill_tokens"),
        (FIFOIRBuilder, {"prefix_window": -2}, "prefix_window"),
        (FIFOIRBuilder, {"swap_available": "yes"}, "swap_available"),
        (FIFOIRBuilder, {"compute_flops_per_s": 0}, "compute_flops_per_s"),
        (FIFOIRBuilder, {"host_bandwidth_bytes_per_s": "fast"}, "host_bandwidth_bytes_per_s"),
        (AdaptiveIRBuilder, {"loaded_policy": "lottery"}, "loaded_policy"),
        (AdaptiveIRBuilder, {"queue_low": 40, "queue_high": 32}, "low < high"),
        (AdaptiveIRBuilder, {"kv_high": 1.5}, "kv_high"),
        (AdaptiveIRBuilder, {"loaded_policy": "priority", "ttft_slo_ms": 100}, "do not apply"),
    ],
)
def test_bad_option_values_are_config_errors(cls: type, options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        cls.from_config(SchedulerSection(options=options))


def test_package_registry_builds_from_a_section() -> None:
    assert isinstance(builder_from_section(SchedulerSection(max_num_seqs=4)), FIFOIRBuilder)
    assert isinstance(builder_from_section(SchedulerSection(implementation="adaptive")), AdaptiveIRBuilder)
    with pytest.raises(RegistryError, match="known: adaptive, fifo, priority, slo"):
        builder_class("lottery")


def test_every_entry_point_of_this_distribution_resolves() -> None:
    """The names come from pyproject.toml alone: each one builds, and no other name appears."""
    ours = distribution("sagellm-scheduler-ir").entry_points.select(group="sagellm.ir_builder")
    assert sorted(BUILDERS) == sorted(ep.name for ep in ours) != []
    for ep in ours:
        assert ep.name in BUILDERS and builder_class(ep.name) is ep.load()
        assert builder_from_section(SchedulerSection(implementation=ep.name)).name == ep.name


def test_unknown_name_lists_every_entry_point() -> None:
    with pytest.raises(RegistryError) as raised:
        builder_class("lottery")
    assert all(name in str(raised.value) for name in BUILDERS)
    assert "lottery" not in BUILDERS and BUILDERS.get("lottery") is None
