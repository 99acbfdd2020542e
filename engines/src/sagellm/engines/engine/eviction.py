"""The eviction policy a config names, with its lifetime predictor: shared by the engine and the LMDeploy adapter.

Kept apart from the builder so the adapter builds it without loading the
model stack.
"""

from __future__ import annotations

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.protocols import EvictionPolicy, PredictiveEvictionPolicy

NO_IMPLEMENTATION = registry.NO_IMPLEMENTATION


def build_eviction_policy(config: SageLLMConfig) -> EvictionPolicy:
    """The configured policy; a configured lifetime predictor is handed to it (it must be predictive).

    The predictor comes from its own package through the registry, so a
    learned policy and the predictor it ranks by stay swappable separately.
    """
    policy = registry.create_eviction_policy(config)
    if config.lifetime_predictor.implementation == NO_IMPLEMENTATION:
        return policy
    if not isinstance(policy, PredictiveEvictionPolicy):
        raise ConfigError(
            f"eviction policy '{config.eviction_policy.implementation}' takes no lifetime predictor; "
            f"choose a learned policy or leave lifetime_predictor.implementation at '{NO_IMPLEMENTATION}'"
        )
    policy.use_predictor(registry.create_lifetime_predictor(config))
    return policy
