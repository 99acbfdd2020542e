"""sagellm-eviction-policy: which cached KV blocks to drop when the pool runs short.

Policies implement :class:`sagellm.core.protocols.EvictionPolicy` and are
published as ``sagellm.eviction_policy`` entry points; :data:`POLICIES` maps
the same names to classes for in-package use.
"""

from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.lru import LRUEvictionPolicy
from sagellm.eviction_policy.registry import POLICIES, create_policy
from sagellm.eviction_policy.version import __version__

__all__ = ["POLICIES", "BaseEvictionPolicy", "LRUEvictionPolicy", "__version__", "create_policy"]
