"""NUMA nodes from /sys/devices/system/node: CPUs, memory and the distance row of each node."""

from __future__ import annotations

import re

from sagellm.core.types.topology import NumaNode
from sagellm.topology._sysfs import SysfsReader
from sagellm.topology.cpulist import parse_cpulist

NODE_DIR = "/sys/devices/system/node"
_MEM_TOTAL = re.compile(r"MemTotal:\s*(\d+)\s*kB")


def node_ids(reader: SysfsReader) -> tuple[int, ...]:
    """Online node ids (``node/online``; the ``nodeN`` directories when that file is missing)."""
    text = reader.read(f"{NODE_DIR}/online")
    if text:
        return parse_cpulist(text)
    return tuple(sorted(int(n[4:]) for n in reader.listdir(NODE_DIR) if re.fullmatch(r"node\d+", n)))


def read_numa_nodes(reader: SysfsReader) -> tuple[NumaNode, ...]:
    """One :class:`NumaNode` per online node; () on kernels built without NUMA."""
    nodes: list[NumaNode] = []
    for node in node_ids(reader):
        base = f"{NODE_DIR}/node{node}"
        meminfo = reader.read(f"{base}/meminfo") or ""
        match = _MEM_TOTAL.search(meminfo)
        distances = tuple(int(d) for d in (reader.read(f"{base}/distance") or "").split())
        nodes.append(
            NumaNode(
                id=node,
                cpus=parse_cpulist(reader.read(f"{base}/cpulist") or ""),
                memory_bytes=int(match.group(1)) * 1024 if match else 0,
                distances=distances,
            )
        )
    return tuple(nodes)
