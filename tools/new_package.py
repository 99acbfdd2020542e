#!/usr/bin/env python3
"""Scaffold a new sageLLM package from ``tools/_template/``.

    python tools/new_package.py direction_2_kv_scheduling my_module
    python tools/new_package.py 2 my_module            # direction by number

Creates ``<direction>/<module>/`` with pyproject.toml (hatchling, version
read from version.py, an entry-point stanza when sagellm.core's registry
has a group for this module), README.md, CHANGELOG.md,
``src/sagellm/<module>/{__init__,version,py.typed}``, tests/test_import.py and
a benchmarks/ skeleton. The noxfile discovers the new directory by itself:
``nox -s test-<module>`` works at once.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import keyword
import re
import shutil
import sys
from pathlib import Path
from string import Template

from repo_layout import CORE_DIR, ROOT

TEMPLATE_DIR = Path(__file__).resolve().parent / "_template"
TEMPLATE_SUFFIX = ".tmpl"
MODULE_PLACEHOLDER = "__module__"
TEMPLATE_DOC = "TEMPLATE.md"  # describes the template; not copied
RESERVED = frozenset({"core", "engines", "testing"})
MODULE_RE = re.compile(r"[a-z][a-z0-9_]*")
INITIAL_VERSION = "0.1.0"


class ScaffoldError(Exception):
    """The request cannot be scaffolded (bad name, existing directory, unknown direction)."""


def resolve_direction(root: Path, direction: str) -> Path:
    """``direction_2_kv_scheduling`` as given, or the one existing ``direction_2_*`` for ``2``."""
    if direction.isdigit():
        matches = sorted(p for p in root.glob(f"direction_{direction}_*") if p.is_dir())
        if len(matches) != 1:
            found = ", ".join(p.name for p in matches) or "none"
            raise ScaffoldError(f"direction number {direction} must match exactly one directory (found: {found})")
        return matches[0]
    if not re.fullmatch(r"direction_\d+_[a-z0-9_]+", direction):
        raise ScaffoldError(
            f"direction '{direction}' must look like direction_<n>_<topic>, e.g. direction_2_kv_scheduling"
        )
    return root / direction


def check_module_name(module: str) -> None:
    if not MODULE_RE.fullmatch(module) or keyword.iskeyword(module):
        raise ScaffoldError(f"module '{module}' must be a lowercase Python identifier (letters, digits, _)")
    if module in RESERVED:
        raise ScaffoldError(f"module name '{module}' is reserved ({', '.join(sorted(RESERVED))})")


def registry_group(root: Path, module: str) -> tuple[str, str, str] | None:
    """(kind, entry-point group, protocol) that sagellm.core's registry uses for this module, if any.

    Parsed from ``registry.py``'s ``GROUPS`` table with ``ast`` so scaffolding
    needs no installed core: ``"kv_pool": Group("sagellm.kv_pool", KVPool, "kv_pool")``.
    """
    registry = root / CORE_DIR / "src" / "sagellm" / "core" / "registry.py"
    if not registry.is_file():
        return None
    for node in ast.walk(ast.parse(registry.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values):
            if not (isinstance(key, ast.Constant) and isinstance(value, ast.Call)):
                continue
            if not (isinstance(value.func, ast.Name) and value.func.id == "Group" and len(value.args) == 3):
                continue
            group, protocol, section = value.args
            named = isinstance(section, ast.Constant) and section.value == module
            if named and isinstance(group, ast.Constant) and isinstance(protocol, ast.Name):
                return str(key.value), str(group.value), protocol.id
    return None


def entry_points_stanza(root: Path, module: str) -> str:
    found = registry_group(root, module)
    if found is None:
        return (
            "# Advertise each implementation so engines find it through sagellm.core.registry:\n"
            '# [project.entry-points."sagellm.<group>"]\n'
            f'# <name> = "sagellm.{module}:<Class>"\n'
        )
    kind, group, protocol = found
    return (
        f"# Each implementation of sagellm.core.protocols.{protocol}, built by registry.create_{kind}():\n"
        f'# [project.entry-points."{group}"]\n'
        f'# <name> = "sagellm.{module}:<Class>"\n'
    )


def substitutions(root: Path, target: Path, module: str, date: dt.date) -> dict[str, str]:
    return {
        "module": module,
        "distribution": "sagellm-" + module.replace("_", "-"),
        "title": module.replace("_", " "),
        "direction": target.parent.name,
        "rel": target.relative_to(root).as_posix(),
        "version": INITIAL_VERSION,
        "date": date.isoformat(),
        "entry_points": entry_points_stanza(root, module),
    }


def render(template_dir: Path, target: Path, values: dict[str, str]) -> list[Path]:
    """Copy the template into ``target``; returns the files written."""
    written = []
    for source in sorted(template_dir.rglob("*")):
        rel = source.relative_to(template_dir)
        if source.is_dir() or rel.as_posix() == TEMPLATE_DOC or "__pycache__" in rel.parts:
            continue
        out_rel = Path(*(values["module"] if part == MODULE_PLACEHOLDER else part for part in rel.parts))
        out_rel = Path(str(out_rel).replace(MODULE_PLACEHOLDER, values["module"]))
        out = target / out_rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if source.name.endswith(TEMPLATE_SUFFIX):
            out = out.with_name(out.name[: -len(TEMPLATE_SUFFIX)])
            text = Template(source.read_text(encoding="utf-8")).substitute(values)
            out.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, out)
        written.append(out)
    return written


def scaffold(root: Path, direction: str, module: str, date: dt.date | None = None) -> list[Path]:
    """Create ``<direction>/<module>/`` under ``root``; refuses to touch an existing directory."""
    check_module_name(module)
    target = resolve_direction(root, direction) / module
    if target.exists():
        raise ScaffoldError(f"{target.relative_to(root)} already exists; pick another module name")
    clash = sorted(p.relative_to(root).as_posix() for p in root.glob(f"direction_*/{module}"))
    if clash:
        raise ScaffoldError(
            f"module '{module}' already exists at {clash[0]}: module names are unique across directions"
        )
    values = substitutions(root, target, module, date or dt.date.today())
    return render(TEMPLATE_DIR, target, values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("direction", help="direction directory (direction_2_kv_scheduling) or its number (2)")
    parser.add_argument("module", help="module name, e.g. kv_pool (import name sagellm.<module>)")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        written = scaffold(root, args.direction, args.module)
    except ScaffoldError as exc:
        print(f"new_package: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"created {path.relative_to(root).as_posix()}")
    print(f"next: implement it, add entry points, then `nox -s test-{args.module}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
