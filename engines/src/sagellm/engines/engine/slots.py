"""Every module slot of the configuration names an installed implementation or ``none``.

The configuration has a section for each of the 15 module slots, and a
slot this engine does not wire yet used to be accepted and ignored:
``SAGELLM__SPECULATIVE_DECODING__IMPLEMENTATION=ngram sagellm serve``
started and did nothing. So, before any weight is loaded, a name that is
not installed fails with the list of what is, and an installed one that
this engine cannot use fails too -- configuration is never silently
ignored.
"""

from __future__ import annotations

from collections.abc import Collection

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError, RegistryError

NO_IMPLEMENTATION = registry.NO_IMPLEMENTATION
AUTO = "auto"  # kernel_fusion only: the installed CPU kernel set on CPU, none elsewhere

# Registry kinds a single engine builds from its config.
ENGINE_KINDS = frozenset(
    {
        "kv_pool",
        "ir_builder",
        "prefix_index",
        "eviction_policy",
        "lifetime_predictor",
        "quantizer",
        "sparsifier",  # prunes the decoder's linears at load (engine/sparsify.py)
        "fused_kernel",
        "speculative_decoder",
        "cot_accelerator",  # probes, budgets and self-consistency for requests that ask (engine/cot_driver.py)
        "comm_backend",  # tensor parallelism's collectives (collective_ops.world_size > 1)
        "topology_detector",  # where tensor-parallel ranks run (engine/cpu_placement.py)
        "interconnect_backend",  # a vendor's collectives for tensor parallelism, instead of comm_backend
    }
)
# The disaggregated prefill/decode workers (sagellm.engines.disagg) use the KV transfer channel as well,
# and an overlap manager when one is configured (the prefill worker ships KV while it prefills on).
# They do not speculate (the decode worker runs plain decode steps), nor fork probes or samples.
NOT_DISAGGREGATED = frozenset({"speculative_decoder", "cot_accelerator"})
DISAGGREGATED_KINDS = (ENGINE_KINDS - NOT_DISAGGREGATED) | {"kv_transfer_channel", "overlap_manager"}
PREFIX_CACHE_KINDS = frozenset({"prefix_index", "eviction_policy"})  # unused when prefix_cache.enabled is false


def check_slots(config: SageLLMConfig, wired: Collection[str] = ENGINE_KINDS) -> None:
    """Raise ConfigError unless every slot is off or names an installed implementation that is ``wired``."""
    for kind, group in registry.GROUPS.items():
        if kind in PREFIX_CACHE_KINDS and not config.prefix_cache.enabled:
            continue
        name = getattr(config, group.section).implementation
        if name == NO_IMPLEMENTATION or (kind == "fused_kernel" and name == AUTO):
            continue
        try:
            registry.load(kind, name)
        except RegistryError as exc:
            raise ConfigError(str(exc)) from None
        if kind not in wired:
            raise ConfigError(
                f"{group.section}.implementation '{name}' is installed, but this engine does not use "
                f"a {group.section} module{_where(kind)}; set it to '{NO_IMPLEMENTATION}'"
            )


def _where(kind: str) -> str:
    disaggregated_only = kind in DISAGGREGATED_KINDS - ENGINE_KINDS
    return " (only disaggregated prefill/decode does)" if disaggregated_only else " yet"
