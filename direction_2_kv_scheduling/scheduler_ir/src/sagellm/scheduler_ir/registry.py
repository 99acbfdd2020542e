"""Policies of this package by name.

Engines find builders through the ``sagellm.ir_builder`` entry points (see
``pyproject.toml``); this dict is the package-internal view of the same
names, for tools and tests that want every policy without going through
importlib metadata. Add a policy: a sibling module, one line here, one
entry point.
"""

from __future__ import annotations

from sagellm.core.config import SchedulerSection
from sagellm.core.errors import RegistryError
from sagellm.scheduler_ir.adaptive import AdaptiveIRBuilder
from sagellm.scheduler_ir.base import BaseIRBuilder
from sagellm.scheduler_ir.fifo import FIFOIRBuilder
from sagellm.scheduler_ir.priority import PriorityIRBuilder
from sagellm.scheduler_ir.slo import SLOIRBuilder

BUILDERS: dict[str, type[BaseIRBuilder]] = {
    "fifo": FIFOIRBuilder,
    "priority": PriorityIRBuilder,
    "slo": SLOIRBuilder,
    "adaptive": AdaptiveIRBuilder,
}


def builder_class(name: str) -> type[BaseIRBuilder]:
    try:
        return BUILDERS[name]
    except KeyError:
        raise RegistryError(f"no scheduler policy named '{name}' (known: {', '.join(sorted(BUILDERS))})") from None


def builder_from_section(section: SchedulerSection) -> BaseIRBuilder:
    """The builder ``section.implementation`` names, configured from the section."""
    return builder_class(section.implementation).from_config(section)
