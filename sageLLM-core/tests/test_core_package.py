"""Packaging invariants every sageLLM distribution relies on."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import sagellm.core
from sagellm.core import testing, types

SRC = Path(__file__).resolve().parents[1] / "src"


def test_no_namespace_init() -> None:
    """One stray src/sagellm/__init__.py would hide every other sagellm.* package (PEP 420)."""
    assert not (SRC / "sagellm" / "__init__.py").exists()
    assert (SRC / "sagellm" / "core" / "py.typed").exists()


def test_version_matches_metadata() -> None:
    assert sagellm.core.__version__ == version("sagellm-core")


def test_public_names_resolve() -> None:
    for module in (sagellm.core, types, testing):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_core_is_torch_free() -> None:
    """Importing every core module must not pull torch in (pure-Python modules install light)."""
    code = (
        "import sys, sagellm.core, sagellm.core.types, sagellm.core.protocols, sagellm.core.registry, "
        "sagellm.core.metrics, sagellm.core.ports, sagellm.core.testing; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
