"""Recompute or swap: which way a preempted sequence gives its blocks back.

Both free the victim's device blocks this step, so the step's block
arithmetic is the same; they differ in what readmission costs. The choice
is per victim, by :class:`CostModel`: swap when ``2 × KV bytes / host
bandwidth`` is below the context's prefill time. The engine must say it can
swap (``swap_available``); otherwise every victim recomputes, which is what
an engine without a host KV tier implements.
"""

from __future__ import annotations

from collections.abc import Callable

from sagellm.core.types import SequenceView
from sagellm.core.types.plan import PreemptionMode
from sagellm.scheduler_ir.cost import CostModel

ModeChooser = Callable[[SequenceView], PreemptionMode]


def cheaper_mode(view: SequenceView, block_size: int, cost: CostModel) -> PreemptionMode:
    """The cheaper of the two for this sequence; ties recompute (it needs no host memory)."""
    if cost.swap_seconds(view, block_size) < cost.recompute_seconds(view):
        return PreemptionMode.SWAP
    return PreemptionMode.RECOMPUTE


def mode_chooser(block_size: int, cost: CostModel, swap_available: bool) -> ModeChooser | None:
    """A per-victim chooser for one step; None means "always recompute" (no swap tier)."""
    if not swap_available:
        return None
    return lambda view: cheaper_mode(view, block_size, cost)
