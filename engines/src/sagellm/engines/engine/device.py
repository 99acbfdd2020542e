"""Choose the device and dtype the engine computes in."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from sagellm.core.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    """A dtype as configs and reports spell it ("float32", not "torch.float32")."""
    return str(dtype).removeprefix("torch.")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"model.device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("model.device: cuda requested but torch sees no CUDA device")
    return device


FAST_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """bf16 matmuls only beat fp32 on CPUs with native bf16 dot products (AVX512-BF16 or AMX).

    Measured on a 2-core Zen 4 (AVX512-BF16): a [64, 576] x [576, 1536] matmul
    runs at 340 GFLOP/s in bf16 against 153 in fp32. torch's capability string
    says only "AVX512" there, so the CPU's own flags decide (Linux); elsewhere
    an "AMX" capability is the only sure sign.
    """
    return bool(FAST_BF16_FLAGS & cpu_flags()) or "AMX" in str(torch.backends.cpu.get_cpu_capability()).upper()


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first processor's feature flags; empty where /proc/cpuinfo does not exist."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_dtype() -> torch.dtype:
    """What ``auto`` runs on this CPU: the dtype a benchmark's roof and its peers are measured in too."""
    return resolve_dtype("auto", torch.device("cpu"))


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPUs and CPUs with native bf16, else float32 (bf16 is emulated, and slower, on AVX2)."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda" or cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32
