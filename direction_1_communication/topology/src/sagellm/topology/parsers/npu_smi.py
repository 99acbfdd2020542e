"""``npu-smi info -t topo`` (Huawei Ascend): labels X, HCCS, HCCS_SW, SIO, PIX, PXB, PHB, SYS, NA."""

from __future__ import annotations

from sagellm.topology.link_matrix import LinkMatrix
from sagellm.topology.parsers._table import parse_table


def parse_npu_smi_topo(text: str) -> LinkMatrix:
    """Rows NPU<i> (or Phy-ID<i> on A3 boards); a CPU Affinity column, no NUMA column."""
    return parse_table(text, "npu-smi")
