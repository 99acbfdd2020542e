"""The sageLLM side of the LMDeploy adapter, built from a SageLLMConfig through the registry alone.

LMDeploy keeps its model, its KV memory and its block allocator; sageLLM
supplies decisions: which prefix blocks to reuse (prefix index), how cached
blocks rank for eviction (eviction policy), what each step runs (IR
builder), and optionally how collectives travel (comm backend). Each comes
from the config section the native engine uses, so switching a policy for
LMDeploy is the same config change as for sageLLM's own engine. No module
package is imported here: what is installed is what the registry finds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core import registry
from sagellm.core.config import KVPoolSection, SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import CommBackend, EvictionPolicy, IRBuilder, PrefixIndex
from sagellm.engines.engine.eviction import build_eviction_policy

NONE = registry.NO_IMPLEMENTATION
# Sections whose modules LMDeploy has no hook for: naming one is refused, never silently ignored.
UNUSED_SECTIONS = (
    "quantization",
    "speculative_decoding",
    "kernel_fusion",
    "kv_transfer",
    "overlap_pipeline",
    "sparsity",
    "cot_acceleration",
    "topology",
)


@dataclass(slots=True)
class SageLLMModules:
    """What the adapter plugs into LMDeploy's hooks; ``None`` leaves that hook with LMDeploy's own behaviour."""

    ir_builder: IRBuilder | None = None
    prefix_index: PrefixIndex | None = None
    eviction_policy: EvictionPolicy | None = None
    comm_backend: CommBackend | None = None


def build_modules(
    config: SageLLMConfig, *, block_size: int, rank: int | None = None, init_method: str | None = None
) -> SageLLMModules:
    """Build every module the config names for LMDeploy, checking first what LMDeploy cannot honour.

    ``block_size`` is LMDeploy's (``CacheConfig.block_size``): the KV layout
    is LMDeploy's, so the prefix index must key blocks of that size, whatever
    ``kv_pool.block_size`` says (the ``kv_pool`` section sizes sageLLM's own
    pool, which LMDeploy does not use). ``rank`` is needed only when
    ``collective_ops`` names a backend.
    """
    check_config(config)
    index = _prefix_index(config, block_size)
    return SageLLMModules(
        ir_builder=None if config.scheduler_ir.implementation == NONE else registry.create_ir_builder(config),
        prefix_index=index,
        eviction_policy=_eviction_policy(config) if index is not None else None,
        comm_backend=_comm_backend(config, rank, init_method),
    )


def check_config(config: SageLLMConfig) -> None:
    """Refuse settings LMDeploy's scheduler would silently not follow.

    LMDeploy prefills a waiting sequence whole in one step, so a plan that
    admits only a chunk of a prompt could not be applied as planned; the
    builder must plan whole prompts (``enable_chunked_prefill: false``).
    """
    if config.scheduler_ir.implementation != NONE and config.scheduler_ir.enable_chunked_prefill:
        raise ConfigError(
            "LMDeploy prefills whole prompts, so its plans cannot chunk them: "
            "set scheduler_ir.enable_chunked_prefill to false (or scheduler_ir.implementation to 'none')"
        )
    if config.collective_ops.implementation != NONE and config.domestic_interconnect.implementation != NONE:
        raise ConfigError("name one of collective_ops and domestic_interconnect for LMDeploy's collectives, not both")
    for section in UNUSED_SECTIONS:
        name = getattr(config, section).implementation
        if name not in (NONE, "auto"):
            raise ConfigError(
                f"{section}.implementation '{name}' has no hook in LMDeploy, so the adapter would ignore it; "
                f"set it to '{NONE}'"
            )
    if config.kv_pool != KVPoolSection():
        raise ConfigError(
            "LMDeploy's own allocator and cache engine hold the KV, so kv_pool settings would be ignored; "
            "size LMDeploy's cache with its CacheConfig and leave kv_pool at its defaults"
        )


def _prefix_index(config: SageLLMConfig, block_size: int) -> PrefixIndex | None:
    section = config.prefix_cache
    if not section.enabled or section.implementation == NONE:
        return None
    return registry.create_prefix_index(config, block_size=block_size)


def _eviction_policy(config: SageLLMConfig) -> EvictionPolicy | None:
    """The configured policy (with its lifetime predictor), or None to leave LMDeploy's own ranking."""
    return None if config.eviction_policy.implementation == NONE else build_eviction_policy(config)


def _comm_backend(config: SageLLMConfig, rank: int | None, init_method: str | None) -> CommBackend | None:
    """This rank's backend for LMDeploy's collectives (collective_ops, or a vendor's domestic_interconnect)."""
    vendor = config.domestic_interconnect.implementation != NONE
    if config.collective_ops.implementation == NONE and not vendor:
        return None
    if rank is None:
        raise ConfigError("a comm backend for LMDeploy needs this process's rank: pass rank= to install()")
    deps = {
        "rank": rank,
        "world_size": config.collective_ops.world_size,
        "init_method": init_method or config.collective_ops.init_method or "tcp://127.0.0.1:29500",
        "timeout_s": config.collective_ops.timeout_s,
    }
    if vendor:
        return registry.create_interconnect_backend(config, **deps)
    return registry.create_comm_backend(config, **deps)
