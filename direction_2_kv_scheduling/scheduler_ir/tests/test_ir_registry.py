"""Wiring: entry point, config section, package registry."""

from __future__ import annotations

import pytest

from sagellm.core.config import SchedulerSection, load_config
from sagellm.core.errors import ConfigError, RegistryError
from sagellm.core.protocols import IRBuilder
from sagellm.core.registry import available, create_ir_builder, load
from sagellm.scheduler_ir import BUILDERS, FIFOIRBuilder, builder_class, builder_from_section


def test_create_ir_builder_from_default_config() -> None:
    builder = create_ir_builder(load_config())
    assert isinstance(builder, FIFOIRBuilder) and isinstance(builder, IRBuilder)
    assert builder.name == "fifo"
    assert builder.limits.max_num_seqs == 64 and builder.limits.max_num_batched_tokens == 512
    assert builder.limits.enable_chunked_prefill


def test_config_values_reach_the_builder() -> None:
    cfg = load_config(scheduler_ir={"max_num_seqs": 8, "max_num_batched_tokens": 256, "enable_chunked_prefill": False})
    limits = create_ir_builder(cfg).limits  # type: ignore[attr-defined]
    assert (limits.max_num_seqs, limits.max_num_batched_tokens, limits.enable_chunked_prefill) == (8, 256, False)


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ConfigError, match="aging_rate"):
        FIFOIRBuilder.from_config(SchedulerSection(options={"aging_rate": 0.1}))


def test_every_package_policy_has_an_entry_point() -> None:
    assert "fifo" in available("ir_builder")
    for name, cls in BUILDERS.items():
        assert load("ir_builder", name) is cls


def test_package_registry_builds_from_a_section() -> None:
    assert isinstance(builder_from_section(SchedulerSection(max_num_seqs=4)), FIFOIRBuilder)
    with pytest.raises(RegistryError, match="known: fifo"):
        builder_class("lottery")
