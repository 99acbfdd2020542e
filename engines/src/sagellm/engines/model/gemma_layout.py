"""Gemma's layer layout where a file leaves it out: which layers are windowed, their RoPE base.

Both file formats fall back on the same rules (transformers' config
defaults, which llama.cpp hard-codes): Gemma 2 windows every other layer
from the first, Gemma 3 five of every six; Gemma 3's windowed layers rotate
with base 10,000.
"""

from __future__ import annotations

from typing import Any

WINDOW_PATTERN = {"gemma2": 2, "gemma3": 6}
LOCAL_ROPE_THETA = {"gemma3": 10000.0}


def windowed_layers(num_layers: int, pattern: int) -> tuple[int, ...]:
    """Every layer but each ``pattern``-th: the windowed ones."""
    return tuple(i for i in range(num_layers) if (i + 1) % pattern)


def opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
