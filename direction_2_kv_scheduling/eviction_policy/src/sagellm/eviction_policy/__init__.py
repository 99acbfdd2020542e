"""sagellm-eviction-policy: which cached KV blocks to drop when the pool runs short.

Policies implement :class:`sagellm.core.protocols.EvictionPolicy` and are
published as ``sagellm.eviction_policy`` entry points; :data:`POLICIES` maps
the same names to classes for in-package use. ``python -m
sagellm.eviction_policy.sim`` replays block-hash traces through them.
"""

from sagellm.eviction_policy.arc import ARCEvictionPolicy
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.gdsf import GDSFEvictionPolicy
from sagellm.eviction_policy.learned import LearnedEvictionPolicy
from sagellm.eviction_policy.lfu import LFUEvictionPolicy
from sagellm.eviction_policy.lru import LRUEvictionPolicy
from sagellm.eviction_policy.registry import POLICIES, create_policy
from sagellm.eviction_policy.reuse_predictor import ReuseIntervalPredictor
from sagellm.eviction_policy.s3fifo import S3FIFOEvictionPolicy
from sagellm.eviction_policy.version import __version__

__all__ = [
    "POLICIES",
    "ARCEvictionPolicy",
    "BaseEvictionPolicy",
    "GDSFEvictionPolicy",
    "LFUEvictionPolicy",
    "LRUEvictionPolicy",
    "LearnedEvictionPolicy",
    "ReuseIntervalPredictor",
    "S3FIFOEvictionPolicy",
    "__version__",
    "create_policy",
]
