"""Policy choices from the command line reach the config, and bad ones fail before any model loads."""

from __future__ import annotations

import argparse

import pytest

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.engines.cli.main import main
from sagellm.engines.cli.options import add_engine_options, config_from_args
from sagellm.engines.engine.builder import build_eviction_policy


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    return parser.parse_args(list(argv))


def test_policy_flags_and_options_reach_the_config() -> None:
    args = parse(
        "--scheduler", "slo", "--scheduler-option", "ttft_slo_ms=500", "--scheduler-option", "tpot_slo_ms=80.5",
        "--eviction", "lfu", "--eviction-option", "aging=false", "--prefix-cache", "hash_chain",
    )  # fmt: skip
    config = config_from_args(args)
    assert config.scheduler_ir.implementation == "slo"
    assert config.scheduler_ir.options == {"ttft_slo_ms": 500, "tpot_slo_ms": 80.5}
    assert config.eviction_policy.implementation == "lfu" and config.eviction_policy.options == {"aging": False}
    assert config.prefix_cache.implementation == "hash_chain"


def test_help_lists_the_installed_implementations(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in registry.available("eviction_policy"):
        assert name in text


@pytest.mark.parametrize("bad", ["ttft_slo_ms", "=5"])
def test_malformed_option_exits_2(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Hi", "--scheduler-option", bad]) == 2
    assert "--scheduler-option expects KEY=VALUE" in capsys.readouterr().err


def test_unknown_policy_exits_2_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "Hi", "--eviction", "clairvoyant"]) == 2
    assert "no eviction_policy implementation named 'clairvoyant'" in capsys.readouterr().err


def test_a_predictor_needs_a_policy_that_takes_one() -> None:
    config = load_config(eviction_policy={"implementation": "lru"}, lifetime_predictor={"implementation": "any"})
    with pytest.raises(ConfigError, match="takes no lifetime predictor"):
        build_eviction_policy(config)


def test_learned_policy_without_a_configured_predictor_uses_its_own() -> None:
    if "learned" not in registry.available("eviction_policy"):
        pytest.skip("no learned eviction policy installed")
    policy = build_eviction_policy(load_config(eviction_policy={"implementation": "learned"}))
    assert policy.name == "learned"


def test_ggml_activations_flag_reaches_the_config_and_defaults_to_llama_cpps_int8() -> None:
    assert config_from_args(parse()).model.ggml_activations == "int8"
    assert config_from_args(parse("--ggml-activations", "float32")).model.ggml_activations == "float32"
    with pytest.raises(SystemExit) as exc:
        parse("--ggml-activations", "int4")
    assert exc.value.code == 2
