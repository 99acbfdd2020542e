"""EngineLoad: how busy an engine is, as the server's gauges show it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One reading of an engine's queues and KV pool (for a disaggregated pair: the decode side's pool)."""

    num_running: int
    num_waiting: int
    kv_total_blocks: int
    kv_free_blocks: int
    prefix_hit_rate: float
