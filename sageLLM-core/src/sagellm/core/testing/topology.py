"""Conformance suite for :class:`sagellm.core.protocols.TopologyDetector`.

A detector reports facts that other packages act on (pin a worker to the
CPUs of its GPU's NUMA node, pick the NIC next to a GPU), so the suite
checks that the value it returns is internally consistent: every NUMA
reference points at a reported node, every CPU belongs to exactly one
node, every link joins two reported devices. It cannot know the right
answer for the machine; the implementation's own fixture tests do that.

Subclass, implement :meth:`make_detector`, and name the class ``Test...``.
"""

from __future__ import annotations

import dataclasses

from sagellm.core.protocols import TopologyDetector
from sagellm.core.types.topology import TopologyInfo


class TopologyDetectorConformance:
    """Inherit and implement :meth:`make_detector`."""

    def make_detector(self) -> TopologyDetector:
        """A fresh detector over the machine (or fake tree) under test."""
        raise NotImplementedError

    def _detect(self) -> TopologyInfo:
        return self.make_detector().detect()

    def test_satisfies_the_protocol(self) -> None:
        assert isinstance(self.make_detector(), TopologyDetector)

    def test_detect_returns_a_topology_info(self) -> None:
        assert isinstance(self._detect(), TopologyInfo)

    def test_detect_is_repeatable(self) -> None:
        detector = self.make_detector()
        first, second = detector.detect(), detector.detect()
        assert first == second
        assert first == self._detect(), "a fresh detector must report the same machine"

    def test_value_is_hashable_and_frozen(self) -> None:
        info = self._detect()
        assert hash(info) == hash(self._detect())
        try:
            info.hostname = "changed"  # type: ignore[misc]
        except (dataclasses.FrozenInstanceError, AttributeError):
            pass
        else:
            raise AssertionError("TopologyInfo must be immutable")

    def test_numa_node_ids_are_unique(self) -> None:
        ids = [node.id for node in self._detect().numa_nodes]
        assert len(ids) == len(set(ids)), f"duplicate NUMA ids: {ids}"

    def test_every_cpu_is_in_exactly_one_numa_node(self) -> None:
        info = self._detect()
        seen: dict[int, int] = {}
        for node in info.numa_nodes:
            for cpu in node.cpus:
                assert cpu not in seen, f"cpu {cpu} in NUMA nodes {seen[cpu]} and {node.id}"
                seen[cpu] = node.id
        if info.cpu is not None and info.numa_nodes and any(n.cpus for n in info.numa_nodes):
            online = {cpu for group in info.cpu.smt_siblings for cpu in group}
            assert online <= set(seen), f"cpus outside every NUMA node: {sorted(online - set(seen))}"

    def test_numa_references_point_at_reported_nodes(self) -> None:
        info = self._detect()
        known = {node.id for node in info.numa_nodes}
        refs = [(f"device {d.kind}:{d.index}", d.numa_node) for d in info.devices]
        refs += [(f"nic {n.name}", n.numa_node) for n in info.nics]
        refs += [(f"pci {p.address}", p.numa_node) for p in info.pci_devices]
        for what, node in refs:
            assert node is None or node in known, f"{what} names NUMA node {node}; reported: {sorted(known)}"

    def test_distance_rows_match_the_node_count(self) -> None:
        nodes = self._detect().numa_nodes
        for node in nodes:
            assert node.distances == () or len(node.distances) == len(nodes), f"node {node.id}: {node.distances}"

    def test_links_join_two_reported_devices(self) -> None:
        info = self._detect()
        for link in info.links:
            assert 0 <= link.src < len(info.devices), f"link source {link.src} is not a device"
            assert 0 <= link.dst < len(info.devices), f"link target {link.dst} is not a device"
            assert link.src != link.dst, f"link from device {link.src} to itself"
            assert link.kind, "a link needs a kind"

    def test_smt_groups_are_disjoint_and_match_the_counts(self) -> None:
        cpu = self._detect().cpu
        if cpu is None:
            return
        flat = [c for group in cpu.smt_siblings for c in group]
        assert len(flat) == len(set(flat)), "a cpu appears in two SMT sibling groups"
        if cpu.smt_siblings:
            assert cpu.threads == len(flat), f"threads={cpu.threads} but {len(flat)} cpus in SMT groups"
            assert cpu.cores == len(cpu.smt_siblings), f"cores={cpu.cores} but {len(cpu.smt_siblings)} groups"
        assert list(cpu.flags) == sorted(set(cpu.flags)), "flags must be sorted and unique"

    def test_cache_instances_are_plausible(self) -> None:
        info = self._detect()
        known = {c for group in info.cpu.smt_siblings for c in group} if info.cpu else set()
        for cache in info.caches:
            assert cache.level >= 1 and cache.size_bytes > 0, f"implausible cache {cache}"
            if known:
                assert set(cache.shared_cpus) <= known, f"cache {cache} names unknown cpus"
