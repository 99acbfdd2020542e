"""What a topology detector reports about the machine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    index: int
    kind: str  # "cpu", "cuda", "npu", "mlu", "dcu", "xpu"
    name: str = ""
    memory_bytes: int = 0
    numa_node: int | None = None


@dataclass(frozen=True, slots=True)
class LinkInfo:
    src: int
    dst: int
    kind: str  # "nvlink", "pcie", "hccs", "ethernet", ...
    bandwidth_gbps: float = 0.0


@dataclass(frozen=True, slots=True)
class TopologyInfo:
    devices: tuple[DeviceInfo, ...] = ()
    links: tuple[LinkInfo, ...] = ()
    nics: tuple[str, ...] = ()
    num_numa_nodes: int = 1
    hostname: str = ""
    extra: dict[str, str] = field(default_factory=dict)
