"""sagellm-sparsity imports only sagellm.core among sageLLM packages (the polyrepo rule)."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "sagellm" / "sparsity"


def test_only_core_is_imported() -> None:
    offenders = []
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("sagellm.") and not name.startswith(("sagellm.core", "sagellm.sparsity")):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
