"""Vendor link labels -> (normalised kind, count): one table per tool.

The label stays on :class:`LinkInfo` as printed; the kind lets callers
compare vendors ("is this pair on a GPU fabric or on PCIe?").
"""

from __future__ import annotations

import re

from sagellm.topology.errors import TopologyParseError

# tool -> {label: kind}; "self" marks the diagonal.
FIXED_LABELS: dict[str, dict[str, str]] = {
    "nvidia-smi": {
        "X": "self",
        "SYS": "pcie",  # PCIe + the SMP interconnect between NUMA nodes (QPI/UPI)
        "SOC": "pcie",  # the pre-2017 name of SYS
        "NODE": "pcie",  # PCIe + host-bridge interconnect within one NUMA node
        "PHB": "pcie",  # PCIe + a host bridge
        "PXB": "pcie",  # several PCIe bridges, no host bridge
        "PIX": "pcie",  # at most one PCIe bridge
        "PXN": "pcie",
        "C2C": "c2c",
    },
    "npu-smi": {
        "X": "self",
        "HCCS": "hccs",
        "HCCS_SW": "hccs",
        "SIO": "sio",  # between the two dies of one package
        "PIX": "pcie",
        "PXB": "pcie",
        "PHB": "pcie",
        "SYS": "pcie",
        "NA": "unknown",
    },
    "rocm-smi": {"0": "self", "XGMI": "xgmi", "PCIE": "pcie"},
    "xpu-smi": {"S": "self", "MDF": "mdf", "XL*": "xelink", "SYS": "pcie", "NODE": "pcie"},
}
# tool -> (pattern with the count in group 1, kind)
COUNTED_LABELS: dict[str, tuple[re.Pattern[str], str]] = {
    "nvidia-smi": (re.compile(r"NV(\d+)"), "nvlink"),
    "xpu-smi": (re.compile(r"XL(\d+)"), "xelink"),
}


def classify(tool: str, label: str) -> tuple[str, int]:
    """``("nvidia-smi", "NV12")`` -> ``("nvlink", 12)``; unknown labels raise, naming the tool."""
    kind = FIXED_LABELS[tool].get(label)
    if kind is not None:
        return kind, 0
    counted = COUNTED_LABELS.get(tool)
    if counted is not None:
        match = counted[0].fullmatch(label)
        if match:
            return counted[1], int(match.group(1))
    raise TopologyParseError(f"{tool}: unknown link label {label!r}")
