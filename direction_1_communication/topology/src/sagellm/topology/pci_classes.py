"""PCI class codes -> names (the ``lspci`` wording) and PCI ids -> accelerator kinds.

A table, not an if-chain: adding a vendor is one line.
"""

from __future__ import annotations

# (class, subclass) -> name; the PCI-SIG class code list as lspci prints it.
SUBCLASS_NAMES: dict[int, str] = {
    0x0000: "Non-VGA unclassified device",
    0x0100: "SCSI storage controller",
    0x0101: "IDE interface",
    0x0104: "RAID bus controller",
    0x0106: "SATA controller",
    0x0107: "Serial Attached SCSI controller",
    0x0108: "Non-Volatile memory controller",
    0x0200: "Ethernet controller",
    0x0207: "Infiniband controller",
    0x0208: "Fabric controller",
    0x0280: "Network controller",
    0x0300: "VGA compatible controller",
    0x0302: "3D controller",
    0x0380: "Display controller",
    0x0403: "Audio device",
    0x0500: "RAM memory",
    0x0580: "Memory controller",
    0x0600: "Host bridge",
    0x0601: "ISA bridge",
    0x0604: "PCI bridge",
    0x0680: "Bridge",
    0x0700: "Serial controller",
    0x0780: "Communication controller",
    0x0806: "IOMMU",
    0x0880: "System peripheral",
    0x0B40: "Co-processor",
    0x0C03: "USB controller",
    0x0C05: "SMBus",
    0x1080: "Encryption controller",
    0x1200: "Processing accelerators",
    0x1300: "Non-Essential Instrumentation",
    0xFF00: "Unassigned class",
}
# class -> name, when the subclass is not in the table above.
CLASS_NAMES: dict[int, str] = {
    0x00: "Unclassified device",
    0x01: "Mass storage controller",
    0x02: "Network controller",
    0x03: "Display controller",
    0x04: "Multimedia controller",
    0x05: "Memory controller",
    0x06: "Bridge",
    0x07: "Communication controller",
    0x08: "Generic system peripheral",
    0x09: "Input device controller",
    0x0B: "Processor",
    0x0C: "Serial bus controller",
    0x0D: "Wireless controller",
    0x10: "Encryption controller",
    0x11: "Signal processing controller",
    0x12: "Processing accelerators",
    0x13: "Non-Essential Instrumentation",
}

# vendor id -> (accelerator kind, the (class, subclass) values that count as one).
ACCELERATOR_KINDS: dict[int, tuple[str, frozenset[int]]] = {
    0x10DE: ("cuda", frozenset({0x0300, 0x0302, 0x0380})),  # NVIDIA
    0x1002: ("rocm", frozenset({0x0300, 0x0302, 0x0380, 0x1200})),  # AMD
    0x19E5: ("npu", frozenset({0x1200})),  # Huawei Ascend
    0x8086: ("xpu", frozenset({0x0302, 0x0380})),  # Intel Data Center GPU (Max, Flex)
    0xCABC: ("mlu", frozenset({0x1200})),  # Cambricon
    0x1D94: ("dcu", frozenset({0x0380, 0x1200})),  # Hygon DCU
}


def class_name(class_code: int) -> str:
    """``0x030200`` -> ``"3D controller"``."""
    return SUBCLASS_NAMES.get(class_code >> 8) or CLASS_NAMES.get(class_code >> 16, f"Class {class_code >> 8:04x}")


def accelerator_kind(vendor_id: int, class_code: int) -> str | None:
    """The device kind (``"cuda"``, ``"npu"``, ...) of an accelerator's PCI ids; None for anything else."""
    entry = ACCELERATOR_KINDS.get(vendor_id)
    return entry[0] if entry and class_code >> 8 in entry[1] else None
