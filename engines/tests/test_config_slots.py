"""Configuration is never silently ignored: every module slot is off or names an installed, used implementation.

Checked before any weight loads (``build_engine`` calls ``check_slots``
first), so these tests need no model.
"""

from __future__ import annotations

from typing import Any

import pytest

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.engines.cli.main import EXIT_BAD_INPUT, main
from sagellm.engines.engine.slots import DISAGGREGATED_KINDS, ENGINE_KINDS, check_slots
from sagellm.engines.engine.tensor_parallel import check_tensor_parallel

UNWIRED = sorted(group.section for kind, group in registry.GROUPS.items() if kind not in DISAGGREGATED_KINDS)


def test_the_defaults_pass() -> None:
    check_slots(load_config())


def test_every_slot_is_a_registry_group() -> None:
    """15 module slots, one registry group (entry-point group + Protocol) each."""
    assert len(registry.GROUPS) == 15
    assert {"sparsifier", "cot_accelerator"} <= ENGINE_KINDS
    assert set(UNWIRED) == {"speculative_decoding", "cot_acceleration"}  # disaggregated workers do neither
    assert {"comm_backend", "interconnect_backend", "topology_detector"} <= ENGINE_KINDS
    assert "speculative_decoder" in ENGINE_KINDS and "speculative_decoder" not in DISAGGREGATED_KINDS


@pytest.mark.parametrize("section", UNWIRED)
def test_a_name_that_is_not_installed_lists_what_is(section: str) -> None:
    with pytest.raises(ConfigError, match=rf"no \w+ implementation named 'not-installed' \(available: .*{section}"):
        check_slots(load_config(**{section: {"implementation": "not-installed"}}))


def test_a_misspelt_engine_slot_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"'pagd' \(available: .*paged"):
        check_slots(load_config(kv_pool={"implementation": "pagd"}))


def test_an_installed_implementation_the_engine_cannot_use_is_refused() -> None:
    registry.register("overlap_manager", "test-overlap", object)
    try:
        with pytest.raises(ConfigError, match="'test-overlap' is installed, but this engine does not use"):
            check_slots(load_config(overlap_pipeline={"implementation": "test-overlap"}))
    finally:
        registry.unregister("overlap_manager", "test-overlap")


def test_kv_transfer_is_for_the_disaggregated_engine_only() -> None:
    config = load_config(kv_transfer={"implementation": "shm"})
    with pytest.raises(ConfigError, match="only disaggregated prefill/decode"):
        check_slots(config, ENGINE_KINDS)
    check_slots(config, DISAGGREGATED_KINDS)


def test_tensor_parallelism_refuses_what_it_cannot_run_before_loading() -> None:
    with pytest.raises(ConfigError, match="tensor_parallel_size=2 does not run with speculative decoding"):
        check_tensor_parallel(
            load_config(collective_ops={"world_size": 2}, speculative_decoding={"implementation": "ngram"})
        )


def test_switched_off_slots_are_not_looked_up() -> None:
    check_slots(load_config(prefix_cache={"enabled": False, "implementation": "absent"}))
    check_slots(load_config(kernel_fusion={"implementation": "auto"}, quantization={"implementation": "none"}))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SAGELLM__SPECULATIVE_DECODING__IMPLEMENTATION", "not-installed"),
        ("SAGELLM__SPARSITY__IMPLEMENTATION", "2of4"),
        ("SAGELLM__COLLECTIVE_OPS__IMPLEMENTATION", "not-installed"),
    ],
)
def test_the_cli_exits_2_before_loading_the_model(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)
    loaded: list[Any] = []
    monkeypatch.setattr("sagellm.engines.engine.builder.load_checkpoint", lambda *a, **k: loaded.append(a))
    assert main(["generate", "--max-tokens", "2", "hi"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("sagellm: error:") and "Traceback" not in err
    assert variable.split("__")[1].lower() in err
    assert not loaded
