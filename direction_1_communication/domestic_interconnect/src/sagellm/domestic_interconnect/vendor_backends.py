"""The registry entries: one class per vendor, plus ``auto`` that probes and picks the one present."""

from __future__ import annotations

from typing import Any

from sagellm.core.errors import NotSupportedError
from sagellm.domestic_interconnect.backend import DEFAULT_INIT_METHOD, TorchInterconnectBackend
from sagellm.domestic_interconnect.probe import ProbeResult, probe
from sagellm.domestic_interconnect.vendors import CNCL, HCCL, RCCL, VENDORS, XCCL


class HcclBackend(TorchInterconnectBackend):
    """Huawei Ascend NPUs through HCCL (torch_npu, backend ``hccl``, device ``npu``)."""

    SPEC = HCCL


class CnclBackend(TorchInterconnectBackend):
    """Cambricon MLUs through CNCL (torch_mlu, backend ``cncl``, device ``mlu``)."""

    SPEC = CNCL


class RcclBackend(TorchInterconnectBackend):
    """Hygon DCUs through RCCL over xGMI/PCIe (ROCm/DTK torch, backend ``nccl``, device ``cuda``)."""

    SPEC = RCCL


class XcclBackend(TorchInterconnectBackend):
    """Kunlunxin XPUs through XCCL/BKCL (XPyTorch's torch_xmlir, backend ``nccl``, device ``cuda``)."""

    SPEC = XCCL


BACKEND_CLASSES: dict[str, type[TorchInterconnectBackend]] = {
    cls.SPEC.key: cls for cls in (HcclBackend, CnclBackend, RcclBackend, XcclBackend)
}

AUTO_ORDER = ("hccl", "cncl", "xccl", "rccl")
"""Probe order for ``auto``: Kunlun before ROCm, since both answer to ``cuda``/``nccl``."""


def probe_all() -> list[ProbeResult]:
    """Every vendor's probe, in ``auto`` order (for diagnostics and the benchmark header)."""
    return [probe(VENDORS[key]) for key in AUTO_ORDER]


def auto_backend(
    rank: int,
    world_size: int,
    init_method: str = DEFAULT_INIT_METHOD,
    timeout_s: float = 30.0,
    **options: Any,
) -> TorchInterconnectBackend:
    """The first vendor whose plugin is installed; NotSupportedError listing why each one is not."""
    results = probe_all()
    for result in results:
        if result.present:
            return BACKEND_CLASSES[result.key](rank, world_size, init_method, timeout_s, **options)
    reasons = "; ".join(f"{r.key}: {r.detail}" for r in results)
    raise NotSupportedError(f"no domestic interconnect is installed ({reasons})")
