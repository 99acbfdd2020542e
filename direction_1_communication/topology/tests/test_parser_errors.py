"""Text that is not the expected tool's matrix raises TopologyParseError naming the tool; odd layouts parse."""

from __future__ import annotations

import pytest

from sagellm.topology import (
    TopologyParseError,
    parse_npu_smi_topo,
    parse_nvidia_smi_topo,
    parse_rocm_smi_topo,
    parse_xpu_smi_topology,
)

P2P = " \tGPU0\tGPU1\t\n GPU0\tX\tGNS\t\n GPU1\tGNS\tX\t\n"  # `nvidia-smi topo -p2p rw`, not `topo -m`


@pytest.mark.parametrize(
    ("parser", "text", "match"),
    [
        (parse_nvidia_smi_topo, "", "no topology matrix"),
        (parse_nvidia_smi_topo, P2P, "unknown link label 'GNS'"),
        (parse_nvidia_smi_topo, "\tGPU0\tGPU1\nGPU0\t X \tNV4\n", "1 rows"),
        (parse_nvidia_smi_topo, "\tGPU0\tGPU1\nGPU0\t X \tNV4\nGPU2\tNV4\t X \n", "does not fit"),
        (parse_nvidia_smi_topo, "\tGPU0\tGPU1\nGPU0\t X \nGPU1\tNV4\t X \n", "does not fit"),
        (parse_npu_smi_topo, "\tNPU0\tNPU1\nNPU0\tX\tNVLINK\nNPU1\tHCCS\tX\n", "npu-smi: unknown link label"),
        (
            parse_xpu_smi_topology,
            "  GPU 0/0|GPU 0/1\nGPU 0/0 |S |XL\nGPU 0/1 |XL |S\n",
            "xpu-smi: unknown link label 'XL'",
        ),
        (parse_rocm_smi_topo, "no sections here", "no topology section"),
        (parse_rocm_smi_topo, "=== Link Type between two GPUs ===\nGPU0 GPU1\nGPU0 0 NVLINK\nGPU1 PCIE 0\n", "NVLINK"),
        (parse_rocm_smi_topo, "=== Hops between two GPUs ===\nGPU0 GPU1\nGPU0 0 x\nGPU1 1 0\n", "non-integer"),
        (
            parse_rocm_smi_topo,
            "=== Hops between two GPUs ===\nGPU0 GPU1\nGPU0 0 1\nGPU1 1 0\n=== Link Type between two GPUs ===\nGPU0\nGPU0 0\n",
            "earlier sections",
        ),
    ],
)
def test_bad_text_raises_a_parse_error(parser: object, text: str, match: str) -> None:
    with pytest.raises(TopologyParseError, match=match):
        parser(text)  # type: ignore[operator]


def test_nvlink_counts_old_soc_label_prompt_and_nic_legend() -> None:
    text = (
        "$ nvidia-smi topo -m\n"
        "\tGPU0\tGPU1\tGPU2\tNIC0\tCPU Affinity\tNUMA Affinity\n"
        "GPU0\t X \tNV12\tSOC\tPXB\t0-7\t0\n"
        "GPU1\tNV12\t X \tSOC\tPXB\t0-7\t0\n"
        "GPU2\tSOC\tSOC\t X \tSYS\t8-15\t1\n"
        "NIC0\tPXB\tPXB\tSYS\t X \n\nLegend:\n\n  X    = Self\n\nNIC Legend:\n\n  NIC0: mlx5_0\n"
    )
    matrix = parse_nvidia_smi_topo(text)
    assert matrix.aliases == (("NIC0", "mlx5_0"),)
    assert matrix.label("GPU1", "NIC0") == "PXB"
    info = matrix.to_topology()
    assert [n.name for n in info.nics] == ["mlx5_0"]
    nvlink = next(link for link in info.links if (link.src, link.dst) == (0, 1))
    assert (nvlink.kind, nvlink.label, nvlink.count) == ("nvlink", "NV12", 12)
    assert next(link for link in info.links if (link.src, link.dst) == (0, 2)).kind == "pcie"
    assert [n.id for n in info.numa_nodes] == [0, 1]


def test_rocm_links_carry_weight_and_hops() -> None:
    text = (
        "=== Weight between two GPUs ===\n  GPU0 GPU1\nGPU0 0 15\nGPU1 15 0\n"
        "=== Hops between two GPUs ===\n  GPU0 GPU1\nGPU0 0 1\nGPU1 1 0\n"
        "=== Link Type between two GPUs ===\n  GPU0 GPU1\nGPU0 0 XGMI\nGPU1 XGMI 0\n"
        "=== Numa Nodes ===\nGPU 0          : (Topology) Numa Node: -1\nGPU 1          : (Topology) Numa Node: 1\n"
    )
    info = parse_rocm_smi_topo(text).to_topology()
    assert [(link.kind, link.weight, link.hops) for link in info.links] == [("xgmi", 15, 1)] * 2
    assert [d.numa_node for d in info.devices] == [None, 1]
