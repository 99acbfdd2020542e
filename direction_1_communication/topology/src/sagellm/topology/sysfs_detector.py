"""The ``sysfs`` topology detector: NUMA, CPUs, caches, NICs, PCI and accelerators from /sys and /proc.

No subprocess, no library beyond the standard one: everything is a small
file read, and only the files the result needs (see :mod:`.cpu` for how
per-CPU reads are shared by sibling groups). ``root`` re-roots every path,
so the same code runs on the committed fake trees in ``tests/fixtures``.
"""

from __future__ import annotations

from sagellm.core.errors import ConfigError
from sagellm.core.types.topology import TopologyInfo
from sagellm.topology._sysfs import SysfsReader
from sagellm.topology.cpu import online_cpus, read_caches, read_cpu
from sagellm.topology.nics import read_nics
from sagellm.topology.numa import read_numa_nodes
from sagellm.topology.pci import accelerators, read_pci_devices


class SysfsTopologyDetector:
    """``detect()`` reads the tree under ``root`` afresh on every call (hardware can be hot-plugged)."""

    def __init__(self, root: str = "/") -> None:
        reader = SysfsReader(root)
        if not reader.exists("/sys/devices/system/cpu"):
            raise ConfigError(f"{root!r} has no sys/devices/system/cpu: not a sysfs root")
        self.root = root
        self._reader = reader

    def detect(self) -> TopologyInfo:
        reader = self._reader
        pci = read_pci_devices(reader)
        cpu = read_cpu(reader)
        return TopologyInfo(
            devices=accelerators(reader, pci),
            nics=read_nics(reader),
            hostname=reader.read("/proc/sys/kernel/hostname") or "",
            numa_nodes=read_numa_nodes(reader),
            caches=read_caches(reader, online_cpus(reader), cpu.smt_siblings),
            cpu=cpu,
            pci_devices=pci,
        )
