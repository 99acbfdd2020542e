"""sagellm-topology: what the machine looks like (NUMA, CPUs, caches, NICs, PCI, accelerators, links).

* :class:`SysfsTopologyDetector` reads /sys and /proc (entry point ``sysfs``);
  :class:`AutoTopologyDetector` adds NVML's NVLink view when pynvml is
  importable (entry point ``auto``).
* Parsers for the vendors' tools turn their text into a :class:`LinkMatrix`
  (``.to_topology()`` gives a TopologyInfo).
* :func:`to_nccl_xml` / :func:`from_nccl_xml` speak NCCL's topology file format.
"""

from sagellm.topology.auto_detector import AutoTopologyDetector
from sagellm.topology.cpulist import format_cpulist, format_cpumask, parse_cpulist, parse_cpumask
from sagellm.topology.errors import TopologyParseError
from sagellm.topology.link_matrix import LinkMatrix
from sagellm.topology.nccl_xml import from_nccl_xml, to_nccl_xml
from sagellm.topology.parsers.npu_smi import parse_npu_smi_topo
from sagellm.topology.parsers.nvidia_smi import parse_nvidia_smi_topo
from sagellm.topology.parsers.rocm_smi import parse_rocm_smi_topo
from sagellm.topology.parsers.xpu_smi import parse_xpu_smi_topology
from sagellm.topology.sysfs_detector import SysfsTopologyDetector
from sagellm.topology.version import __version__

__all__ = [
    "AutoTopologyDetector",
    "LinkMatrix",
    "SysfsTopologyDetector",
    "TopologyParseError",
    "__version__",
    "format_cpulist",
    "format_cpumask",
    "from_nccl_xml",
    "parse_cpulist",
    "parse_cpumask",
    "parse_npu_smi_topo",
    "parse_nvidia_smi_topo",
    "parse_rocm_smi_topo",
    "parse_xpu_smi_topology",
    "to_nccl_xml",
]
