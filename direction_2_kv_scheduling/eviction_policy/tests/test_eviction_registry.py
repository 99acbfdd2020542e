"""Engines find policies through the ``sagellm.eviction_policy`` entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from sagellm.core import load_config
from sagellm.core.config import EvictionPolicySection
from sagellm.core.errors import ConfigError, RegistryError
from sagellm.core.protocols import EvictionPolicy
from sagellm.core.registry import create_eviction_policy
from sagellm.core.types import EvictionContext
from sagellm.eviction_policy import POLICIES, LRUEvictionPolicy, create_policy


def test_registry_builds_lru_from_default_config() -> None:
    policy = create_eviction_policy(load_config())
    assert isinstance(policy, LRUEvictionPolicy) and isinstance(policy, EvictionPolicy)
    assert policy.name == "lru"


def test_every_local_policy_has_an_entry_point() -> None:
    ours = {
        ep.name: ep.load()
        for ep in entry_points(group="sagellm.eviction_policy")
        if ep.value.startswith("sagellm.eviction_policy:")
    }
    assert ours == POLICIES
    assert all(cls().name == name for name, cls in POLICIES.items())


def test_options_reach_the_constructor() -> None:
    section = EvictionPolicySection(options={"promote_in_use": False})
    policy = create_eviction_policy(section)
    for block in range(3):
        policy.on_insert(block)
    policy.select_victims(EvictionContext(num_blocks=1, is_evictable=lambda b: b != 0))
    assert isinstance(policy, LRUEvictionPolicy) and policy.recency_order() == [0, 1, 2], "no promotion"
    with pytest.raises(ConfigError, match="unexpected keyword"):
        LRUEvictionPolicy.from_config(EvictionPolicySection(options={"typo": 1}))


def test_create_policy_by_name() -> None:
    assert isinstance(create_policy("lru"), LRUEvictionPolicy)
    with pytest.raises(RegistryError, match="available: lru"):
        create_policy("nope")
