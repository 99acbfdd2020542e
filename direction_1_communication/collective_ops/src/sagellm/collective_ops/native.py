"""Build the shm backend's C++ kernel (``csrc/shm_comm.cpp``) through sagellm-core's native build helper.

The helper picks the instruction-set level from ``/proc/cpuinfo`` (explicit
``-mavx512*`` flags on CPUs that have them, the portable C++ loop
elsewhere; never ``-march=native``), caches the build per machine, and
returns None with a reason where no compiler is available. The shm backend
cannot run without it, so it raises NotSupportedError with that reason.
``SAGELLM_CPU_ISA=portable`` builds the portable path on any CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sagellm.core.errors import NotSupportedError
from sagellm.core.native import ExtensionSpec, build_extension

CSRC = Path(__file__).with_name("csrc")
SPEC = ExtensionSpec(
    name="collective_ops_shm",
    sources=(CSRC / "shm_comm.cpp",),
    what="sageLLM's shared-memory collectives (shm backend)",
    fallback="the shm backend is unavailable; use the gloo backend",
)


def load_shm_kernel(isa: str | None = None) -> Any:
    """The compiled module (class ``ShmComm``, ``reduce_tensors``); NotSupportedError if it cannot be built."""
    build = build_extension(SPEC, isa)
    if build.module is None:
        raise NotSupportedError(f"shm backend: its C++ kernel could not be built ({build.reason})")
    return build.module
