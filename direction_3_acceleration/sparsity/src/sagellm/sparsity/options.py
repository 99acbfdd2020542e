"""The options of every sparsifier, checked once: unknown names and bad values are ConfigErrors.

Values may come from YAML or the CLI's ``KEY=VALUE`` flags, so numbers and
booleans arrive as numbers, booleans or strings; each is converted and
range-checked here, and the error names what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.sparsity.pattern import UNSTRUCTURED, SparsityPattern, parse_pattern

KERNELS = ("auto", "dense", "int8", "bf16")
PACKED_KERNELS = ("int8", "bf16")
COMMON_OPTIONS = ("pattern", "sparsity", "kernel", "owl_lambda", "owl_m")
SOLVER_OPTIONS = ("blocksize", "percdamp")  # SparseGPT's weight update (and Wanda's with update=true)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True, slots=True)
class SparsifierOptions:
    """Everything a sparsifier is configured with (defaults: 50 % unstructured, kernel auto, OWL off)."""

    pattern: SparsityPattern
    kernel: str = "auto"
    owl_lambda: float = 0.0  # OWL: block sparsities spread over [s - lambda, s + lambda]; 0 = uniform
    owl_m: float = 5.0  # OWL: a score is an outlier above owl_m x its block's mean score
    update: bool = False  # Wanda: rebuild the kept weights with SparseGPT's update
    blocksize: int = 128  # SparseGPT: columns per lazy-update block
    percdamp: float = 0.01  # SparseGPT: dampening, a share of the Gram matrix's mean diagonal


def parse_options(method: str, raw: Mapping[str, Any], allowed: tuple[str, ...]) -> SparsifierOptions:
    """``raw`` (a config section's options) as checked options of the sparsifier ``method``."""
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {method} sparsity option(s) {unknown}; allowed: {', '.join(allowed)}")
    pattern = parse_pattern(raw.get("pattern", UNSTRUCTURED), raw.get("sparsity"))
    options = SparsifierOptions(
        pattern=pattern,
        kernel=_kernel(raw.get("kernel", "auto"), pattern),
        owl_lambda=_number(raw, "owl_lambda", 0.0, low=0.0),
        owl_m=_number(raw, "owl_m", 5.0, low=1.0),
        update=_boolean(raw, "update", False),
        blocksize=int(_number(raw, "blocksize", 128, low=1.0, integer=True)),
        percdamp=_number(raw, "percdamp", 0.01, low=0.0),
    )
    _check_owl(options)
    return options


def _kernel(value: Any, pattern: SparsityPattern) -> str:
    if value not in KERNELS:
        raise ConfigError(f"sparsity option kernel must be one of {', '.join(KERNELS)}; got {value!r}")
    if value in PACKED_KERNELS and pattern.name != "2:4":
        raise ConfigError(f"kernel={value} runs packed 2:4 weights only; pattern is {pattern.name} (use auto or dense)")
    return str(value)


def _number(raw: Mapping[str, Any], name: str, default: float, *, low: float, integer: bool = False) -> float:
    value = raw.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sparsity option {name} must be a number, got {value!r}") from exc
    if isinstance(value, bool) or number < low or (integer and number != int(number)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"sparsity option {name} must be {kind} >= {low:g}, got {value!r}")
    return number


def _boolean(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ConfigError(f"sparsity option {name} must be true or false, got {value!r}")


def _check_owl(options: SparsifierOptions) -> None:
    """OWL spreads an unstructured share; its range must keep every block's share within [0, 1)."""
    lam, target = options.owl_lambda, options.pattern.sparsity
    if lam == 0.0:
        return
    if options.pattern.is_n_m:
        raise ConfigError(f"owl_lambda varies unstructured sparsity only; pattern {options.pattern.name} fixes it")
    if lam > target or target + lam >= 1.0:
        raise ConfigError(f"owl_lambda must keep sparsity {target} +- lambda within [0, 1), got {lam}")
