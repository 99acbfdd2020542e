"""Engines find policies through the ``sagellm.eviction_policy`` entry points."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points

import pytest

from sagellm.core import load_config
from sagellm.core.config import EvictionPolicySection
from sagellm.core.errors import ConfigError, RegistryError
from sagellm.core.protocols import EvictionPolicy
from sagellm.core.registry import create_eviction_policy
from sagellm.core.types import EvictionContext, KVBlockMeta
from sagellm.eviction_policy import POLICIES, LearnedEvictionPolicy, LRUEvictionPolicy, create_policy


class FixedPredictor:
    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        return 1.0

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        pass


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
    assert set(POLICIES) == {"lru", "lfu", "arc", "s3fifo", "gdsf", "learned"}
    assert all(cls().name == name for name, cls in POLICIES.items())


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_builds_through_core_registry(name: str) -> None:
    policy = create_eviction_policy(EvictionPolicySection(implementation=name))
    assert isinstance(policy, EvictionPolicy) and policy.name == name


def test_options_reach_the_constructor() -> None:
    section = EvictionPolicySection(options={"promote_in_use": False})
    policy = create_eviction_policy(section)
    for block in range(3):
        policy.on_insert(block)
    policy.select_victims(EvictionContext(num_blocks=1, is_evictable=lambda b: b != 0))
    assert isinstance(policy, LRUEvictionPolicy) and policy.recency_order() == [0, 1, 2], "no promotion"
    with pytest.raises(ConfigError, match="unexpected keyword"):
        LRUEvictionPolicy.from_config(EvictionPolicySection(options={"typo": 1}))


def test_engine_hands_a_predictor_to_the_learned_policy() -> None:
    predictor = FixedPredictor()
    section = EvictionPolicySection(implementation="learned", options={"num_classes": 3})
    policy = create_eviction_policy(section, predictor=predictor)
    assert isinstance(policy, LearnedEvictionPolicy) and policy.predictor is predictor


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("arc", {"capacity": 0}),
        ("s3fifo", {"small_ratio": 1.5}),
        ("s3fifo", {"promote_at": 9}),
        ("gdsf", {"depth_cost": -1}),
        ("learned", {"num_classes": 0}),
        ("learned", {"predictor": object()}),
    ],
)
def test_bad_options_raise_config_error(name: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        create_policy(name, **options)


def test_create_policy_by_name() -> None:
    assert isinstance(create_policy("lru"), LRUEvictionPolicy)
    with pytest.raises(RegistryError, match="available: arc, gdsf, learned, lfu, lru, s3fifo"):
        create_policy("nope")


def test_every_entry_point_of_this_distribution_resolves() -> None:
    """The names come from pyproject.toml alone: each one builds, and no other name appears."""
    ours = distribution("sagellm-eviction-policy").entry_points.select(group="sagellm.eviction_policy")
    assert sorted(POLICIES) == sorted(ep.name for ep in ours) != []
    for ep in ours:
        assert ep.name in POLICIES and POLICIES[ep.name] is ep.load()
        assert create_policy(ep.name).name == ep.name


def test_unknown_name_lists_every_entry_point() -> None:
    with pytest.raises(RegistryError) as raised:
        create_policy("belady")
    assert all(name in str(raised.value) for name in POLICIES)
    assert "belady" not in POLICIES and POLICIES.get("belady") is None
