"""NCCL topology XML: export then import gives back every field the format holds; bad files raise."""

from __future__ import annotations

import dataclasses

import pytest
from topology_helpers import FIXTURES, fake_root

from sagellm.core.types.topology import LinkInfo, TopologyInfo
from sagellm.topology import SysfsTopologyDetector, TopologyParseError, from_nccl_xml, to_nccl_xml


def _nccl_fields(info: TopologyInfo) -> TopologyInfo:
    """``info`` reduced to what NCCL's format can hold (see the nccl_xml module docstring)."""
    devices = tuple(dataclasses.replace(d, name="", memory_bytes=0) for d in info.devices if d.kind == "cuda")
    nodes = tuple(dataclasses.replace(n, memory_bytes=0, distances=()) for n in info.numa_nodes)
    cpu = info.cpu and dataclasses.replace(info.cpu, model="", sockets=0, cores=0, threads=0, flags=(), smt_siblings=())
    return dataclasses.replace(info, devices=devices, numa_nodes=nodes, cpu=cpu, caches=(), hostname="")


@pytest.mark.parametrize("xml", sorted((FIXTURES / "nccl").glob("*.xml")), ids=lambda p: p.stem)
def test_recorded_file_round_trips(xml: object) -> None:
    info = from_nccl_xml(xml.read_text())  # type: ignore[attr-defined]
    assert from_nccl_xml(to_nccl_xml(info)) == info


def test_a_detected_machine_round_trips_with_gpus_nvlinks_and_nics() -> None:
    info = SysfsTopologyDetector(fake_root("xeon_2s_ib")).detect()
    nics = tuple(n for n in info.nics if n.name == "mlx5_0")  # one RDMA device per PCI function, as NCCL lists
    info = dataclasses.replace(
        info,
        nics=nics,
        links=(LinkInfo(0, 1, "nvlink", label="NV2", count=2), LinkInfo(1, 0, "nvlink", label="NV2", count=2)),
        devices=tuple(dataclasses.replace(d, local_cpus=info.numa_nodes[d.numa_node or 0].cpus) for d in info.devices),
    )
    expected = _nccl_fields(info)
    assert from_nccl_xml(to_nccl_xml(info)) == dataclasses.replace(expected, extra={})
    assert 'nvlink target="0000:d8:00.0" count="2"' in to_nccl_xml(info)


def test_unknown_numa_goes_under_cpu_minus_one_and_comes_back_unknown() -> None:
    info = SysfsTopologyDetector().detect()  # this VM: PCI functions without a NUMA node
    back = from_nccl_xml(to_nccl_xml(info))
    assert [p.address for p in back.pci_devices] == [p.address for p in info.pci_devices]
    assert [p.numa_node for p in back.pci_devices] == [p.numa_node for p in info.pci_devices]
    assert back.numa_nodes == _nccl_fields(info).numa_nodes


@pytest.mark.parametrize(
    "text",
    [
        "<system version='1'><cpu numaid='0'",
        "<graphs/>",
        "<system><cpu numaid='x'/></system>",
        "<system><cpu><pci><gpu/></pci></cpu></system>",
    ],
)
def test_malformed_files_raise_a_parse_error(text: str) -> None:
    with pytest.raises(TopologyParseError):
        from_nccl_xml(text)
