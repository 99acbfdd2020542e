"""Imports inside engines point down: cli/server/bench -> disagg -> engine -> runtime -> model -> tokenizer.

A lower layer that imports a higher one drags it (and its dependencies)
into every user of the lower one, and makes the layers impossible to
reason about one at a time: the model layer once imported the bench
package for calibration text. ``data`` (text and traces shipped in the
wheel) and ``version`` sit at the bottom; the three user-facing
packages on top may use each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "sagellm" / "engines"
RANK = {
    "version": 0,
    "data": 0,
    "tokenizer": 0,
    "model": 1,
    "runtime": 2,
    "engine": 3,
    "disagg": 4,
    "lmdeploy": 4,  # sageLLM's modules inside LMDeploy's engine: beside disagg, another assembly of modules
    "vllm_plugin": 4,  # sageLLM's prefix index and KV tiers inside vLLM, through its KV connector
    "server": 5,
    "bench": 5,
    "cli": 5,
}


def engines_imports(path: Path) -> list[tuple[int, str]]:
    """(line, sub-package) of every ``sagellm.engines.<sub>`` import in ``path``, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["sagellm", "engines"] and len(parts) > 2:
                found.append((node.lineno, parts[2]))
    return found


def layer_of(path: Path) -> str | None:
    parts = path.relative_to(SOURCE).parts
    return parts[0] if len(parts) > 1 else None  # None: the package's own __init__ / version module


def test_every_sub_package_has_a_layer() -> None:
    subs = {p.name for p in SOURCE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert subs <= set(RANK), f"give these a layer: {subs - set(RANK)}"


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_imports_point_down(path: Path) -> None:
    own = layer_of(path)
    if own is None:
        return  # sagellm.engines itself re-exports the public API
    for line, target in engines_imports(path):
        if target == own:
            continue
        assert RANK[target] < RANK[own] or (RANK[own] == RANK[target] == 5), (
            f"{path.relative_to(SOURCE)}:{line}: layer '{own}' imports '{target}', which is not below it"
        )
