"""Options are checked when a sparsifier is built (and widths when it prunes): every mistake is a ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sagellm.core import registry
from sagellm.core.config import load_config
from sagellm.core.errors import ConfigError
from sagellm.sparsity import MagnitudeSparsifier, SparseGPTSparsifier, WandaSparsifier


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"patern": "2:4"}, "allowed: pattern, sparsity, kernel"),
        ({"update": True}, "unknown magnitude"),  # wanda's option, not magnitude's
        ({"pattern": "4:2"}, "0 < N < M"),
        ({"pattern": "0:4"}, "0 < N < M"),
        ({"pattern": "2-4"}, "'unstructured' or 'N:M'"),
        ({"pattern": "dense"}, "'unstructured' or 'N:M'"),
        ({"pattern": 5}, "must be text"),
        ({"pattern": "2:4", "sparsity": 0.5}, "applies to the 'unstructured' pattern only"),
        ({"sparsity": 1.0}, "[0, 1)"),
        ({"sparsity": -0.1}, "[0, 1)"),
        ({"sparsity": "half"}, "must be a number"),
        ({"kernel": "sparse"}, "auto, dense, int8, bf16"),
        ({"pattern": "4:8", "kernel": "int8"}, "packed 2:4 weights only"),
        ({"kernel": "bf16"}, "packed 2:4 weights only"),  # default pattern is unstructured
        ({"pattern": "2:4", "owl_lambda": 0.05}, "unstructured sparsity only"),
        ({"sparsity": 0.1, "owl_lambda": 0.2}, "within [0, 1)"),
        ({"owl_lambda": -0.1}, ">= 0"),
        ({"owl_m": 0.5}, ">= 1"),
    ],
)
def test_bad_common_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[").replace(")", r"\)")):
        MagnitudeSparsifier(**options)


@pytest.mark.parametrize(
    "options",
    [{"update": "maybe"}, {"blocksize": 0}, {"blocksize": 1.5}, {"blocksize": True}, {"percdamp": -0.01}],
)
def test_bad_solver_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        WandaSparsifier(**options)


def test_defaults_and_string_values() -> None:
    sparsifier = WandaSparsifier()
    assert (sparsifier.pattern, sparsifier.sparsity, sparsifier.options.kernel) == ("unstructured", 0.5, "auto")
    assert not sparsifier.options.update and sparsifier.options.owl_lambda == 0.0
    built = WandaSparsifier(pattern=" 4:8 ", update="true", blocksize="64", percdamp="0.1")
    assert (built.pattern, built.sparsity, built.options.update, built.options.blocksize) == ("4:8", 0.5, True, 64)
    assert SparseGPTSparsifier(pattern="unstructured", sparsity=0.7).sparsity == 0.7


def test_registry_builds_each_method_from_config(tmp_path: Path) -> None:
    # The config file's unquoted 2:4 stays text (core's YAML loader has no base-60 numbers).
    path = tmp_path / "config.yaml"
    for name, cls in (
        ("magnitude", MagnitudeSparsifier),
        ("wanda", WandaSparsifier),
        ("sparsegpt", SparseGPTSparsifier),
    ):
        path.write_text(f"sparsity:\n  implementation: {name}\n  options:\n    pattern: 2:4\n")
        sparsifier = registry.create_sparsifier(load_config(path))
        assert isinstance(sparsifier, cls) and sparsifier.pattern == "2:4"
    config = load_config(sparsity={"implementation": "wanda", "options": {"pattern": "4:8", "update": True}})
    assert registry.create_sparsifier(config).pattern == "4:8"


def test_a_pattern_read_as_a_number_is_refused() -> None:
    """Plain YAML 1.1 turns 2:4 into 124: say so rather than guess."""
    with pytest.raises(ConfigError, match="quote the pattern"):
        WandaSparsifier(pattern=124)


def test_sparsify_checks_width_share_and_calibration() -> None:
    weight = torch.randn(8, 30)
    with pytest.raises(ConfigError, match="divisible by 4"):
        MagnitudeSparsifier(pattern="2:4").sparsify(weight)
    with pytest.raises(ConfigError, match="fixes sparsity"):
        MagnitudeSparsifier(pattern="2:4").sparsify(torch.randn(8, 32), sparsity=0.3)
    assert MagnitudeSparsifier(pattern="2:4").sparsify(torch.randn(8, 32), sparsity=0.5).density == 0.5
    with pytest.raises(ConfigError, match="needs calibration"):
        WandaSparsifier().sparsify(weight)
    wanda_stats = WandaSparsifier().calibration_observer()
    wanda_stats.observe(torch.randn(16, 30))
    with pytest.raises(ConfigError, match="Gram matrix"):
        SparseGPTSparsifier().sparsify(weight, wanda_stats.result)
    with pytest.raises(ValueError, match="channels"):
        WandaSparsifier().sparsify(torch.randn(8, 31), wanda_stats.result)
    with pytest.raises(TypeError, match="InputStats"):
        WandaSparsifier().sparsify(weight, torch.ones(30))
    with pytest.raises(ValueError, match="2-D"):
        MagnitudeSparsifier().sparsify(torch.randn(30))
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        MagnitudeSparsifier().sparsify(weight, sparsity=1.5)
