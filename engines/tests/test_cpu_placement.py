"""Where tensor-parallel ranks run, from a topology: whole NUMA nodes first, else whole cores."""

from __future__ import annotations

import pytest

from sagellm.core.errors import ConfigError
from sagellm.core.types import CpuInfo, NumaNode, TopologyInfo
from sagellm.engines.engine.cpu_placement import Placement, core_groups, rank_placement


def machine(nodes: list[tuple[int, ...]], smt: list[tuple[int, ...]] | None = None) -> TopologyInfo:
    cpu = CpuInfo(smt_siblings=tuple(smt)) if smt else None
    return TopologyInfo(numa_nodes=tuple(NumaNode(i, cpus) for i, cpus in enumerate(nodes)), cpu=cpu)


def test_two_ranks_on_two_cores_get_one_core_each() -> None:
    two = machine([(0, 1)])
    assert [rank_placement(two, r, 2) for r in range(2)] == [Placement((0,), 1), Placement((1,), 1)]


def test_ranks_take_whole_numa_nodes_when_there_are_enough() -> None:
    four = machine([(0, 1), (2, 3), (4, 5), (6, 7)])
    assert rank_placement(four, 0, 2) == Placement((0, 1, 4, 5), 4)
    assert rank_placement(four, 1, 2) == Placement((2, 3, 6, 7), 4)


def test_smt_siblings_stay_together_and_count_as_one_thread() -> None:
    smt = machine([(0, 1, 2, 3, 4, 5, 6, 7)], smt=[(0, 4), (1, 5), (2, 6), (3, 7)])
    assert core_groups(smt) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert rank_placement(smt, 0, 2) == Placement((0, 1, 4, 5), 2)
    assert rank_placement(smt, 1, 2) == Placement((2, 3, 6, 7), 2)


def test_more_ranks_than_cores_is_refused() -> None:
    with pytest.raises(ConfigError, match="need a core each"):
        rank_placement(machine([(0, 1)]), 2, 3)


def test_this_machine_places_every_cpu_once() -> None:
    pytest.importorskip("sagellm.topology")
    from sagellm.topology import SysfsTopologyDetector

    here = SysfsTopologyDetector().detect()
    placements = [rank_placement(here, r, 2) for r in range(2)] if len(core_groups(here)) >= 2 else []
    cpus = [cpu for p in placements for cpu in p.cpus]
    assert len(cpus) == len(set(cpus))
