"""Policies of this package by name, read from its ``sagellm.ir_builder`` entry points.

The entry-point table in ``pyproject.toml`` is the one place a policy name
is written. Engines reach it through core's registry; :data:`BUILDERS`
reads the same table, keeping only entries that point into this package,
for tools and tests that want every policy. Add a policy: a sibling module
and one entry point; nothing here changes.

:data:`BUILDERS` is core's lazy :class:`~sagellm.core.package_entry_points.PackageEntryPoints`
(names without imports, sorted; a class loads when looked up).
"""

from __future__ import annotations

from collections.abc import Mapping

from sagellm.core.config import SchedulerSection
from sagellm.core.errors import RegistryError
from sagellm.core.package_entry_points import PackageEntryPoints
from sagellm.scheduler_ir.base import BaseIRBuilder

BUILDERS: Mapping[str, type[BaseIRBuilder]] = PackageEntryPoints(
    "ir_builder", __name__.rpartition(".")[0], BaseIRBuilder
)


def builder_class(name: str) -> type[BaseIRBuilder]:
    """The builder class of a policy name; an unknown name lists the installed ones."""
    if name not in BUILDERS:
        names = ", ".join(BUILDERS) or "none: install sagellm-scheduler-ir, its entry points name them"
        raise RegistryError(f"no scheduler policy named '{name}' (known: {names})")
    return BUILDERS[name]


def builder_from_section(section: SchedulerSection) -> BaseIRBuilder:
    """The builder ``section.implementation`` names, configured from the section."""
    return builder_class(section.implementation).from_config(section)
