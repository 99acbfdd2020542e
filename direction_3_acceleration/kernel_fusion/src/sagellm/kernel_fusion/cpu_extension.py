"""Compile this package's C++ CPU kernels on first use (``torch.utils.cpp_extension``).

Built once per machine and cached under ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions``). The build uses ``-march=native``, so the
extension's name carries a hash of the CPU's feature flags and the source:
a cached build never runs on a CPU it was not made for. ``-fopenmp`` makes
``at::parallel_for`` use torch's OpenMP thread pool (without it the loops
run on one thread; torch's bundled ``libgomp.so.1`` is the runtime the
extension binds to, so no second pool appears). Where no compiler or
``ninja`` is available :func:`load_kernels` returns None (with one warning)
and callers run the PyTorch reference. ``SAGELLM_CPU_KERNELS=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

CSRC = Path(__file__).with_name("csrc")
FUSED_DTYPES = (torch.float32, torch.bfloat16)  # what every compiled kernel dispatches on
DISABLE_ENV = "SAGELLM_CPU_KERNELS"
logger = logging.getLogger(__name__)


@functools.cache
def load_kernels(source_name: str) -> Any | None:
    """The compiled module of ``csrc/<source_name>.cpp``, or None where it cannot be built."""
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    source = CSRC / f"{source_name}.cpp"
    try:
        from torch.utils.cpp_extension import load

        name = f"sagellm_{source_name}_{_build_tag(source)}"
        announce_first_build(name, f"sageLLM's {source_name} CPU kernel")
        native = ["-march=native"] if platform.machine().lower() in ("x86_64", "amd64") else []
        return load(
            name=name,
            sources=[str(source)],
            extra_cflags=["-O3", "-fopenmp", *native],
            extra_ldflags=["-fopenmp"],
            extra_include_paths=[str(CSRC)],  # avx512_math.h, shared by the kernels
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, no headers: the reference path serves
        warnings.warn(
            f"sageLLM's fused CPU kernel {source_name} is unavailable ({type(exc).__name__}: {exc}); "
            "using the PyTorch reference instead (same results, slower)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def announce_first_build(name: str, what: str) -> None:
    """Say on stderr why the first start pauses: the build takes ~30 s and happens once per machine."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        if any(Path(_get_build_directory(name, verbose=False)).glob("*.so")):
            return
    except Exception:  # a private torch helper: if it moved, say it anyway
        pass
    logger.info("compiling %s", what)
    print(f"sagellm: compiling {what} (once per machine, ~30 s) ...", file=sys.stderr, flush=True)


def _build_tag(source: Path) -> str:
    flags = platform.processor()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next((line for line in lines if line.startswith(("flags", "Features"))), flags)
    headers = "".join(header.read_text() for header in sorted(CSRC.glob("*.h")))
    return hashlib.sha256((flags + source.read_text() + headers).encode()).hexdigest()[:12]
