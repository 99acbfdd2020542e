"""What a topology detector reports about the machine.

Every type here is a frozen, slotted dataclass of tuples, so a
:class:`TopologyInfo` can be compared field by field (the fixture tests do
exactly that), cached, and used as a dictionary key. The one exception is
``TopologyInfo.extra``, a free-form ``dict`` kept for compatibility: it takes
part in ``==`` but not in ``hash``.

Absent knowledge is ``None`` (an unknown NUMA node, a link whose speed no
tool reported), never ``-1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One accelerator (or the CPU as a device), numbered per ``kind``."""

    index: int
    kind: str  # "cpu", "cuda", "npu", "rocm", "mlu", "dcu", "xpu"
    name: str = ""
    memory_bytes: int = 0
    numa_node: int | None = None
    pci_address: str = ""  # "0000:3b:00.0"; "" when the source does not say
    local_cpus: tuple[int, ...] = ()  # the CPUs nearest to it ("CPU Affinity"); () when unknown


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A direct path between two devices of :attr:`TopologyInfo.devices` (by position).

    ``kind`` is normalised ("nvlink", "pcie", "hccs", "xgmi", "xelink", ...)
    so callers can compare vendors; ``label`` keeps the vendor tool's own
    word (``NV12``, ``PXB``, ``HCCS``, ``XL16``) because that word carries
    distinctions the kind flattens (PIX vs SYS are both PCIe).
    """

    src: int
    dst: int
    kind: str  # "nvlink", "pcie", "hccs", "ethernet", ...
    bandwidth_gbps: float = 0.0
    label: str = ""
    count: int = 0  # bonded links (NV12 -> 12) or Xe Link lanes (XL16 -> 16); 0 = not stated
    hops: int | None = None  # rocm-smi "Hops between two GPUs"
    weight: int | None = None  # rocm-smi "Weight between two GPUs"


@dataclass(frozen=True, slots=True)
class NumaNode:
    """A NUMA node: its CPUs, its memory and its distance row (``numactl -H``)."""

    id: int
    cpus: tuple[int, ...] = ()
    memory_bytes: int = 0
    distances: tuple[int, ...] = ()  # to node 0, 1, ... in id order; () when unknown


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """One cache instance: ``shared_cpus`` are the CPUs that share this very instance."""

    level: int
    type: str  # "Data", "Instruction", "Unified" (the kernel's words)
    size_bytes: int
    shared_cpus: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """The host CPUs as ``lscpu`` summarises them."""

    model: str = ""  # "AMD EPYC 9654 96-Core Processor"
    vendor: str = ""  # "AuthenticAMD", "GenuineIntel"
    family: int | None = None
    model_number: int | None = None
    sockets: int = 0
    cores: int = 0  # physical cores, all sockets
    threads: int = 0  # logical CPUs online
    flags: tuple[str, ...] = ()  # sorted
    smt_siblings: tuple[tuple[int, ...], ...] = ()  # one group of hardware threads per core


@dataclass(frozen=True, slots=True)
class NicInfo:
    """A network port: an Ethernet interface or an RDMA device (``mlx5_0``)."""

    name: str
    kind: str = "ethernet"  # "ethernet", "infiniband", "roce"; "rdma" when the link layer is not stated
    speed_mbps: int | None = None
    numa_node: int | None = None
    pci_address: str = ""
    port: int | None = None
    guid: str = ""


@dataclass(frozen=True, slots=True)
class PciDevice:
    """A PCI function as ``/sys/bus/pci/devices`` lists it."""

    address: str  # "0000:3b:00.0"
    class_code: int  # 24-bit, 0x030200 = 3D controller
    class_name: str = ""
    vendor_id: int = 0
    device_id: int = 0
    numa_node: int | None = None
    link_speed: str = ""  # as sysfs/NCCL write it: "16.0 GT/s PCIe"; "" when not read
    link_width: int | None = None  # lanes


@dataclass(frozen=True, slots=True)
class TopologyInfo:
    """Everything a detector found; links and NUMA references point inside this value."""

    devices: tuple[DeviceInfo, ...] = ()
    links: tuple[LinkInfo, ...] = ()
    nics: tuple[NicInfo, ...] = ()
    hostname: str = ""
    extra: dict[str, str] = field(default_factory=dict, hash=False)
    numa_nodes: tuple[NumaNode, ...] = ()
    caches: tuple[CacheInfo, ...] = ()
    cpu: CpuInfo | None = None
    pci_devices: tuple[PciDevice, ...] = ()

    @property
    def num_numa_nodes(self) -> int:
        """How many NUMA nodes; 1 when the source reported none (a non-NUMA machine)."""
        return len(self.numa_nodes) or 1
