"""``install(scheduler_or_engine, config)``: plug sageLLM's modules into a patched LMDeploy PyTorch engine.

What goes where (third_party/patches/lmdeploy/README.md has each hook's contract)::

    prefix_cache    -> BlockTrie.set_prefix_hook (0002)                 IndexPrefixHook: lookup in match, store in allocate
                       BaseBlockManager.add_eviction_callback (0001)    index.remove on 'prefix' evictions
    eviction_policy -> fed by the hook and the callback, timed by get_block_info (0001)   PolicyFeed
    scheduler_ir    -> Scheduler.set_plan_provider (0003)               IRPlanProvider: SchedulerState -> ExternalPlan
    collective_ops  -> distributed.set_comm_backend (0004)              the bridge in comm_bridge.py

LMDeploy is imported here, on the call, never when sagellm.engines is:
LMDeploy is not a dependency of sageLLM, and an unpatched LMDeploy is
refused with the command that patches it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError, NotSupportedError
from sagellm.engines.lmdeploy.comm_bridge import bridge_class
from sagellm.engines.lmdeploy.eviction_feed import PolicyFeed
from sagellm.engines.lmdeploy.modules import SageLLMModules, build_modules
from sagellm.engines.lmdeploy.plan_provider import IRPlanProvider
from sagellm.engines.lmdeploy.prefix_hook import IndexPrefixHook

logger = logging.getLogger(__name__)

PATCH_COMMAND = "third_party/patches/lmdeploy/apply_patches.sh <dir holding lmdeploy/>"
# (object, attribute) each patch adds; their absence means an unpatched LMDeploy.
PATCH_MARKS = {
    "0001": ("block_manager", "add_eviction_callback"),
    "0002": ("block_trie", "set_prefix_hook"),
    "0003": ("scheduler", "set_plan_provider"),
}


def require_lmdeploy() -> SimpleNamespace:
    """LMDeploy's hook types (``ExternalPlan``, ``CommBackend``, ``set_comm_backend``), or NotSupportedError."""
    try:
        from lmdeploy.pytorch import distributed
        from lmdeploy.pytorch.paging import scheduler
    except ImportError as exc:
        raise NotSupportedError(
            f"the LMDeploy adapter needs LMDeploy 0.11.0 with sageLLM's patches, and it cannot be imported ({exc}); "
            f"install lmdeploy==0.11.0 and run {PATCH_COMMAND}"
        ) from None
    if not hasattr(scheduler, "ExternalPlan") or not hasattr(distributed, "set_comm_backend"):
        raise NotSupportedError(f"LMDeploy at {scheduler.__file__} is not patched for sageLLM: run {PATCH_COMMAND}")
    return SimpleNamespace(
        ExternalPlan=scheduler.ExternalPlan,
        CommBackend=distributed.CommBackend,
        set_comm_backend=distributed.set_comm_backend,
    )


@dataclass(slots=True)
class LMDeployPlugins:
    """What :func:`install` plugged in, for inspection (stats, the last plan) and for :meth:`uninstall`."""

    scheduler: Any
    modules: SageLLMModules
    prefix_hook: IndexPrefixHook | None = None
    plan_provider: IRPlanProvider | None = None
    comm_backend: Any = None  # the LMDeploy-side bridge object, when a sageLLM backend was plugged in

    def uninstall(self) -> None:
        """Give every hook back to LMDeploy's own behaviour."""
        if self.prefix_hook is not None:
            self.scheduler.block_trie.set_prefix_hook(None)
            self.scheduler.block_manager.remove_eviction_callback(self.prefix_hook.on_eviction)
        if self.plan_provider is not None:
            self.scheduler.set_plan_provider(None)
        if self.comm_backend is not None:
            require_lmdeploy().set_comm_backend(None)


def install(
    target: Any,
    config: SageLLMConfig,
    *,
    rank: int | None = None,
    init_method: str | None = None,
    modules: SageLLMModules | None = None,
) -> LMDeployPlugins:
    """Plug the modules ``config`` names into ``target`` (an LMDeploy ``Scheduler``, or an engine holding one).

    ``modules`` overrides building them from ``config`` (e.g. to share one
    index between schedulers); ``rank``/``init_method`` are needed only when
    ``collective_ops`` names a backend.
    """
    lmdeploy = require_lmdeploy()
    scheduler = scheduler_of(target)
    check_patched(scheduler)
    if modules is None:
        modules = build_modules(
            config, block_size=scheduler.cache_config.block_size, rank=rank, init_method=init_method
        )
    plugins = LMDeployPlugins(scheduler, modules)
    if modules.prefix_index is not None:
        plugins.prefix_hook = install_prefix_hook(scheduler.block_trie, modules)
    if modules.ir_builder is not None:
        plugins.plan_provider = IRPlanProvider(
            modules.ir_builder, scheduler, lambda ids: lmdeploy.ExternalPlan(seq_ids=ids), plugins.prefix_hook
        )
        scheduler.set_plan_provider(plugins.plan_provider)
    if modules.comm_backend is not None:
        plugins.comm_backend = bridge_class(lmdeploy.CommBackend)(modules.comm_backend)
        lmdeploy.set_comm_backend(plugins.comm_backend)
    return plugins


def install_prefix_hook(block_trie: Any, modules: SageLLMModules) -> IndexPrefixHook:
    """The prefix index (and eviction policy) on one ``BlockTrie``; also for a trie without a scheduler."""
    if modules.prefix_index is None:
        raise ConfigError("no prefix index to install: prefix_cache is disabled or 'none'")
    if not hasattr(block_trie, "set_prefix_hook") or not hasattr(block_trie.block_manager, "add_eviction_callback"):
        raise NotSupportedError(f"this BlockTrie has no sageLLM hooks (patches 0001, 0002): run {PATCH_COMMAND}")
    if modules.prefix_index.block_size != block_trie.block_size:
        raise ConfigError(
            f"the prefix index keys blocks of {modules.prefix_index.block_size} tokens, "
            f"LMDeploy's cache blocks hold {block_trie.block_size}"
        )
    if not block_trie.enable:
        logger.warning("LMDeploy's prefix caching is off (enable_prefix_caching): the sageLLM prefix index stays idle")
    policy = modules.eviction_policy
    feed = PolicyFeed(policy, block_trie.block_manager) if policy is not None else None
    hook = IndexPrefixHook(modules.prefix_index, block_trie.block_manager, feed)
    block_trie.set_prefix_hook(hook)
    block_trie.block_manager.add_eviction_callback(hook.on_eviction)
    return hook


def scheduler_of(target: Any) -> Any:
    """The LMDeploy ``Scheduler`` itself, or the one an engine (``.scheduler``) holds."""
    for candidate in (
        target,
        getattr(target, "scheduler", None),
        getattr(getattr(target, "engine", None), "scheduler", None),
    ):
        if candidate is not None and hasattr(candidate, "block_trie") and hasattr(candidate, "schedule"):
            return candidate
    raise ConfigError(f"{type(target).__name__} is neither an LMDeploy Scheduler nor an engine holding one")


def check_patched(scheduler: Any) -> None:
    """NotSupportedError naming the missing patches, when ``scheduler`` comes from an unpatched LMDeploy."""
    objects = {"scheduler": scheduler, "block_trie": scheduler.block_trie, "block_manager": scheduler.block_manager}
    missing = [patch for patch, (name, attr) in PATCH_MARKS.items() if not hasattr(objects[name], attr)]
    if missing:
        raise NotSupportedError(f"LMDeploy is missing sageLLM patch(es) {', '.join(missing)}: run {PATCH_COMMAND}")
