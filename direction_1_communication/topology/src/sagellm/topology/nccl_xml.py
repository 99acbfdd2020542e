"""NCCL's topology XML (``NCCL_TOPO_FILE`` in, ``NCCL_TOPO_DUMP_FILE`` out) <-> TopologyInfo.

::

    <system version="1">
      <cpu numaid="0" affinity="00000000,00ffffff" arch="x86_64" vendor="AuthenticAMD" familyid="23" modelid="49">
        <pci busid="0000:07:00.0" class="0x030200" vendor="0x10de" device="0x20b0" link_speed="16.0 GT/s PCIe" link_width="16">
          <gpu dev="0" sm="80" rank="0" gdr="1">
            <nvlink target="0000:0f:00.0" count="12" tclass="0x030200"/>
          </gpu>
        </pci>
        <pci busid="0000:0c:00.0" class="0x020700" ...>
          <nic><net name="mlx5_0" dev="0" speed="200000" port="1" guid="0x..." maxconn="131072" gdr="1"/></nic>
        </pci>
      </cpu>
    </system>

What the format holds round-trips: NUMA nodes and their CPUs, CPU vendor/
family/model, every PCI function (flattened: bridges keep their place in
``pci_devices`` but the tree is not rebuilt), GPUs (always kind "cuda"),
GPU-GPU NVLinks, NICs. NVLinks to a non-GPU target (an NVSwitch) and the
attributes NCCL alone uses (sm, rank, gdr, maxconn, latency) ride in
``TopologyInfo.extra`` under ``nccl.`` keys. Names, memory sizes, caches and
the CPU model string are not in the format.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sagellm.core.types.topology import CpuInfo, DeviceInfo, LinkInfo, NicInfo, NumaNode, PciDevice, TopologyInfo
from sagellm.topology.cpulist import format_cpumask, parse_cpumask
from sagellm.topology.errors import TopologyParseError
from sagellm.topology.pci_classes import class_name

NVLINK_GPU_TCLASS = "0x030200"
_GPU_ATTRS = ("sm", "rank", "gdr")
_NET_ATTRS = ("dev", "latency", "maxconn", "gdr")


def _int(value: str | None, base: int = 10) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value, base)
    except ValueError:
        raise TopologyParseError(f"NCCL XML: {value!r} is not a number") from None


class _Importer:
    """One pass over the tree, collecting into lists (positions of GPUs are the link indices)."""

    def __init__(self) -> None:
        self.nodes: list[NumaNode] = []
        self.pci: list[PciDevice] = []
        self.gpus: list[tuple[DeviceInfo, ET.Element]] = []
        self.nics: list[NicInfo] = []
        self.extra: dict[str, str] = {}
        self.cpu: CpuInfo | None = None

    def cpu_element(self, cpu: ET.Element) -> None:
        numa = _int(cpu.get("numaid"))
        cpus = parse_cpumask(cpu.get("affinity", ""))
        if numa is not None and numa >= 0:
            self.nodes.append(NumaNode(id=numa, cpus=cpus))
        else:
            numa = None
        if self.cpu is None:
            self.cpu = CpuInfo(
                vendor=cpu.get("vendor", ""), family=_int(cpu.get("familyid")), model_number=_int(cpu.get("modelid"))
            )
            if cpu.get("arch"):
                self.extra["nccl.arch"] = cpu.get("arch", "")
        self.children(cpu, numa, cpus, "")

    def children(self, parent: ET.Element, numa: int | None, cpus: tuple[int, ...], busid: str) -> None:
        for child in parent:
            if child.tag == "pci":
                self.pci_element(child, numa, cpus)
            elif child.tag == "gpu":
                self.gpu_element(child, numa, cpus, busid)
            elif child.tag == "nic":
                for net in child.iter("net"):
                    self.net_element(net, numa, busid)

    def pci_element(self, pci: ET.Element, numa: int | None, cpus: tuple[int, ...]) -> None:
        busid = pci.get("busid", "").lower()
        code = _int(pci.get("class"), 16) or 0
        self.pci.append(
            PciDevice(
                address=busid,
                class_code=code,
                class_name=class_name(code),
                vendor_id=_int(pci.get("vendor"), 16) or 0,
                device_id=_int(pci.get("device"), 16) or 0,
                numa_node=numa,
                link_speed=pci.get("link_speed", ""),
                link_width=_int(pci.get("link_width")),
            )
        )
        self.children(pci, numa, cpus, busid)

    def gpu_element(self, gpu: ET.Element, numa: int | None, cpus: tuple[int, ...], busid: str) -> None:
        dev = _int(gpu.get("dev"))
        if dev is None:
            raise TopologyParseError("NCCL XML: <gpu> without dev")
        for attr in _GPU_ATTRS:
            if gpu.get(attr) is not None:
                self.extra[f"nccl.gpu{dev}.{attr}"] = gpu.get(attr, "")
        info = DeviceInfo(index=dev, kind="cuda", numa_node=numa, pci_address=busid, local_cpus=cpus)
        self.gpus.append((info, gpu))

    def net_element(self, net: ET.Element, numa: int | None, busid: str) -> None:
        name = net.get("name", "")
        parent = next((p for p in self.pci if p.address == busid), None)
        infiniband = parent is not None and parent.class_code >> 8 == 0x0207
        kind = (
            "infiniband" if infiniband else "rdma" if name.startswith(("mlx", "ib", "bnxt_re", "irdma")) else "ethernet"
        )
        for attr in _NET_ATTRS:
            if net.get(attr) is not None:
                self.extra[f"nccl.net.{name}.{attr}"] = net.get(attr, "")
        self.nics.append(
            NicInfo(
                name=name,
                kind=kind,
                speed_mbps=_int(net.get("speed")),
                numa_node=numa,
                pci_address=busid,
                port=_int(net.get("port")),
                guid=net.get("guid", ""),
            )
        )

    def links(self) -> tuple[LinkInfo, ...]:
        position = {info.pci_address: i for i, (info, _) in enumerate(self.gpus)}
        links: list[LinkInfo] = []
        for i, (info, element) in enumerate(self.gpus):
            for nvlink in element.iter("nvlink"):
                target = nvlink.get("target", "").lower()
                count = _int(nvlink.get("count")) or 0
                if target in position and position[target] != i:
                    links.append(LinkInfo(src=i, dst=position[target], kind="nvlink", label=f"NV{count}", count=count))
                else:
                    key = f"nccl.gpu{info.index}.nvlink.{target}"
                    self.extra[key] = f"{count}:{nvlink.get('tclass', '')}"
        return tuple(links)


def from_nccl_xml(text: str) -> TopologyInfo:
    """Parse an NCCL topology file; raises TopologyParseError on anything but ``<system>``."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise TopologyParseError(f"NCCL XML: {exc}") from None
    if root.tag != "system":
        raise TopologyParseError(f"NCCL XML: root element is <{root.tag}>, expected <system>")
    importer = _Importer()
    for cpu in root.findall("cpu"):
        importer.cpu_element(cpu)
    links = importer.links()
    return TopologyInfo(
        devices=tuple(info for info, _ in importer.gpus),
        links=links,
        nics=tuple(importer.nics),
        extra=importer.extra,
        numa_nodes=tuple(sorted(importer.nodes, key=lambda n: n.id)),
        cpu=importer.cpu,
        pci_devices=tuple(importer.pci),
    )


def _cpu_element(system: ET.Element, info: TopologyInfo, numa: int | None, cpus: tuple[int, ...]) -> ET.Element:
    cpu = ET.SubElement(system, "cpu", numaid=str(numa if numa is not None else -1), affinity=format_cpumask(cpus))
    if info.extra.get("nccl.arch"):
        cpu.set("arch", info.extra["nccl.arch"])
    if info.cpu is not None:
        if info.cpu.vendor:
            cpu.set("vendor", info.cpu.vendor)
        if info.cpu.family is not None:
            cpu.set("familyid", str(info.cpu.family))
        if info.cpu.model_number is not None:
            cpu.set("modelid", str(info.cpu.model_number))
    return cpu


def _gpu_element(parent: ET.Element, info: TopologyInfo, position: int) -> None:
    device = info.devices[position]
    gpu = ET.SubElement(parent, "gpu", dev=str(device.index))
    for attr in _GPU_ATTRS:
        value = info.extra.get(f"nccl.gpu{device.index}.{attr}")
        if value is not None:
            gpu.set(attr, value)
    for link in info.links:
        if link.src == position and link.kind == "nvlink":
            target = info.devices[link.dst].pci_address
            ET.SubElement(gpu, "nvlink", target=target, count=str(link.count), tclass=NVLINK_GPU_TCLASS)
    prefix = f"nccl.gpu{device.index}.nvlink."
    for key, value in info.extra.items():
        if key.startswith(prefix):
            count, _, tclass = value.partition(":")
            ET.SubElement(gpu, "nvlink", target=key[len(prefix) :], count=count, tclass=tclass)


def _net_element(parent: ET.Element, nic: NicInfo, extra: dict[str, str]) -> None:
    net = ET.SubElement(ET.SubElement(parent, "nic"), "net", name=nic.name)
    if nic.speed_mbps is not None:
        net.set("speed", str(nic.speed_mbps))
    if nic.port is not None:
        net.set("port", str(nic.port))
    if nic.guid:
        net.set("guid", nic.guid)
    for attr in _NET_ATTRS:
        value = extra.get(f"nccl.net.{nic.name}.{attr}")
        if value is not None:
            net.set(attr, value)


def _pci_element(cpu: ET.Element, info: TopologyInfo, dev: PciDevice) -> None:
    pci = ET.SubElement(cpu, "pci", busid=dev.address)
    pci.set("class", f"0x{dev.class_code:06x}")
    if dev.vendor_id:
        pci.set("vendor", f"0x{dev.vendor_id:04x}")
    if dev.device_id:
        pci.set("device", f"0x{dev.device_id:04x}")
    pci.set("link_speed", dev.link_speed)
    pci.set("link_width", "" if dev.link_width is None else str(dev.link_width))
    for position, device in enumerate(info.devices):
        if device.pci_address == dev.address and device.kind == "cuda":
            _gpu_element(pci, info, position)
    for nic in info.nics:
        if nic.pci_address == dev.address:
            _net_element(pci, nic, info.extra)


def to_nccl_xml(info: TopologyInfo) -> str:
    """An NCCL topology file for ``info``: one ``<cpu>`` per NUMA node, its PCI functions flat beneath it.

    PCI functions, GPUs and NICs whose NUMA node is unknown go under a
    ``<cpu numaid="-1">``, which is how NCCL itself writes them.
    """
    system = ET.Element("system", version="1")
    nodes: list[tuple[int | None, tuple[int, ...]]] = [(n.id, n.cpus) for n in info.numa_nodes]
    orphans = [p.numa_node for p in info.pci_devices] + [n.numa_node for n in info.nics if not n.pci_address]
    if any(node is None for node in orphans) or not nodes:
        nodes.append((None, ()))
    for numa, cpus in nodes:
        cpu = _cpu_element(system, info, numa, cpus)
        for dev in info.pci_devices:
            if dev.numa_node == numa:
                _pci_element(cpu, info, dev)
        for nic in info.nics:
            if not nic.pci_address and nic.numa_node == numa:
                _net_element(cpu, nic, info.extra)
    ET.indent(system, space="  ")
    return ET.tostring(system, encoding="unicode") + "\n"
