"""``nvidia-smi topo -m`` (the GPUDirect communication matrix)."""

from __future__ import annotations

import re

from sagellm.topology.link_matrix import LinkMatrix
from sagellm.topology.parsers._table import parse_table

_NIC_LEGEND = re.compile(r"^\s*(NIC\d+)\s*:\s*(\S+)\s*$", re.MULTILINE)


def parse_nvidia_smi_topo(text: str) -> LinkMatrix:
    """Labels X, NV#, PIX, PXB, PHB, NODE, SYS (SOC on old drivers); NIC names from the "NIC Legend"."""
    matrix = parse_table(text, "nvidia-smi")
    aliases = tuple(_NIC_LEGEND.findall(text.partition("NIC Legend")[2]))
    return LinkMatrix(
        tool=matrix.tool,
        names=matrix.names,
        labels=matrix.labels,
        cpu_affinity=matrix.cpu_affinity,
        numa_affinity=matrix.numa_affinity,
        aliases=aliases,
    )
