"""The fused C++ CPU passes of W8A8 (``csrc/int8_rows.cpp``), compiled on first use.

Why C++: around the int8 matmul, quantizing the activations and scaling the
int32 result back take ~10 small PyTorch ops per linear layer; at decode
sizes ([64, 576] rows) their dispatch overhead costs as much as the matmul
saves. The two fused passes do it in one read each.

The extension is compiled with ``torch.utils.cpp_extension`` (needs a C++
compiler and ``ninja``) once per machine and cached under
``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``); the name
carries a hash of this CPU's flags because it is built with ``-march=native``.
Where it cannot be built, :func:`kernels` returns None and the callers use
the plain PyTorch path, which computes the same numbers.
``SAGELLM_CPU_KERNELS=0`` turns the extension off.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("csrc") / "int8_rows.cpp"
DISABLE_ENV = "SAGELLM_CPU_KERNELS"
logger = logging.getLogger(__name__)


@functools.cache
def kernels() -> Any | None:
    """The compiled module (``quantize_rows``, ``scale_rows_cols``), or None where it is unavailable."""
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        return None
    try:
        from torch.utils.cpp_extension import load

        name = f"sagellm_int8_rows_{_cpu_tag()}"
        announce_first_build(name, "sageLLM's int8 CPU kernels")
        return load(
            name=name,
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-fopenmp", *(["-march=native"] if _is_x86() else [])],
            extra_ldflags=["-fopenmp"],  # at::parallel_for on torch's OpenMP pool, not one thread
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, no headers: the PyTorch path serves
        warnings.warn(
            f"sageLLM's fused int8 CPU kernels are unavailable ({type(exc).__name__}: {exc}); "
            "W8A8 layers use plain PyTorch ops (same results, slower at small batches)",
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


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def _cpu_tag() -> str:
    """A short hash of the CPU's feature flags and the source: a cached native build never runs elsewhere."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        flags = platform.processor()
    digest = hashlib.sha256((flags + SOURCE.read_text()).encode()).hexdigest()
    return digest[:12]
