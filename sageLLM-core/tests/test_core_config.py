"""Configuration: defaults, YAML, environment and keyword priority, and loud failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sagellm.core.config import KVPoolSection, SageLLMConfig, Section, load_config
from sagellm.core.errors import ConfigError
from sagellm.core.registry import GROUPS


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    path = tmp_path / "sagellm.yaml"
    path.write_text(
        "kv_pool:\n"
        "  block_size: 8\n"
        "  num_blocks: 256\n"
        "  options: {pin_memory: true}\n"
        "scheduler_ir:\n"
        "  implementation: priority\n"
        "  max_num_seqs: 3\n"
    )
    return path


def test_defaults() -> None:
    cfg = load_config()
    assert isinstance(cfg, SageLLMConfig)
    assert cfg.kv_pool.implementation == "paged" and cfg.kv_pool.block_size == 16 and cfg.kv_pool.num_blocks is None
    assert cfg.prefix_cache.implementation == "hash_chain" and cfg.prefix_cache.enabled
    assert cfg.eviction_policy.implementation == "lru"
    assert cfg.scheduler_ir.implementation == "fifo" and cfg.scheduler_ir.max_num_batched_tokens == 512
    assert cfg.server.host == "127.0.0.1" and cfg.server.port == 8000
    assert cfg.model.path is None and cfg.model.dtype == "auto"
    assert all(isinstance(getattr(cfg, name), Section) for name in SageLLMConfig.model_fields)


def test_every_registry_group_has_a_config_section() -> None:
    for kind, group in GROUPS.items():
        assert group.section in SageLLMConfig.model_fields, kind


def test_yaml_file(yaml_file: Path) -> None:
    cfg = load_config(yaml_file)
    assert cfg.kv_pool.block_size == 8 and cfg.kv_pool.num_blocks == 256
    assert cfg.kv_pool.options == {"pin_memory": True}
    assert cfg.scheduler_ir.implementation == "priority" and cfg.scheduler_ir.max_num_seqs == 3
    assert cfg.scheduler_ir.max_num_batched_tokens == 512, "unset keys keep their defaults"


def test_yaml_path_as_string_and_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(str(empty)) == load_config()


def test_yaml_applies_only_to_its_own_load(yaml_file: Path) -> None:
    load_config(yaml_file)
    assert load_config().kv_pool.block_size == 16
    assert SageLLMConfig().kv_pool.block_size == 16


def test_env_overrides_yaml(yaml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__KV_POOL__BLOCK_SIZE", "32")
    cfg = load_config(yaml_file)
    assert cfg.kv_pool.block_size == 32
    assert cfg.kv_pool.num_blocks == 256, "the rest of the YAML section survives"


def test_env_without_yaml_and_json_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__SERVER__PORT", "9001")
    monkeypatch.setenv("SAGELLM__EVICTION_POLICY__IMPLEMENTATION", "arc")
    monkeypatch.setenv("SAGELLM__EVICTION_POLICY__OPTIONS", '{"capacity": 10}')
    cfg = load_config()
    assert cfg.server.port == 9001
    assert cfg.eviction_policy.implementation == "arc" and cfg.eviction_policy.options == {"capacity": 10}


def test_kwargs_override_env_and_yaml(yaml_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__KV_POOL__BLOCK_SIZE", "32")
    cfg = load_config(yaml_file, kv_pool={"block_size": 64})
    assert cfg.kv_pool.block_size == 64
    assert cfg.scheduler_ir.max_num_seqs == 3


@pytest.mark.parametrize(
    ("overrides", "dotted"),
    [
        ({"kv_pool": {"block_size": 0}}, "kv_pool.block_size"),
        ({"kv_pool": {"block_size": 4096}}, "kv_pool.block_size"),
        ({"kv_pool": {"memory_gb": -1}}, "kv_pool.memory_gb"),
        ({"kv_pool": {"cache_dtype": "fp4"}}, "kv_pool.cache_dtype"),
        ({"scheduler_ir": {"max_num_batched_tokens": 8}}, "scheduler_ir.max_num_batched_tokens"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"model": {"dtype": "float64"}}, "model.dtype"),
        ({"collective_ops": {"world_size": 0}}, "collective_ops.world_size"),
        ({"speculative_decoding": {"num_speculative_tokens": 0}}, "speculative_decoding.num_speculative_tokens"),
    ],
)
def test_bad_value_names_dotted_field(overrides: dict[str, Any], dotted: str) -> None:
    with pytest.raises(ConfigError, match=dotted.replace(".", r"\.")) as info:
        load_config(**overrides)
    assert info.value.http_status == 400


@pytest.mark.parametrize("dtype", ["auto", "float32", "bfloat16", "float16", "int8"])
def test_every_kv_cache_dtype_is_accepted(dtype: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(kv_pool={"cache_dtype": dtype}).kv_pool.cache_dtype == dtype
    monkeypatch.setenv("SAGELLM__KV_POOL__CACHE_DTYPE", dtype)
    assert load_config().kv_pool.cache_dtype == dtype


def test_bad_env_value_names_dotted_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__KV_POOL__BLOCK_SIZE", "sixteen")
    with pytest.raises(ConfigError, match=r"kv_pool\.block_size.*sixteen"):
        load_config()


def test_bad_yaml_value_names_dotted_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("scheduler_ir:\n  max_num_seqs: 0\n")
    with pytest.raises(ConfigError, match=r"scheduler_ir\.max_num_seqs"):
        load_config(path)


def test_several_problems_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(kv_pool={"block_size": 0, "memory_gb": 0})
    assert "kv_pool.block_size" in str(info.value) and "kv_pool.memory_gb" in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [{"kv_pool": {"blok_size": 16}}, {"kv_poool": {}}, {"eviction_policy": {"capacity": 3}}],
)
def test_unknown_keys_rejected(overrides: dict[str, Any]) -> None:
    key = next(iter(overrides.values()))
    name = next(iter(key)) if key else next(iter(overrides))
    with pytest.raises(ConfigError, match=name):
        load_config(**overrides)


def test_unknown_yaml_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("kv_pool:\n  blok_size: 16\n")
    with pytest.raises(ConfigError, match=r"kv_pool\.blok_size"):
        load_config(path)


def test_unknown_env_keys_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__KV_POOL__BLOK_SIZE", "16")
    with pytest.raises(ConfigError, match=r"kv_pool\.blok_size"):
        load_config()
    monkeypatch.delenv("SAGELLM__KV_POOL__BLOK_SIZE")
    monkeypatch.setenv("SAGELLM__KVPOOL__BLOCK_SIZE", "16")
    with pytest.raises(ConfigError, match="SAGELLM__KVPOOL__BLOCK_SIZE"):
        load_config()


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/sagellm.yaml")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path)


@pytest.mark.parametrize("text", ["kv_pool: {block_size: [\n", "- 1\n- 2\n", "kv_pool: [1, 2]\n"])
def test_malformed_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path)


def test_bad_json_in_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGELLM__KV_POOL__OPTIONS", "{not json")
    with pytest.raises(ConfigError):
        load_config()


def test_section_assignment_is_validated() -> None:
    section = KVPoolSection()
    section.block_size = 32
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
        section.block_size = 0


def test_round_trip_through_dump(tmp_path: Path) -> None:
    import yaml

    cfg = load_config(kv_pool={"block_size": 32, "options": {"x": [1, 2]}})
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump()))
    assert load_config(path) == cfg
