"""Block features a predictor can see online, binned so a prediction is a table look-up.

Everything comes from :class:`~sagellm.core.types.KVBlockMeta` as pools and
caches keep it — nothing from the future, nothing a cache would have to
store on top. Each feature becomes a small integer bin; a block's bins
together form the key its prediction is cached under, so the cost of a
prediction is computing six bins, not running a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sagellm.core.types import KVBlockMeta

TIME_UNIT_S = 1.0 / 64  # finest time bin: ~16 ms; bins double from there
NUM_TIME_BINS = 22  # 16 ms .. ~9 h, then capped
MAX_REUSE_BIN = 7
MAX_TURN_BIN = 7
NUM_DEPTH_BINS = 10  # prefix depth 0, 1, 2-3, 4-7, ... 256+
NUM_LENGTH_BINS = 18  # request length in tokens, log2


def time_bin(seconds: float) -> int:
    """0 for no time at all, then 1 + log2(seconds / 16 ms), capped."""
    if seconds <= 0.0:
        return 0
    if seconds < TIME_UNIT_S:
        return 1
    return min(NUM_TIME_BINS - 1, 2 + int(math.log2(seconds / TIME_UNIT_S)))


def log_bin(value: int, num_bins: int) -> int:
    """0 for 0, else 1 + floor(log2(value)), capped: 0, 1, 2-3, 4-7, ..."""
    return min(num_bins - 1, value.bit_length()) if value > 0 else 0


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    num_bins: int
    why: str


FEATURES: tuple[Feature, ...] = (
    Feature("reuses", MAX_REUSE_BIN + 1, "blocks reused before come back more often"),
    Feature("prefix_depth", NUM_DEPTH_BINS, "shallow blocks are shared by more prompts"),
    Feature("age", NUM_TIME_BINS, "time from first to latest use: long-lived blocks stay hot"),
    Feature("mean_gap", NUM_TIME_BINS, "age / reuses: the block's own rhythm"),
    Feature("request_tokens", NUM_LENGTH_BINS, "long prompts (documents) are re-sent less than chat turns"),
    Feature("turn", MAX_TURN_BIN + 1, "later turns of a conversation are likelier to have a next one"),
)

OFFSETS: tuple[int, ...] = tuple(sum(f.num_bins for f in FEATURES[:i]) for i in range(len(FEATURES)))
NUM_WEIGHTS = sum(f.num_bins for f in FEATURES)


def encode(meta: KVBlockMeta) -> tuple[int, ...]:
    """The block's feature bins, each offset into one flat weight vector (``NUM_WEIGHTS`` long)."""
    reuses = meta.access_count
    age = meta.last_access - meta.created_at
    return (
        min(reuses, MAX_REUSE_BIN),
        OFFSETS[1] + log_bin(meta.prefix_depth, NUM_DEPTH_BINS),
        OFFSETS[2] + time_bin(age),
        OFFSETS[3] + (time_bin(age / reuses) if reuses else 0),
        OFFSETS[4] + log_bin(meta.request_tokens, NUM_LENGTH_BINS),
        OFFSETS[5] + min(meta.turn, MAX_TURN_BIN),
    )
