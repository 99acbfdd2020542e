"""The sysfs detector on this machine: conformance, and field-by-field agreement with lscpu / numactl -H.

lscpu and numactl read the same kernel files through different code (util-linux,
libnuma), so agreement checks our parsing, not theirs. Each comparison is
skipped, with the reason, where its tool is not installed (numactl is not
on the development machine).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from sagellm.core.protocols import TopologyDetector
from sagellm.core.testing.topology import TopologyDetectorConformance
from sagellm.core.types.topology import TopologyInfo
from sagellm.topology import SysfsTopologyDetector, parse_cpulist

_SIZE = re.compile(r"([\d.]+)\s*([KMG]i?B)")
_UNIT = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
_LSCPU_CACHES = {"L1d": (1, "Data"), "L1i": (1, "Instruction"), "L2": (2, "Unified"), "L3": (3, "Unified")}


class TestThisMachineConformance(TopologyDetectorConformance):
    def make_detector(self) -> TopologyDetector:
        return SysfsTopologyDetector()


def _run(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True, env={"LC_ALL": "C"}).stdout


def _lscpu() -> dict[str, str]:
    if shutil.which("lscpu") is None:
        pytest.skip("lscpu is not installed")
    fields: dict[str, str] = {}
    for line in _run("lscpu").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@pytest.fixture(scope="module")
def info() -> TopologyInfo:
    return SysfsTopologyDetector().detect()


def test_cpu_fields_agree_with_lscpu(info: TopologyInfo) -> None:
    lscpu, cpu = _lscpu(), info.cpu
    assert cpu is not None
    sockets = int(lscpu["Socket(s)"])
    assert cpu.model == lscpu["Model name"]
    assert cpu.vendor == lscpu["Vendor ID"]
    assert cpu.family == int(lscpu["CPU family"])
    assert cpu.model_number == int(lscpu["Model"])
    assert cpu.sockets == sockets
    assert cpu.cores == int(lscpu["Core(s) per socket"]) * sockets
    assert cpu.threads == len(parse_cpulist(lscpu["On-line CPU(s) list"]))
    assert cpu.threads == cpu.cores * int(lscpu["Thread(s) per core"])
    assert cpu.flags == tuple(sorted(lscpu["Flags"].split()))


def test_numa_fields_agree_with_lscpu(info: TopologyInfo) -> None:
    lscpu = _lscpu()
    assert info.num_numa_nodes == int(lscpu["NUMA node(s)"])
    for node in info.numa_nodes:
        assert node.cpus == parse_cpulist(lscpu[f"NUMA node{node.id} CPU(s)"])


def test_cache_sizes_agree_with_lscpu(info: TopologyInfo) -> None:
    """lscpu prints the total of all instances, e.g. "L1d cache: 96 KiB (2 instances)"."""
    lscpu = _lscpu()
    compared = 0
    for name, (level, kind) in _LSCPU_CACHES.items():
        text = lscpu.get(f"{name} cache") or lscpu.get(name)
        if text is None:
            continue
        match = _SIZE.match(text)
        assert match, text
        ours = [c for c in info.caches if (c.level, c.type) == (level, kind)]
        assert sum(c.size_bytes for c in ours) == round(float(match.group(1)) * _UNIT[match.group(2)])
        instances = re.search(r"\((\d+) instances?\)", text)
        if instances:
            assert len(ours) == int(instances.group(1))
        compared += 1
    assert compared >= 2


def test_numa_fields_agree_with_numactl(info: TopologyInfo) -> None:
    if shutil.which("numactl") is None:
        pytest.skip("numactl is not installed on this machine (apt-get install numactl to run this check)")
    text = _run("numactl", "-H")
    for node in info.numa_nodes:
        cpus = re.search(rf"^node {node.id} cpus:(.*)$", text, re.MULTILINE)
        size = re.search(rf"^node {node.id} size: (\d+) MB$", text, re.MULTILINE)
        assert cpus and tuple(int(c) for c in cpus.group(1).split()) == node.cpus
        assert size and int(size.group(1)) == node.memory_bytes // (1 << 20)
    rows = re.findall(r"^\s*(\d+):((?:\s+\d+)+)\s*$", text.split("node distances:")[1], re.MULTILINE)
    for node_id, row in rows:
        node = next(n for n in info.numa_nodes if n.id == int(node_id))
        assert node.distances == tuple(int(d) for d in row.split())
