"""Configuration YAML keeps ratios such as a 2:4 sparsity pattern as text (no YAML 1.1 base-60 numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagellm.core.config import load_config
from sagellm.core.yaml_scalars import load_yaml


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2:4", "2:4"), ("1:30.5", "1:30.5"), ("12", 12), ("-7", -7), ("0x1f", 31), ("1.5", 1.5), ("true", True)],
)
def test_yaml_scalars_keep_ratios_as_text(text: str, expected: object) -> None:
    """PyYAML's safe_load reads 2:4 as the integer 124; configuration means the pattern."""
    assert load_yaml(text) == expected


def test_a_yaml_file_keeps_a_sparsity_pattern(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("sparsity:\n  implementation: none\n  options:\n    pattern: 2:4\n    sparsity: 0.5\n")
    assert load_config(path).sparsity.options == {"pattern": "2:4", "sparsity": 0.5}
