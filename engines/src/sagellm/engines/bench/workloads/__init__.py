"""Workloads: each turns a data set, a trace or a recipe into a :class:`RunSpec`.

``WORKLOADS`` maps the ``--workload`` names to their builders; the named
Q1-Q8 suite and its presets are in :mod:`.suite`.
"""

from __future__ import annotations

from collections.abc import Callable

from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.bench.workloads import azure, grounded, gsm8k, mooncake, mt_bench, synthetic
from sagellm.engines.bench.workloads.base import RunSpec, WorkloadOptions
from sagellm.engines.bench.workloads.suite import PRESETS, build_suite

WorkloadBuilder = Callable[[TokenizerLike, WorkloadOptions], RunSpec]

WORKLOADS: dict[str, WorkloadBuilder] = {
    "synthetic": synthetic.build,
    "mt-bench": mt_bench.build,
    "gsm8k": gsm8k.build,
    "grounded": grounded.build,
    "mooncake": mooncake.build,
    "azure": azure.build,
}

__all__ = ["PRESETS", "WORKLOADS", "RunSpec", "WorkloadOptions", "build_suite"]
