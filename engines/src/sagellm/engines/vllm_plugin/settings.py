"""The plugin's configuration: a SageLLMConfig carried in vLLM's ``kv_connector_extra_config``.

::

    --kv-transfer-config '{"kv_connector": "SageLLMConnector",
                           "kv_connector_module_path": "sagellm.engines.vllm_plugin.connector",
                           "kv_role": "kv_both",
                           "kv_connector_extra_config": {
                               "sagellm_config": {"prefix_cache": {"implementation": "radix"},
                                                  "kv_pool": {"tiers": "device,host,disk",
                                                              "host_memory_gb": 8, "num_blocks": 256}}}}'

``sagellm_config_file`` names a YAML file instead (or as well: the mapping
wins), read as ``sagellm --config`` reads it; ``SAGELLM__*`` environment
variables apply as everywhere. The sections used:

* ``prefix_cache`` -- the index that matches prompts against stored blocks;
* ``kv_pool`` -- ``implementation`` (a TieredKVPool), ``tiers`` and the
  host/disk sizes; ``num_blocks`` (or ``memory_gb``) sizes the pool's
  device tier, which here is only a staging area for one step's copies.

Every other section is refused when it names an implementation: vLLM
schedules, evicts and runs the model itself, so it would be ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig, load_config
from sagellm.core.errors import ConfigError
from sagellm.engines.engine.builder import kv_pool_section
from sagellm.engines.vllm_plugin.block_layout import BlockShape
from sagellm.engines.vllm_plugin.plan import TierSizes

EXTRA_KEYS = ("sagellm_config", "sagellm_config_file")
USED_SECTIONS = ("model", "kv_pool", "prefix_cache", "server")
GIB = 1024**3


@dataclass(frozen=True, slots=True)
class PluginSettings:
    """The SageLLMConfig the connector runs with, checked for what the plugin can honour."""

    config: SageLLMConfig

    @classmethod
    def from_extra_config(cls, extra: Mapping[str, Any] | None) -> PluginSettings:
        """Read ``kv_connector_extra_config``; unknown keys are an error, so typos surface."""
        extra = dict(extra or {})
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:
            raise ConfigError(f"unknown sageLLM connector option(s) {unknown} (known: {list(EXTRA_KEYS)})")
        sections = extra.get("sagellm_config") or {}
        if not isinstance(sections, Mapping):
            raise ConfigError("sagellm_config must be a mapping of config sections")
        settings = cls(load_config(extra.get("sagellm_config_file"), **dict(sections)))
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse a config the connector could not follow, before vLLM starts serving."""
        config = self.config
        if not config.prefix_cache.enabled or config.prefix_cache.implementation == registry.NO_IMPLEMENTATION:
            raise ConfigError("the sageLLM connector matches prompts with the prefix index: enable prefix_cache")
        if config.kv_pool.tier_names == ("device",) and not {"host_blocks", "disk_blocks"} & set(
            config.kv_pool.options
        ):
            raise ConfigError(
                "the sageLLM connector stores vLLM's blocks in the pool's lower tiers: "
                "set kv_pool.tiers to device,host or device,host,disk"
            )
        for name in type(config).model_fields:
            section = getattr(config, name)
            chosen = getattr(section, "implementation", registry.NO_IMPLEMENTATION)
            if name in USED_SECTIONS or chosen in (registry.NO_IMPLEMENTATION, "auto", type(section)().implementation):
                continue  # used, off, or the default nobody chose (vLLM's own scheduler and eviction run)
            raise ConfigError(
                f"{name}.implementation '{chosen}' has no place in vLLM's connector, which would ignore it; "
                f"leave it at its default or '{registry.NO_IMPLEMENTATION}'"
            )

    def tier_sizes(self, shape: BlockShape) -> TierSizes:
        """Staging, host and disk blocks for vLLM blocks of ``shape`` (both connector sides agree on it)."""
        section = self.config.kv_pool
        staging = section.num_blocks or int(section.memory_gb * GIB // shape.bytes_per_block)
        if staging < 1:
            raise ConfigError(f"kv_pool.memory_gb={section.memory_gb} holds no vLLM block of {shape.bytes_per_block} B")
        options = kv_pool_section(self.config, shape.pool_layout(staging, "cpu")).options
        return TierSizes(staging, int(options.get("host_blocks", 0)), int(options.get("disk_blocks", 0)))
