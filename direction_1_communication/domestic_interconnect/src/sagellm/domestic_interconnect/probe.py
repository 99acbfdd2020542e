"""Import probes: is a vendor's torch plugin installed, and did it register its backend?

A probe imports the plugin module, because importing it is what registers
the vendor's backend with ``torch.distributed`` (``torch_npu`` and
``torch_mlu`` call ``Backend.register_backend`` at import time). A plugin
that is installed but broken counts as absent with the reason attached:
``torch_npu`` even calls ``sys.exit()`` when CANN's ``libhccl.so`` is
missing, so the probe catches ``SystemExit`` too.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sagellm.core.errors import NotSupportedError
from sagellm.domestic_interconnect.vendors import VendorSpec


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Whether one vendor's stack is usable here, and why not when it is not."""

    key: str
    present: bool
    detail: str


def probe(spec: VendorSpec, backend: str | None = None) -> ProbeResult:
    """Import the vendor's plugin and check torch.distributed now knows ``backend``."""
    backend = backend or spec.backend
    try:
        module = importlib.import_module(spec.probe_module)
    except ImportError as exc:
        return ProbeResult(spec.key, False, f"cannot import {spec.probe_module} ({exc})")
    except (Exception, SystemExit) as exc:  # installed but broken: report, never crash the caller
        return ProbeResult(spec.key, False, f"importing {spec.probe_module} failed: {type(exc).__name__}: {exc}")
    if spec.probe_hip:
        hip = _torch_hip_version()
        if not hip:
            return ProbeResult(spec.key, False, "torch is not a ROCm/DTK build (torch.version.hip is not set)")
    if not _backend_available(backend):
        return ProbeResult(
            spec.key, False, f"{spec.probe_module} imported, but torch.distributed has no usable '{backend}' backend"
        )
    version = getattr(module, "__version__", "unknown version")
    return ProbeResult(spec.key, True, f"{spec.probe_module} {version}, torch.distributed backend '{backend}'")


def require(spec: VendorSpec, backend: str | None = None) -> None:
    """Raise NotSupportedError naming what is missing and what to install, unless the probe passes."""
    result = probe(spec, backend)
    if not result.present:
        raise NotSupportedError(
            f"interconnect backend '{spec.key}' ({spec.vendor} {spec.library}) is not available: "
            f"{result.detail}; {spec.install_hint}"
        )


def _torch_hip_version() -> str | None:
    import torch

    return getattr(torch.version, "hip", None)


def _backend_available(name: str) -> bool:
    """True when init_process_group(backend=name) can build it in this process."""
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if name == "nccl":  # built in: present only in CUDA/ROCm builds (and XPyTorch)
        return bool(dist.is_nccl_available())
    if name == "gloo":
        return bool(dist.is_gloo_available())
    return name.lower() in dist.Backend.backend_list
