"""PCI functions from /sys/bus/pci/devices, and the accelerators among them."""

from __future__ import annotations

import re
from collections import defaultdict

from sagellm.core.types.topology import DeviceInfo, PciDevice
from sagellm.topology._sysfs import SysfsReader
from sagellm.topology.cpulist import parse_cpulist
from sagellm.topology.pci_classes import accelerator_kind, class_name

PCI_DIR = "/sys/bus/pci/devices"
LINKED_CLASSES = frozenset({0x02, 0x03, 0x12})  # network, display, accelerators: the ones NCCL places
BDF = re.compile(r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", re.IGNORECASE)


def numa_of(value: int | None) -> int | None:
    """sysfs writes -1 for "no NUMA affinity"; we say None."""
    return value if value is not None and value >= 0 else None


def _ids_from_uevent(text: str) -> tuple[int, int, int] | None:
    """(class, vendor, device) from ``PCI_CLASS=30200`` / ``PCI_ID=10DE:2330`` lines; None if absent."""
    fields = dict(line.partition("=")[::2] for line in text.splitlines())
    try:
        vendor, _, device = fields["PCI_ID"].partition(":")
        return int(fields["PCI_CLASS"], 16), int(vendor, 16), int(device, 16)
    except (KeyError, ValueError):
        return None


def _ids(reader: SysfsReader, base: str) -> tuple[int, int, int]:
    """One read of ``uevent`` where the kernel provides it (it does), three small files otherwise."""
    ids = _ids_from_uevent(reader.read(f"{base}/uevent") or "")
    if ids is not None:
        return ids
    return (
        reader.read_int(f"{base}/class", 16) or 0,
        reader.read_int(f"{base}/vendor", 16) or 0,
        reader.read_int(f"{base}/device", 16) or 0,
    )


def read_pci_devices(reader: SysfsReader) -> tuple[PciDevice, ...]:
    """Every PCI function, by address: two reads each, two more for NICs and accelerators."""
    devices: list[PciDevice] = []
    for address in reader.listdir(PCI_DIR):
        if not BDF.fullmatch(address):
            continue
        base = f"{PCI_DIR}/{address}"
        code, vendor, device = _ids(reader, base)
        linked = code >> 16 in LINKED_CLASSES
        devices.append(
            PciDevice(
                address=address,
                class_code=code,
                class_name=class_name(code),
                vendor_id=vendor,
                device_id=device,
                numa_node=numa_of(reader.read_int(f"{base}/numa_node")),
                link_speed=(reader.read(f"{base}/current_link_speed") or "") if linked else "",
                link_width=reader.read_int(f"{base}/current_link_width") if linked else None,
            )
        )
    return tuple(devices)


def accelerators(reader: SysfsReader, pci: tuple[PciDevice, ...]) -> tuple[DeviceInfo, ...]:
    """Accelerators by kind, numbered in PCI address order (the order CUDA's PCI_BUS_ID uses)."""
    counters: dict[str, int] = defaultdict(int)
    found: list[DeviceInfo] = []
    for dev in sorted(pci, key=lambda d: d.address):
        kind = accelerator_kind(dev.vendor_id, dev.class_code)
        if kind is None:
            continue
        found.append(
            DeviceInfo(
                index=counters[kind],
                kind=kind,
                name=f"{dev.vendor_id:04x}:{dev.device_id:04x}",
                numa_node=dev.numa_node,
                pci_address=dev.address,
                local_cpus=parse_cpulist(reader.read(f"{PCI_DIR}/{dev.address}/local_cpulist") or ""),
            )
        )
        counters[kind] += 1
    return tuple(found)


def pci_address_of(reader: SysfsReader, device_link: str) -> str:
    """The PCI function a ``device`` symlink leads to (walking up past virtio/usb layers); "" if none."""
    if not reader.exists(device_link):
        return ""
    for part in reversed(reader.resolve(device_link).split("/")):
        if BDF.fullmatch(part):
            return part
    return ""
