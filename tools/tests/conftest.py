"""Fixtures: small synthetic monorepos in a temp dir, and the tools importable by name."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent
REPO = TOOLS.parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
dynamic = ["version"]
requires-python = ">=3.10"
dependencies = [{deps}]

[project.optional-dependencies]
test = ["pytest>=7"]

[tool.hatch.version]
path = "src/sagellm/{module}/version.py"

[tool.hatch.build.targets.wheel]
packages = ["src/sagellm"]
"""

MakePackage = Callable[..., Path]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def make_package(tmp_path: Path) -> MakePackage:
    """``make_package("direction_2_kv/alpha", "alpha")`` writes a minimal valid package under tmp_path."""

    def make(rel: str, module: str, deps: str = '"sagellm-core>=0.1"', version: str = "0.1.0") -> Path:
        pkg = tmp_path / rel
        dist = "sagellm-" + module.replace("_", "-")
        write(pkg / "pyproject.toml", PYPROJECT.format(dist=dist, module=module, deps=deps))
        write(pkg / "README.md", f"# {dist}\n")
        write(pkg / "CHANGELOG.md", f"# Changelog — {dist}\n\n## {version} — 2026-11-24\n- First release.\n")
        src = pkg / "src" / "sagellm" / module
        write(src / "__init__.py", f'"""{dist}."""\n\nfrom sagellm.{module}.version import __version__\n')
        write(src / "version.py", f'"""Version."""\n\n__version__ = "{version}"\n')
        write(src / "py.typed", "")
        return pkg

    return make


@pytest.fixture
def repo(tmp_path: Path, make_package: MakePackage) -> Path:
    """A clean monorepo: core, two modules in one direction, engines."""
    make_package("sageLLM-core", "core", deps='"pydantic>=2"')
    make_package("direction_2_kv_scheduling/alpha", "alpha")
    make_package("direction_2_kv_scheduling/beta", "beta")
    make_package("engines", "engines", deps='"sagellm-core>=0.1", "sagellm-alpha", "sagellm-beta"')
    return tmp_path
