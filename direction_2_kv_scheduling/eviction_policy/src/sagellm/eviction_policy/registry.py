"""Every policy of this package by name, mirroring its ``sagellm.eviction_policy`` entry points.

Engines go through core's registry (entry points); this dict serves code that
wants all local policies at once (benchmarks comparing hit rates, tests) and
keeps policy choice a lookup, never an ``if``/``elif`` chain.
"""

from __future__ import annotations

from typing import Any

from sagellm.core.errors import RegistryError
from sagellm.eviction_policy.arc import ARCEvictionPolicy
from sagellm.eviction_policy.base import BaseEvictionPolicy
from sagellm.eviction_policy.gdsf import GDSFEvictionPolicy
from sagellm.eviction_policy.learned import LearnedEvictionPolicy
from sagellm.eviction_policy.lfu import LFUEvictionPolicy
from sagellm.eviction_policy.lru import LRUEvictionPolicy
from sagellm.eviction_policy.s3fifo import S3FIFOEvictionPolicy

POLICIES: dict[str, type[BaseEvictionPolicy]] = {
    "lru": LRUEvictionPolicy,
    "lfu": LFUEvictionPolicy,
    "arc": ARCEvictionPolicy,
    "s3fifo": S3FIFOEvictionPolicy,
    "gdsf": GDSFEvictionPolicy,
    "learned": LearnedEvictionPolicy,
}


def create_policy(name: str, **options: Any) -> BaseEvictionPolicy:
    """Build a policy of this package by name."""
    try:
        policy_cls = POLICIES[name]
    except KeyError:
        raise RegistryError(f"no eviction policy named '{name}' (available: {', '.join(sorted(POLICIES))})") from None
    return policy_cls(**options)
