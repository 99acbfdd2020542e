"""What every workload builds: a named run of requests with its natural load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sagellm.engines.bench.load_pattern import LoadPattern
from sagellm.engines.bench.request import BenchRequest


@dataclass(frozen=True, slots=True)
class WorkloadOptions:
    """The user's knobs for a single workload (``sagellm bench --workload ...``).

    ``length_scale`` multiplies every trace length (a 40K-token Mooncake
    prompt at 0.05 becomes 2K, its 512-token hash blocks 26 tokens), so a
    trace recorded for big models still replays on a tiny one;
    ``time_scale`` stretches (>1) or compresses (<1) trace inter-arrival gaps.
    """

    num_requests: int = 10
    input_len: int = 128
    output_len: int = 64
    length_scale: float = 1.0
    time_scale: float = 1.0
    data_path: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_requests < 1 or self.input_len < 1 or self.output_len < 1:
            raise ValueError("num_requests, input_len and output_len must be >= 1")
        if not self.length_scale > 0 or not self.time_scale > 0:
            raise ValueError("length_scale and time_scale must be > 0")

    def scaled(self, length: int) -> int:
        return max(1, round(length * self.length_scale))


@dataclass(slots=True)
class RunSpec:
    """One benchmark run: its requests, the load it runs under by default, and its declared shape.

    ``shape`` goes into the report as is; the CI gate refuses to compare two
    runs of the same name whose shapes differ.
    """

    name: str
    requests: list[BenchRequest]
    load: LoadPattern
    shape: dict[str, Any] = field(default_factory=dict)
    title: str = ""
