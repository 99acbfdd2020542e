"""The options of the ``probe`` accelerator (config section ``cot_acceleration.options``), checked once.

Defaults and why:

- ``probe_suffix``: the text DEER and Dynasor append to force an answer, in
  the ``\\boxed{`` form most math-tuned models emit; what the probe decodes
  up to "}" is the answer.
- ``max_probe_tokens`` 16: a GSM8K answer is a few digits; a probe that has
  not closed its box by then is not answering.
- ``stable_probes`` 2 and ``confidence`` 0.8: early exit needs the last two
  probes to agree *and* the latest to be likely. DEER stops on one probe
  at 0.95 (a single reading must be near-certain); Dynasor on three equal
  readings and no confidence. Two agreeing readings already rule out a
  lucky single guess, so the threshold can sit below DEER's; and small
  models (the engine's default is 135M parameters) seldom put 0.95 on
  any multi-token answer, which would make early exit never fire.
- ``esc_window`` 5: the window ESC (Li et al. 2024) uses for GSM8K (their
  ``early_stop_gsm8k.py``: windows of 5, at most 40 samples).
- ``min_probe_gap`` 24 and ``probe_every`` 64: a probe costs a fork and up
  to ``max_probe_tokens`` decode steps, so probes are spaced at least 24
  tokens apart even when steps are short; when no step boundary shows up,
  one is taken every 64 tokens anyway (Dynasor's fixed interval; 0 turns
  that fallback off).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sagellm.core.errors import ConfigError

DEFAULT_PROBE_SUFFIX = "\n\nFinal answer: \\boxed{"


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """Validated options; build with :meth:`from_mapping` (unknown names and bad values are a ConfigError)."""

    probe_suffix: str = DEFAULT_PROBE_SUFFIX
    max_probe_tokens: int = 16
    esc_window: int = 5
    stable_probes: int = 2
    confidence: float = 0.8
    min_probe_gap: int = 24
    probe_every: int = 64

    def __post_init__(self) -> None:
        problems = [problem for problem in _problems(self) if problem]
        if problems:
            raise ConfigError(f"cot_acceleration 'probe': {'; '.join(problems)} (known options: {known_options()})")

    @classmethod
    def from_mapping(cls, options: dict[str, Any]) -> ProbeOptions:
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(
                f"cot_acceleration 'probe': unknown option(s) {', '.join(unknown)} (known options: {known_options()})"
            )
        return cls(**options)


def known_options() -> str:
    """Every option as name=default, for error messages, so a typo shows what was meant."""
    return ", ".join(f"{f.name}={f.default!r}" for f in fields(ProbeOptions))


def _problems(options: ProbeOptions) -> list[str]:
    return [
        _check_suffix(options.probe_suffix),
        _check_int("max_probe_tokens", options.max_probe_tokens, 1),
        _check_int("esc_window", options.esc_window, 2),  # a window of 1 always "agrees": that is plain sampling
        _check_int("stable_probes", options.stable_probes, 1),
        _check_int("min_probe_gap", options.min_probe_gap, 0),
        _check_int("probe_every", options.probe_every, 0),
        _check_confidence(options.confidence),
        _check_spacing(options.min_probe_gap, options.probe_every),
    ]


def _check_suffix(value: Any) -> str:
    return "" if isinstance(value, str) and value else f"probe_suffix must be a non-empty str, got {value!r}"


def _check_int(name: str, value: Any, least: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        return f"{name} must be an int >= {least}, got {value!r}"
    return ""


def _check_confidence(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        return f"confidence must be a number in [0, 1], got {value!r}"
    return ""


def _check_spacing(min_probe_gap: Any, probe_every: Any) -> str:
    both_ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (min_probe_gap, probe_every))
    if both_ints and 0 < probe_every < min_probe_gap:
        return f"probe_every ({probe_every}) must be 0 (off) or >= min_probe_gap ({min_probe_gap})"
    return ""
