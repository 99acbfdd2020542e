"""Where a report was measured: versions, CPU, device -- what makes two reports comparable."""

from __future__ import annotations

import os
import platform
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

import torch

from sagellm.engines.engine.device import cpu_flags

ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "asimd")


def collect_environment(device: str) -> dict[str, Any]:
    flags = cpu_flags()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "sagellm": sagellm_versions(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": {
            "model": cpu_model_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "isa": [flag for flag in ISA_FLAGS if flag in flags],
            "torch_capability": str(torch.backends.cpu.get_cpu_capability()),
        },
    }


def sagellm_versions() -> dict[str, str]:
    found = {
        str(d.metadata["Name"]): d.version for d in distributions() if str(d.metadata["Name"]).startswith("sagellm")
    }
    return dict(sorted(found.items()))


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
