"""A package's own implementations, read lazily from its entry points (the one list of names)."""

from __future__ import annotations

import pytest

from sagellm.core.errors import RegistryError
from sagellm.core.package_entry_points import PackageEntryPoints

eviction = pytest.importorskip("sagellm.eviction_policy")


def test_lists_only_the_packages_own_entries_sorted_and_loads_them() -> None:
    policies = PackageEntryPoints("eviction_policy", "sagellm.eviction_policy", eviction.BaseEvictionPolicy)
    names = list(policies)
    assert names == sorted(names) and {"lru", "lfu", "arc"} <= set(names)
    assert "lru" in policies and "nope" not in policies and len(policies) == len(names)
    assert policies["lru"] is eviction.LRUEvictionPolicy
    assert list(PackageEntryPoints("eviction_policy", "sagellm.elsewhere", object)) == []


def test_an_entry_that_is_not_of_the_base_class_is_refused() -> None:
    class Unrelated:
        pass

    with pytest.raises(RegistryError, match="is not a Unrelated"):
        PackageEntryPoints("eviction_policy", "sagellm.eviction_policy", Unrelated)["lru"]
