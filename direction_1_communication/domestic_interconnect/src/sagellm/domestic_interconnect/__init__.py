"""sagellm-domestic-interconnect: CommBackends for Chinese accelerators' collective libraries.

Implements :class:`sagellm.core.protocols.InterconnectBackend` (registry
group ``sagellm.interconnect_backend``, config section
``domestic_interconnect``) for Huawei Ascend HCCL (``hccl``), Cambricon CNCL
(``cncl``), Hygon DCU RCCL (``rccl``) and Kunlunxin XCCL/BKCL (``xccl``,
alias ``bkcl``), each found by an import probe, plus ``auto``. The vendor
table (:mod:`sagellm.domestic_interconnect.vendors`) carries the backend
names and device strings each vendor's torch expects, with their sources.
"""

from sagellm.domestic_interconnect.backend import TorchInterconnectBackend, device_string
from sagellm.domestic_interconnect.busbw import BUS_FACTORS, alg_bandwidth_gbs, bus_bandwidth_gbs
from sagellm.domestic_interconnect.errors import InterconnectError, InterconnectTimeoutError
from sagellm.domestic_interconnect.probe import ProbeResult, probe, require
from sagellm.domestic_interconnect.tool_output import BandwidthRecord, parse_tool_output
from sagellm.domestic_interconnect.vendor_backends import (
    AUTO_ORDER,
    BACKEND_CLASSES,
    CnclBackend,
    HcclBackend,
    RcclBackend,
    XcclBackend,
    auto_backend,
    probe_all,
)
from sagellm.domestic_interconnect.vendors import ALIASES, VENDORS, Source, VendorSpec, vendor_spec
from sagellm.domestic_interconnect.version import __version__

__all__ = [
    "ALIASES",
    "AUTO_ORDER",
    "BACKEND_CLASSES",
    "BUS_FACTORS",
    "VENDORS",
    "BandwidthRecord",
    "CnclBackend",
    "HcclBackend",
    "InterconnectError",
    "InterconnectTimeoutError",
    "ProbeResult",
    "RcclBackend",
    "Source",
    "TorchInterconnectBackend",
    "VendorSpec",
    "XcclBackend",
    "__version__",
    "alg_bandwidth_gbs",
    "auto_backend",
    "bus_bandwidth_gbs",
    "device_string",
    "parse_tool_output",
    "probe",
    "probe_all",
    "require",
    "vendor_spec",
]
