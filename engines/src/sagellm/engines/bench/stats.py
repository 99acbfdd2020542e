"""Summaries of one latency sample: mean and the percentiles every report uses."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def distribution(name: str, values_s: Sequence[float]) -> dict[str, float | None]:
    """``avg_<name>_ms`` and ``p50/p90/p95/p99_<name>_ms`` of ``values_s`` (seconds), None when empty.

    Percentiles interpolate linearly between samples (numpy's default, as
    vLLM's benchmark does), so p99 of 5 samples lies between the top two.
    """
    keys = [f"avg_{name}_ms", *(f"p{p}_{name}_ms" for p in PERCENTILES)]
    if not values_s:
        return dict.fromkeys(keys)
    ms = np.asarray(values_s, dtype=np.float64) * 1000.0
    values = [float(ms.mean()), *(float(v) for v in np.percentile(ms, PERCENTILES))]
    return {key: round(value, 3) for key, value in zip(keys, values)}
