"""sageLLM's modules inside LMDeploy's PyTorch engine, through the hooks of third_party/patches/lmdeploy.

``install(scheduler_or_engine, config)`` builds the prefix index, eviction
policy, IR builder and (optionally) comm backend that ``config`` names --
through the registry, like the native engine -- and plugs them into a
LMDeploy 0.11.0 patched with sageLLM's four patches. LMDeploy is imported
only when ``install`` runs; without it, ``install`` raises NotSupportedError.
"""

from sagellm.engines.lmdeploy.eviction_feed import EvictionStats, PolicyFeed
from sagellm.engines.lmdeploy.install import (
    LMDeployPlugins,
    check_patched,
    install,
    install_prefix_hook,
    require_lmdeploy,
)
from sagellm.engines.lmdeploy.modules import SageLLMModules, build_modules, check_config
from sagellm.engines.lmdeploy.plan_provider import IRPlanProvider, PlannedStep
from sagellm.engines.lmdeploy.prefix_hook import IndexPrefixHook
from sagellm.engines.lmdeploy.translate import planned_ids, scheduler_state, sequence_view

__all__ = [
    "EvictionStats",
    "IRPlanProvider",
    "IndexPrefixHook",
    "LMDeployPlugins",
    "PlannedStep",
    "PolicyFeed",
    "SageLLMModules",
    "build_modules",
    "check_config",
    "check_patched",
    "install",
    "install_prefix_hook",
    "planned_ids",
    "require_lmdeploy",
    "scheduler_state",
    "sequence_view",
]
