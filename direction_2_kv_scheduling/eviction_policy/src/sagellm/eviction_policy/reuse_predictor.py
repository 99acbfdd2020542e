"""A small online lifetime predictor, the learned policy's default when none is handed over."""

from __future__ import annotations

from dataclasses import dataclass

from sagellm.core.types import KVBlockMeta

_MAX_BUCKET = 3  # blocks reused 3+ times behave alike


@dataclass(slots=True)
class _Outcomes:
    """What happened to blocks with one access count: how often, and how soon, they came back."""

    reused: int = 0
    never: int = 0
    mean_interval: float = 0.0


class ReuseIntervalPredictor:
    """Implements :class:`sagellm.core.protocols.LifetimePredictor` from reuse statistics per access count.

    Blocks are grouped by how often they were reused so far (0, 1, 2, 3+).
    For each group it keeps the share that came back and the mean time they
    took (running mean), and predicts ``mean interval / share reused``: a
    group whose blocks rarely return gets a long time-to-reuse, so the
    learned policy drops its blocks first — in prefix caches most blocks are
    the tail of a one-off prompt and never come back. Before any outcome of
    a group arrives it predicts ``prior_s``. O(1) per call, no dependencies.
    A stronger predictor (sagellm-lifetime-predictor, or any other) plugs in
    through the learned policy's ``predictor`` argument.
    """

    def __init__(self, prior_s: float = 1.0) -> None:
        if prior_s <= 0:
            raise ValueError(f"prior_s must be > 0, got {prior_s}")
        self._prior_s = prior_s
        self._groups = [_Outcomes() for _ in range(_MAX_BUCKET + 1)]

    def predict(self, block_meta: KVBlockMeta, now: float = 0.0) -> float:
        group = self._groups[min(block_meta.access_count, _MAX_BUCKET)]
        if group.reused == 0:
            return self._prior_s if group.never == 0 else float("inf")
        share = group.reused / (group.reused + group.never)
        return max(group.mean_interval, 1e-6) / share

    def observe(self, block_meta: KVBlockMeta, reused_after: float | None) -> None:
        group = self._groups[min(block_meta.access_count, _MAX_BUCKET)]
        if reused_after is None:
            group.never += 1
            return
        group.reused += 1
        group.mean_interval += (max(0.0, reused_after) - group.mean_interval) / group.reused
