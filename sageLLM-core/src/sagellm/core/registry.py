"""Find implementations by entry point and build them from configuration.

Packages advertise implementations in their ``pyproject.toml``::

    [project.entry-points."sagellm.prefix_index"]
    hash_chain = "sagellm.prefix_cache:HashChainPrefixIndex"

Engines then call ``create_prefix_index(config)`` and never import the
package. An entry-point object is built with ``obj.from_config(section,
**deps)`` when it has that classmethod, otherwise ``obj(**section.options,
**deps)``; the result must satisfy the group's Protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar, cast

from sagellm.core.config import SageLLMConfig, Section
from sagellm.core.errors import RegistryError
from sagellm.core.protocols import (
    CommBackend,
    CoTAccelerator,
    EvictionPolicy,
    FusedKernel,
    InterconnectBackend,
    IRBuilder,
    KVPool,
    KVTransferChannel,
    LifetimePredictor,
    OverlapManager,
    PrefixIndex,
    Quantizer,
    Sparsifier,
    SpeculativeDecoder,
    TopologyDetector,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Group:
    """One kind of pluggable component: entry-point group, protocol, config section."""

    entry_point_group: str
    protocol: type
    section: str


GROUPS: dict[str, Group] = {
    "prefix_index": Group("sagellm.prefix_index", PrefixIndex, "prefix_cache"),
    "kv_pool": Group("sagellm.kv_pool", KVPool, "kv_pool"),
    "eviction_policy": Group("sagellm.eviction_policy", EvictionPolicy, "eviction_policy"),
    "ir_builder": Group("sagellm.ir_builder", IRBuilder, "scheduler_ir"),
    "lifetime_predictor": Group("sagellm.lifetime_predictor", LifetimePredictor, "lifetime_predictor"),
    "topology_detector": Group("sagellm.topology_detector", TopologyDetector, "topology"),
    "comm_backend": Group("sagellm.comm_backend", CommBackend, "collective_ops"),
    "kv_transfer_channel": Group("sagellm.kv_transfer_channel", KVTransferChannel, "kv_transfer"),
    "overlap_manager": Group("sagellm.overlap_manager", OverlapManager, "overlap_pipeline"),
    "quantizer": Group("sagellm.quantizer", Quantizer, "quantization"),
    "sparsifier": Group("sagellm.sparsifier", Sparsifier, "sparsity"),
    "speculative_decoder": Group("sagellm.speculative_decoder", SpeculativeDecoder, "speculative_decoding"),
    "fused_kernel": Group("sagellm.fused_kernel", FusedKernel, "kernel_fusion"),
    "cot_accelerator": Group("sagellm.cot_accelerator", CoTAccelerator, "cot_acceleration"),
    "interconnect_backend": Group("sagellm.interconnect_backend", InterconnectBackend, "domestic_interconnect"),
}
NO_IMPLEMENTATION = "none"  # the value of a slot that is switched off

_local: dict[str, dict[str, Any]] = {kind: {} for kind in GROUPS}


def register(kind: str, name: str, factory: Any) -> None:
    """Register an implementation in-process (tests, notebooks, plugins not installed)."""
    _group(kind)
    _local[kind][name] = factory


def unregister(kind: str, name: str) -> None:
    _group(kind)
    _local[kind].pop(name, None)


def available(kind: str) -> dict[str, str]:
    """Implementation names of one kind mapped to where they come from."""
    group = _group(kind)
    found = {ep.name: ep.value for ep in entry_points(group=group.entry_point_group)}
    found.update({name: f"<registered> {obj!r}" for name, obj in _local[kind].items()})
    return found


def load(kind: str, name: str) -> Any:
    """The factory object registered under ``name`` (not yet built)."""
    group = _group(kind)
    if name in _local[kind]:
        return _local[kind][name]
    for ep in entry_points(group=group.entry_point_group, name=name):
        try:
            return ep.load()
        except Exception as exc:  # broken plugin: report which one and why
            raise RegistryError(f"cannot load {kind} '{name}' from {ep.value}: {exc}") from exc
    names = ", ".join(sorted(available(kind))) or "none installed"
    raise RegistryError(
        f"no {kind} implementation named '{name}' (available: {names}); "
        f"install the package that provides it or fix config section '{group.section}'"
    )


def create(kind: str, config: SageLLMConfig | Section, **deps: Any) -> Any:
    """Build the implementation a config section names and check its protocol."""
    group = _group(kind)
    section = getattr(config, group.section) if isinstance(config, SageLLMConfig) else config
    factory = load(kind, section.implementation)
    built = _build(factory, section, deps)
    if not isinstance(built, group.protocol):
        raise RegistryError(
            f"{kind} '{section.implementation}' built a {type(built).__name__}, "
            f"which does not implement {group.protocol.__name__}"
        )
    return built


def _build(factory: Any, section: Section, deps: dict[str, Any]) -> Any:
    from_config = getattr(factory, "from_config", None)
    if callable(from_config):
        return from_config(section, **deps)
    return cast(Callable[..., Any], factory)(**section.options, **deps)


def _group(kind: str) -> Group:
    try:
        return GROUPS[kind]
    except KeyError:
        raise RegistryError(f"unknown component kind '{kind}' (known: {', '.join(GROUPS)})") from None


def create_prefix_index(config: SageLLMConfig | Section, **deps: Any) -> PrefixIndex:
    return cast(PrefixIndex, create("prefix_index", config, **deps))


def create_kv_pool(config: SageLLMConfig | Section, **deps: Any) -> KVPool:
    return cast(KVPool, create("kv_pool", config, **deps))


def create_eviction_policy(config: SageLLMConfig | Section, **deps: Any) -> EvictionPolicy:
    return cast(EvictionPolicy, create("eviction_policy", config, **deps))


def create_ir_builder(config: SageLLMConfig | Section, **deps: Any) -> IRBuilder:
    return cast(IRBuilder, create("ir_builder", config, **deps))


def create_lifetime_predictor(config: SageLLMConfig | Section, **deps: Any) -> LifetimePredictor:
    return cast(LifetimePredictor, create("lifetime_predictor", config, **deps))


def create_topology_detector(config: SageLLMConfig | Section, **deps: Any) -> TopologyDetector:
    return cast(TopologyDetector, create("topology_detector", config, **deps))


def create_comm_backend(config: SageLLMConfig | Section, **deps: Any) -> CommBackend:
    return cast(CommBackend, create("comm_backend", config, **deps))


def create_kv_transfer_channel(config: SageLLMConfig | Section, **deps: Any) -> KVTransferChannel:
    return cast(KVTransferChannel, create("kv_transfer_channel", config, **deps))


def create_overlap_manager(config: SageLLMConfig | Section, **deps: Any) -> OverlapManager:
    return cast(OverlapManager, create("overlap_manager", config, **deps))


def create_quantizer(config: SageLLMConfig | Section, **deps: Any) -> Quantizer:
    return cast(Quantizer, create("quantizer", config, **deps))


def create_sparsifier(config: SageLLMConfig | Section, **deps: Any) -> Sparsifier:
    return cast(Sparsifier, create("sparsifier", config, **deps))


def create_speculative_decoder(config: SageLLMConfig | Section, **deps: Any) -> SpeculativeDecoder:
    return cast(SpeculativeDecoder, create("speculative_decoder", config, **deps))


def create_fused_kernel(config: SageLLMConfig | Section, **deps: Any) -> FusedKernel:
    return cast(FusedKernel, create("fused_kernel", config, **deps))


def create_cot_accelerator(config: SageLLMConfig | Section, **deps: Any) -> CoTAccelerator:
    return cast(CoTAccelerator, create("cot_accelerator", config, **deps))


def create_interconnect_backend(config: SageLLMConfig | Section, **deps: Any) -> InterconnectBackend:
    return cast(InterconnectBackend, create("interconnect_backend", config, **deps))
