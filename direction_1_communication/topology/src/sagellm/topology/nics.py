"""Network ports: interfaces from /sys/class/net and RDMA devices from /sys/class/infiniband.

Only interfaces backed by a device are reported (``lo``, bridges, veth and
docker0 have no ``device`` link): a NIC here is something a transport can
be pinned next to. An InfiniBand HCA shows up twice on purpose, as its
RDMA device (``mlx5_0``, what NCCL names) and as its IPoIB interface
(``ib0``, ARPHRD type 32).
"""

from __future__ import annotations

import re

from sagellm.core.types.topology import NicInfo
from sagellm.topology._sysfs import SysfsReader
from sagellm.topology.pci import numa_of, pci_address_of

NET_DIR = "/sys/class/net"
IB_DIR = "/sys/class/infiniband"
ARPHRD_INFINIBAND = 32
_RATE = re.compile(r"([\d.]+)\s*Gb/sec")


def read_net_interfaces(reader: SysfsReader) -> list[NicInfo]:
    nics: list[NicInfo] = []
    for name in reader.listdir(NET_DIR):
        base = f"{NET_DIR}/{name}"
        if not reader.exists(f"{base}/device"):
            continue
        speed = reader.read_int(f"{base}/speed")
        kind = "infiniband" if reader.read_int(f"{base}/type") == ARPHRD_INFINIBAND else "ethernet"
        nics.append(
            NicInfo(
                name=name,
                kind=kind,
                speed_mbps=speed if speed is not None and speed > 0 else None,
                numa_node=numa_of(reader.read_int(f"{base}/device/numa_node")),
                pci_address=pci_address_of(reader, f"{base}/device"),
            )
        )
    return nics


def read_rdma_devices(reader: SysfsReader) -> list[NicInfo]:
    """One entry per RDMA device, described by its first port (NCCL's ``net`` for port 1)."""
    nics: list[NicInfo] = []
    for name in reader.listdir(IB_DIR):
        base = f"{IB_DIR}/{name}"
        ports = sorted(reader.listdir(f"{base}/ports"), key=lambda p: int(p) if p.isdigit() else 0)
        port = ports[0] if ports else None
        rate = reader.read(f"{base}/ports/{port}/rate") if port else None
        match = _RATE.search(rate or "")
        layer = (reader.read(f"{base}/ports/{port}/link_layer") or "InfiniBand") if port else "InfiniBand"
        nics.append(
            NicInfo(
                name=name,
                kind="roce" if layer.lower() == "ethernet" else "infiniband",
                speed_mbps=round(float(match.group(1)) * 1000) if match else None,
                numa_node=numa_of(reader.read_int(f"{base}/device/numa_node")),
                pci_address=pci_address_of(reader, f"{base}/device"),
                port=int(port) if port and port.isdigit() else None,
                guid=reader.read(f"{base}/node_guid") or "",
            )
        )
    return nics


def read_nics(reader: SysfsReader) -> tuple[NicInfo, ...]:
    """RDMA devices first (what collective libraries pick from), then interfaces."""
    return tuple(read_rdma_devices(reader) + read_net_interfaces(reader))
