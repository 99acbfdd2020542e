#!/usr/bin/env python3
"""Fail when a sageLLM module imports a sibling module, or the namespace breaks.

The rule (docs/architecture.md, "The import rule"): a module package may
import ``sagellm.core`` and third-party libraries, never another sageLLM
module; engines assemble modules through the core registry, so engines'
source imports only ``sagellm.core`` and ``sagellm.engines`` too (its tests
and benchmarks may import modules to compare against them). A sibling import would couple two distributions that are
released, versioned and tested apart, and would only fail later, in the
isolated test venv or in a user's install. This scan finds it at once.

It also fails when any ``src/sagellm/__init__.py`` exists: ``sagellm`` is a
PEP 420 namespace shared by ~17 distributions, and one regular package there
would hide all the others once installed.

    python tools/check_imports.py [--root DIR]

Exit status 0 when clean, 1 with one ``file:line: message`` per problem.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from repo_layout import ROOT, Package, discover

NAMESPACE = "sagellm"
ALWAYS_ALLOWED = frozenset({"core"})
SCANNED_DIRS = ("src", "tests", "benchmarks")
ENGINES_SCANNED_DIRS = ("src",)
# Never descended into when looking for a stray namespace __init__.py.
SKIP_DIRS = frozenset({".git", ".nox", ".venv", "venv", "node_modules", "third_party", "build", "dist", "__pycache__"})
DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True, slots=True)
class Violation:
    path: Path
    line: int
    message: str

    def render(self, root: Path) -> str:
        try:
            shown = self.path.relative_to(root).as_posix()
        except ValueError:
            shown = str(self.path)
        return f"{shown}:{self.line}: {self.message}"


def module_of(path: Path, src: Path) -> tuple[str, bool]:
    """Dotted module name of a file below ``src`` and whether it is a package ``__init__``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    return ".".join(parts), is_init


def resolve_relative(node: ast.ImportFrom, module: str, is_init: bool) -> str | None:
    """Absolute target of ``from .x import y`` in ``module``; None when it climbs above the top."""
    package = module.split(".") if is_init else module.split(".")[:-1]
    climb = node.level - 1
    if climb > len(package) - 1:
        return None
    base = package[: len(package) - climb]
    return ".".join(base + ([node.module] if node.module else []))


def imported_names(tree: ast.AST, module: str | None, is_init: bool) -> Iterator[tuple[int, str]]:
    """(line, absolute dotted name) of every import in ``tree``, dynamic string imports included.

    ``from sagellm import kv_pool`` yields ``sagellm.kv_pool``: the names
    imported from the bare namespace are modules.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:  # tests/benchmarks: local helpers, not the namespace
                    continue
                target = resolve_relative(node, module, is_init)
                if target is None:
                    yield node.lineno, "." * node.level + (node.module or "")
                    continue
            else:
                target = node.module or ""
            if target == NAMESPACE:
                for alias in node.names:
                    yield node.lineno, f"{NAMESPACE}.{alias.name}"
            else:
                yield node.lineno, target
        elif isinstance(node, ast.Call) and _called_name(node.func) in DYNAMIC_IMPORTERS and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def forbidden(name: str, own: str) -> str | None:
    """Why importing ``name`` from module ``own`` breaks the rule; None when it is allowed."""
    if name.startswith("."):
        return f"relative import '{name}' climbs above the sagellm.{own} package"
    parts = name.split(".")
    if parts[0] != NAMESPACE:
        return None  # stdlib or third-party
    if len(parts) == 1:
        return None  # the namespace itself (e.g. to check it stays a namespace) reaches no module
    if parts[1] in ALWAYS_ALLOWED or parts[1] == own:
        return None
    return (
        f"sagellm.{own} imports '{name}': a module may import only sagellm.core and third-party "
        f"libraries, never another sagellm module (assemble modules through sagellm.core.registry)"
    )


def check_package(pkg: Package) -> list[Violation]:
    """Violations of the import rule in one package.

    Engines' source reaches modules only through the core registry, like
    any module; engines' tests and benchmarks may import module packages
    (they compare an engine path with a module's own reference).
    """
    violations: list[Violation] = []
    for sub in ENGINES_SCANNED_DIRS if pkg.kind == "engines" else SCANNED_DIRS:
        base = pkg.path / sub
        for path in sorted(base.rglob("*.py")) if base.is_dir() else []:
            if SKIP_DIRS.intersection(path.relative_to(pkg.path).parts):
                continue
            violations += check_file(path, pkg.module, src=base if sub == "src" else None)
    return violations


def check_file(path: Path, own: str, src: Path | None) -> list[Violation]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        return [Violation(path, exc.lineno or 0, f"cannot parse: {exc.msg}")]
    module, is_init = module_of(path, src) if src is not None else (None, False)
    found = []
    for line, name in imported_names(tree, module, is_init):
        reason = forbidden(name, own)
        if reason:
            found.append(Violation(path, line, reason))
    return found


def stray_namespace_inits(root: Path) -> list[Violation]:
    """Every ``src/sagellm/__init__.py`` (or ``.pyi``) below ``root``: each one breaks PEP 420."""
    found = []
    for path in _walk(root):
        is_init = path.name in ("__init__.py", "__init__.pyi")
        if is_init and path.parent.name == NAMESPACE and path.parent.parent.name == "src":
            found.append(
                Violation(
                    path,
                    1,
                    f"'{NAMESPACE}' must stay a PEP 420 namespace package: delete this file "
                    f"(it would shadow every other sagellm distribution once installed)",
                )
            )
    return found


def _walk(root: Path) -> Iterator[Path]:
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            if entry.name not in SKIP_DIRS and not entry.name.startswith(".nox"):
                yield from _walk(entry)
        elif entry.is_file():
            yield entry


def check(root: Path) -> list[Violation]:
    violations = stray_namespace_inits(root)
    for pkg in discover(root):
        violations += check_package(pkg)
    return violations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    violations = check(root)
    for violation in violations:
        print(violation.render(root), file=sys.stderr)
    packages = discover(root)
    if violations:
        print(f"check_imports: {len(violations)} problem(s) in {root}", file=sys.stderr)
        return 1
    print(f"check_imports: OK ({len(packages)} packages: {', '.join(p.short for p in packages)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
