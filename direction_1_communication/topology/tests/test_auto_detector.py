"""The auto detector merges NVML's names, sizes and NVLinks into sysfs's view (NVML faked: no GPU here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from topology_helpers import fake_root

from sagellm.core.protocols import TopologyDetector
from sagellm.core.testing.topology import TopologyDetectorConformance
from sagellm.topology import AutoTopologyDetector, SysfsTopologyDetector
from sagellm.topology.auto_detector import normalise_bus_id


@dataclass
class _Pci:
    busId: bytes  # noqa: N815 - NVML's field name


@dataclass
class _Memory:
    total: int


@dataclass
class FakeNvml:
    """The slice of pynvml the detector calls: two V100s joined by 2 NVLinks, 2 more links to an NVSwitch."""

    gpus: list[str] = field(default_factory=lambda: ["00000000:3B:00.0", "00000000:D8:00.0"])
    links: dict[int, list[str]] = field(
        default_factory=lambda: {
            0: ["00000000:D8:00.0", "00000000:D8:00.0", "00000000:C0:00.0", "00000000:C0:00.0"],
            1: ["00000000:3B:00.0", "00000000:3B:00.0"],
        }
    )

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetPciInfo(self, handle: int) -> _Pci:  # noqa: N802
        return _Pci(self.gpus[handle].encode())

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return "Tesla V100-SXM2-32GB"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> _Memory:  # noqa: N802
        return _Memory(34359738368)

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:  # noqa: N802
        if link >= 6:
            raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
        return 1 if link < len(self.links[handle]) else 0

    def nvmlDeviceGetNvLinkRemotePciInfo(self, handle: int, link: int) -> _Pci:  # noqa: N802
        return _Pci(self.links[handle][link].encode())


def test_nvml_names_sizes_and_gpu_to_gpu_nvlinks() -> None:
    info = AutoTopologyDetector(fake_root("xeon_2s_ib"), nvml=FakeNvml()).detect()
    assert [(d.name, d.memory_bytes) for d in info.devices] == [("Tesla V100-SXM2-32GB", 34359738368)] * 2
    assert [(link.src, link.dst, link.kind, link.label, link.count) for link in info.links] == [
        (0, 1, "nvlink", "NV2", 2),
        (1, 0, "nvlink", "NV2", 2),
    ]


def test_without_nvml_auto_reports_what_sysfs_reports() -> None:
    root = fake_root("epyc_nps4")
    assert AutoTopologyDetector(root).detect() == SysfsTopologyDetector(root).detect()


def test_bus_ids_are_normalised_to_sysfs_spelling() -> None:
    assert normalise_bus_id(b"00000000:3B:00.0") == "0000:3b:00.0"
    assert normalise_bus_id("0001:C1:00.1") == "0001:c1:00.1"


class TestAutoWithNvmlConformance(TopologyDetectorConformance):
    def make_detector(self) -> TopologyDetector:
        return AutoTopologyDetector(fake_root("xeon_2s_ib"), nvml=FakeNvml())
