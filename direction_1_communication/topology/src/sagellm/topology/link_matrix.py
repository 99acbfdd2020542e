"""The matrix a vendor tool prints (``nvidia-smi topo -m`` and kin), kept as printed, and its TopologyInfo.

::

            GPU0   GPU1   NIC0   CPU Affinity   NUMA Affinity
    GPU0     X     NV12   PXB    0-15           0          <- labels[0], cpu_affinity[0], numa_affinity[0]
    GPU1    NV12    X     PXB    0-15           0
    NIC0    PXB    PXB     X                                <- NICs have no affinity columns

``labels[i][j]`` is the vendor's word for the path from ``names[i]`` to
``names[j]``. :meth:`LinkMatrix.to_topology` keeps the accelerators as
devices and the rest as NICs; links join accelerators only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sagellm.core.types.topology import DeviceInfo, LinkInfo, NicInfo, NumaNode, TopologyInfo
from sagellm.topology.cpulist import parse_cpulist
from sagellm.topology.link_labels import classify

DEVICE_KINDS = {"nvidia-smi": "cuda", "npu-smi": "npu", "rocm-smi": "rocm", "xpu-smi": "xpu"}
_ACCELERATOR = re.compile(r"(GPU|NPU)\s*\d+(/\d+)?|Phy-ID\d+")

IntMatrix = tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class LinkMatrix:
    tool: str  # "nvidia-smi", "npu-smi", "rocm-smi", "xpu-smi"
    names: tuple[str, ...]  # rows = columns, as printed ("GPU0", "NIC0", "GPU 1/0")
    labels: tuple[tuple[str, ...], ...] = ()  # () when the output had no link-type matrix
    cpu_affinity: tuple[str, ...] = ()  # per row, "" when not printed
    numa_affinity: tuple[int | None, ...] = ()  # per row
    aliases: tuple[tuple[str, str], ...] = ()  # nvidia-smi "NIC Legend": ("NIC0", "mlx5_0")
    weights: IntMatrix = ()  # rocm-smi only
    hops: IntMatrix = ()  # rocm-smi only

    def label(self, src: str, dst: str) -> str:
        """The printed label between two named rows."""
        return self.labels[self.names.index(src)][self.names.index(dst)]

    def is_accelerator(self, name: str) -> bool:
        return _ACCELERATOR.fullmatch(name) is not None

    def to_topology(self) -> TopologyInfo:
        """Accelerators become devices (in printed order), the other rows NICs."""
        rows = [i for i, name in enumerate(self.names) if self.is_accelerator(name)]
        alias = dict(self.aliases)
        devices = tuple(self._device(pos, row) for pos, row in enumerate(rows))
        nics = tuple(
            NicInfo(name=alias.get(name, name), kind="rdma") for i, name in enumerate(self.names) if i not in rows
        )
        return TopologyInfo(devices=devices, links=self._links(rows), nics=nics, numa_nodes=self._numa_nodes(rows))

    def _device(self, pos: int, row: int) -> DeviceInfo:
        cpus = self.cpu_affinity[row] if row < len(self.cpu_affinity) else ""
        numa = self.numa_affinity[row] if row < len(self.numa_affinity) else None
        return DeviceInfo(
            index=pos,
            kind=DEVICE_KINDS[self.tool],
            name=self.names[row],
            numa_node=numa,
            local_cpus=parse_cpulist(cpus) if cpus else (),
        )

    def _links(self, rows: list[int]) -> tuple[LinkInfo, ...]:
        if not self.labels:
            return ()
        links: list[LinkInfo] = []
        for a, i in enumerate(rows):
            for b, j in enumerate(rows):
                if a == b:
                    continue
                kind, count = classify(self.tool, self.labels[i][j])
                links.append(
                    LinkInfo(
                        src=a,
                        dst=b,
                        kind=kind,
                        label=self.labels[i][j],
                        count=count,
                        hops=self.hops[i][j] if self.hops else None,
                        weight=self.weights[i][j] if self.weights else None,
                    )
                )
        return tuple(links)

    def _numa_nodes(self, rows: list[int]) -> tuple[NumaNode, ...]:
        """Nodes named by the NUMA column, each with the CPUs its devices' affinity lists."""
        cpus: dict[int, set[int]] = {}
        for row in rows:
            numa = self.numa_affinity[row] if row < len(self.numa_affinity) else None
            if numa is None:
                continue
            text = self.cpu_affinity[row] if row < len(self.cpu_affinity) else ""
            cpus.setdefault(numa, set()).update(parse_cpulist(text) if text else ())
        return tuple(NumaNode(id=node, cpus=tuple(sorted(cpus[node]))) for node in sorted(cpus))
