"""``xpu-smi topology -m`` (Intel Data Center GPUs): cells split by ``|``, one row per tile.

Labels: S (self), MDF (the two tiles of one card), XL<n> (Xe Link with n
lanes), XL* (Xe Link through MDF), SYS and NODE (PCIe).
"""

from __future__ import annotations

from sagellm.topology.link_matrix import LinkMatrix
from sagellm.topology.parsers._table import parse_table


def _split_bars(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("|") if cell.strip()]


def parse_xpu_smi_topology(text: str) -> LinkMatrix:
    """Rows ``GPU <card>/<tile>``; a CPU Affinity column."""
    return parse_table(text, "xpu-smi", split=_split_bars)
