"""Every policy of this package by name, read from its ``sagellm.eviction_policy`` entry points.

The entry-point table in ``pyproject.toml`` is the one place a policy name
is written. Engines reach it through core's registry; :data:`POLICIES` reads
the same table, keeping only entries that point into this package, for code
that wants every local policy at once (benchmarks comparing hit rates, the
trace simulator, tests) and keeps policy choice a lookup, never an
``if``/``elif`` chain.

:data:`POLICIES` is core's lazy :class:`~sagellm.core.package_entry_points.PackageEntryPoints`
(names without imports, sorted; a class loads when looked up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sagellm.core.errors import RegistryError
from sagellm.core.package_entry_points import PackageEntryPoints
from sagellm.eviction_policy.base import BaseEvictionPolicy

POLICIES: Mapping[str, type[BaseEvictionPolicy]] = PackageEntryPoints(
    "eviction_policy", __name__.rpartition(".")[0], BaseEvictionPolicy
)


def create_policy(name: str, **options: Any) -> BaseEvictionPolicy:
    """Build a policy of this package by name; an unknown name lists the installed ones."""
    if name not in POLICIES:
        names = ", ".join(POLICIES) or "none: install sagellm-eviction-policy, its entry points name them"
        raise RegistryError(f"no eviction policy named '{name}' (available: {names})")
    return POLICIES[name](**options)
