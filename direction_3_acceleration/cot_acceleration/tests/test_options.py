"""Options: defaults, the config section, and ConfigErrors that name the known options."""

from __future__ import annotations

from typing import Any

import pytest

from sagellm.core.config import CoTAccelerationSection
from sagellm.core.errors import ConfigError
from sagellm.core.registry import create_cot_accelerator
from sagellm.cot_acceleration import DEFAULT_PROBE_SUFFIX, AnswerProbeAccelerator, ProbeOptions

KNOWN = [
    "probe_suffix",
    "max_probe_tokens",
    "esc_window",
    "stable_probes",
    "confidence",
    "min_probe_gap",
    "probe_every",
]


def test_defaults() -> None:
    accelerator = AnswerProbeAccelerator()
    assert accelerator.name == "probe"
    assert accelerator.probe_suffix == DEFAULT_PROBE_SUFFIX == "\n\nFinal answer: \\boxed{"
    assert (accelerator.max_probe_tokens, accelerator.esc_window) == (16, 5)
    assert accelerator.options == ProbeOptions(DEFAULT_PROBE_SUFFIX, 16, 5, 2, 0.8, 24, 64)


def test_options_from_the_section() -> None:
    options: dict[str, Any] = {"probe_suffix": "Answer: \\boxed{", "max_probe_tokens": 8, "esc_window": 4}
    options |= {"stable_probes": 3}
    options |= {"confidence": 0.95, "min_probe_gap": 16, "probe_every": 0}
    built = create_cot_accelerator(CoTAccelerationSection(implementation="probe", options=options))
    assert isinstance(built, AnswerProbeAccelerator)
    assert built.options == ProbeOptions(**options)


def test_an_unknown_option_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown option.*stable_probe\\b") as caught:
        AnswerProbeAccelerator(stable_probe=3)
    assert all(name in str(caught.value) for name in KNOWN)
    with pytest.raises(ConfigError, match="unknown option"):
        create_cot_accelerator(CoTAccelerationSection(implementation="probe", options={"window": 5}))


@pytest.mark.parametrize(
    "bad",
    [
        {"probe_suffix": ""},
        {"probe_suffix": 3},
        {"max_probe_tokens": 0},
        {"max_probe_tokens": 2.5},
        {"max_probe_tokens": True},
        {"esc_window": 1},
        {"stable_probes": 0},
        {"confidence": 1.5},
        {"confidence": -0.1},
        {"confidence": "high"},
        {"min_probe_gap": -1},
        {"probe_every": -1},
        {"probe_every": 10, "min_probe_gap": 24},  # the gap would silently win
    ],
)
def test_bad_values_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="known options") as caught:
        AnswerProbeAccelerator(**bad)
    assert next(iter(bad)) in str(caught.value).split("(known options")[0]


def test_edge_values_are_accepted() -> None:
    AnswerProbeAccelerator(confidence=0, stable_probes=1, min_probe_gap=0, probe_every=0, esc_window=2)
    AnswerProbeAccelerator(confidence=1, probe_every=24, min_probe_gap=24)
