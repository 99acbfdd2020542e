"""One package's own implementations of a registry group, by name, read from its entry points.

A module package writes each implementation's name once, in its
``pyproject.toml`` entry-point table; engines reach them through
:mod:`sagellm.core.registry`. Code inside the package that wants all of its
own implementations at once (benchmarks, simulators, tests) reads the same
table through :class:`PackageEntryPoints` instead of keeping a second list.

The mapping is lazy: loading an entry point imports the package, whose
``__init__`` usually imports the module defining the mapping, so an eager
table would be a circular import. Names are listed without importing
anything (sorted, as tables and CLI defaults show them); a class is loaded
when it is looked up and must be a subclass of ``base``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from sagellm.core.errors import RegistryError
from sagellm.core.registry import GROUPS

T = TypeVar("T")


class PackageEntryPoints(Mapping[str, type[T]], Generic[T]):
    """Name -> class over the entries of registry group ``kind`` whose target lies in ``package``."""

    def __init__(self, kind: str, package: str, base: type[T]) -> None:
        self._group = GROUPS[kind].entry_point_group
        self._package = package
        self._base = base

    @cached_property
    def _entries(self) -> dict[str, EntryPoint]:
        ours = (ep for ep in entry_points(group=self._group) if f"{ep.module}.".startswith(f"{self._package}."))
        return {ep.name: ep for ep in sorted(ours, key=lambda ep: ep.name)}

    def __getitem__(self, name: str) -> type[T]:
        entry = self._entries[name]
        loaded = entry.load()
        if not (isinstance(loaded, type) and issubclass(loaded, self._base)):
            raise RegistryError(f"'{entry.name}' = {entry.value} is not a {self._base.__name__}")
        return loaded

    def __contains__(self, name: object) -> bool:
        return name in self._entries  # a name check must not import the class

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"{self._package}[{', '.join(self)}]"
