"""Which CPUs each tensor-parallel rank runs on, from the configured topology detector.

Ranks that share cores time-slice each other's OpenMP teams, and a rank
whose threads migrate between NUMA nodes reads its weights across the
interconnect. So, when ``topology.implementation`` names a detector, each
worker rank is pinned to its own CPUs and every rank runs one torch thread
per physical core of its share::

    ranks <= NUMA nodes   rank r: whole NUMA nodes (node r, r + N, ...)
    ranks >  NUMA nodes   each node's cores dealt out as whole SMT groups

Rank 0 is the caller's process (a server, a notebook): it is not pinned,
so its other threads keep their CPUs; with the workers pinned, the
scheduler leaves rank 0 the cores they do not hold. Without a detector the
ranks float (threads = cores / ranks).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sagellm.core import registry
from sagellm.core.config import SageLLMConfig
from sagellm.core.errors import ConfigError
from sagellm.core.types import TopologyInfo

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Placement:
    cpus: tuple[int, ...]  # logical CPUs the rank may run on
    threads: int  # torch threads: one per physical core among them


def detect_topology(config: SageLLMConfig) -> TopologyInfo | None:
    """The configured detector's view of this machine (logged once); None when ``topology.implementation`` is none."""
    if config.topology.implementation == registry.NO_IMPLEMENTATION:
        return None
    topology = registry.create_topology_detector(config).detect()
    logger.info("topology (%s): %s", config.topology.implementation, summary(topology))
    return topology


def summary(topology: TopologyInfo) -> str:
    """One line: CPU, cores and threads, NUMA nodes, accelerators, NICs."""
    cpu = topology.cpu
    cores = f"{cpu.model or 'CPU'}, {cpu.cores} cores / {cpu.threads} threads" if cpu else "CPU unknown"
    nics = ", ".join(f"{n.name} ({n.kind}{f' {n.speed_mbps} Mb/s' if n.speed_mbps else ''})" for n in topology.nics)
    return (
        f"{cores}, {topology.num_numa_nodes} NUMA node(s), {len(topology.devices)} accelerator(s), "
        f"NICs: {nics or 'none'}"
    )


def rank_placement(topology: TopologyInfo, rank: int, world_size: int) -> Placement:
    """Rank ``rank``'s CPUs: whole NUMA nodes when there are enough, else whole cores of its node."""
    groups = core_groups(topology)
    nodes = [node.cpus for node in topology.numa_nodes if node.cpus] or [tuple(c for g in groups for c in g)]
    if world_size <= len(nodes):
        mine = {cpu for index, node in enumerate(nodes) if index % world_size == rank for cpu in node}
    else:
        node = nodes[rank % len(nodes)]
        ranks_here = [r for r in range(world_size) if r % len(nodes) == rank % len(nodes)]
        cores = [g for g in groups if g[0] in node]
        if len(cores) < len(ranks_here):
            raise ConfigError(
                f"{world_size} tensor-parallel ranks need a core each, but NUMA node {rank % len(nodes)} has "
                f"{len(cores)}; use fewer ranks or leave topology.implementation at 'none'"
            )
        share = ranks_here.index(rank)
        base, extra = divmod(len(cores), len(ranks_here))
        begin = share * base + min(share, extra)
        mine = {cpu for g in cores[begin : begin + base + (1 if share < extra else 0)] for cpu in g}
    cpus = tuple(sorted(mine))
    return Placement(cpus, max(1, sum(1 for g in groups if g[0] in mine)))


def core_groups(topology: TopologyInfo) -> list[tuple[int, ...]]:
    """One tuple of hardware threads per physical core (each CPU alone when SMT is unknown)."""
    if topology.cpu is not None and topology.cpu.smt_siblings:
        return sorted(tuple(sorted(group)) for group in topology.cpu.smt_siblings)
    return [(cpu,) for node in topology.numa_nodes for cpu in node.cpus]


def pin(placement: Placement) -> None:
    """Run this process (and the threads it starts later) on ``placement.cpus``."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, placement.cpus)
