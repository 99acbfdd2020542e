"""The ``auto`` detector: sysfs, plus NVML's names, memory sizes and NVLinks when NVML is there.

sysfs sees NVIDIA GPUs as PCI functions but not the NVLinks between them;
NVML (the library under nvidia-smi) does. NVML is optional: without
``pynvml`` or without a driver, ``auto`` reports exactly what ``sysfs`` does.
The NVML module can be injected, which is how the tests drive this code
on a machine with no GPU.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import Counter
from typing import Any

from sagellm.core.types.topology import DeviceInfo, LinkInfo, TopologyInfo
from sagellm.topology.sysfs_detector import SysfsTopologyDetector

NVML_NVLINK_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS in nvml.h (Hopper has 18)


def load_pynvml() -> Any | None:
    """The ``pynvml`` module with NVML initialised, or None (not installed, no driver)."""
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        return None
    return nvml


def normalise_bus_id(bus_id: str | bytes) -> str:
    """NVML's ``"00000000:3B:00.0"`` -> sysfs's ``"0000:3b:00.0"``."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    domain, _, rest = text.lower().partition(":")
    return f"{int(domain, 16):04x}:{rest}"


def _nvlink_peers(nvml: Any, handle: Any) -> Counter[str]:
    """Active NVLinks of one GPU, counted per remote PCI address (an NVSwitch counts as its own address)."""
    peers: Counter[str] = Counter()
    for link in range(NVML_NVLINK_MAX_LINKS):
        try:
            if nvml.nvmlDeviceGetNvLinkState(handle, link) != 1:
                continue
            remote = nvml.nvmlDeviceGetNvLinkRemotePciInfo(handle, link)
        except Exception:  # NVML_ERROR_NOT_SUPPORTED / INVALID_ARGUMENT past the last link
            continue
        peers[normalise_bus_id(remote.busId)] += 1
    return peers


def merge_nvml(info: TopologyInfo, nvml: Any) -> TopologyInfo:
    """Name and size the CUDA devices sysfs found, and add their GPU-to-GPU NVLinks."""
    by_address: dict[str, tuple[str, int, Counter[str]]] = {}
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        address = normalise_bus_id(nvml.nvmlDeviceGetPciInfo(handle).busId)
        name = nvml.nvmlDeviceGetName(handle)
        memory = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        by_address[address] = (name.decode() if isinstance(name, bytes) else name, memory, _nvlink_peers(nvml, handle))
    devices: list[DeviceInfo] = []
    for device in info.devices:
        found = by_address.get(device.pci_address) if device.kind == "cuda" else None
        devices.append(dataclasses.replace(device, name=found[0], memory_bytes=found[1]) if found else device)
    position = {d.pci_address: i for i, d in enumerate(devices) if d.kind == "cuda"}
    links = list(info.links)
    for address, (_, _, peers) in by_address.items():
        for remote, count in sorted(peers.items()):
            if address in position and remote in position and remote != address:
                links.append(
                    LinkInfo(
                        src=position[address], dst=position[remote], kind="nvlink", label=f"NV{count}", count=count
                    )
                )
    return dataclasses.replace(info, devices=tuple(devices), links=tuple(links))


class AutoTopologyDetector:
    """sysfs + NVML; ``nvml`` injects an initialised NVML module (None: import ``pynvml`` if present)."""

    def __init__(self, root: str = "/", nvml: Any | None = None) -> None:
        self._sysfs = SysfsTopologyDetector(root)
        self._nvml = nvml
        self._looked_for_nvml = nvml is not None

    def detect(self) -> TopologyInfo:
        info = self._sysfs.detect()
        if not self._looked_for_nvml:  # initialise NVML once per detector, not per call
            self._nvml, self._looked_for_nvml = load_pynvml(), True
        return merge_nvml(info, self._nvml) if self._nvml is not None else info
