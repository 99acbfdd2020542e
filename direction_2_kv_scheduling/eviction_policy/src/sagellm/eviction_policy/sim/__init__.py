"""Trace-driven simulation of a prefix cache: which policy hits most, and how far from Belady.

``python -m sagellm.eviction_policy.sim --trace PATH`` (also the console
script ``sagellm-eviction-sim``) replays a block-hash trace at several
cache sizes; :func:`run_sweep` is the same from Python.
"""

from sagellm.eviction_policy.sim.belady import BeladyEvictionPolicy, FutureAccesses
from sagellm.eviction_policy.sim.replay import PolicyContractError, PrefixCacheReplay, ReplayResult
from sagellm.eviction_policy.sim.sweep import Sweep, SweepRow, default_sizes, parse_sizes, policy_factories, run_sweep
from sagellm.eviction_policy.sim.synthetic import synthetic_trace
from sagellm.eviction_policy.sim.trace import Trace, TraceError, TraceRequest, load_trace, trace_from_rows

__all__ = [
    "BeladyEvictionPolicy",
    "FutureAccesses",
    "PolicyContractError",
    "PrefixCacheReplay",
    "ReplayResult",
    "Sweep",
    "SweepRow",
    "Trace",
    "TraceError",
    "TraceRequest",
    "default_sizes",
    "load_trace",
    "parse_sizes",
    "policy_factories",
    "run_sweep",
    "synthetic_trace",
    "trace_from_rows",
]
