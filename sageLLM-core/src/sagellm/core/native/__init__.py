"""Build sageLLM's C++ CPU kernels: one helper and one AVX-512 header for every package that has some.

:func:`build_extension` compiles a package's sources with
``torch.utils.cpp_extension`` (torch is imported only then: core stays
torch-free) for an instruction-set level chosen from the CPU's flags
(:func:`choose_isa`, explicit ``-mavx512*`` flags, never ``-march=native``),
caches the result per process and per machine, and returns None with a
reason where no build is possible, so the caller runs its PyTorch reference.
``include/sagellm/avx512.h`` (on the include path of every build) holds the
AVX-512 load/store/exp helpers the kernels share.

Environment: ``SAGELLM_CPU_KERNELS=0`` switches every build off;
``SAGELLM_CPU_ISA=portable`` (or ``avx2``) caps the level, e.g. to test the
kernels' portable C++ path on an AVX-512 machine.
"""

from sagellm.core.native.build import (
    DISABLE_ENV,
    ExtensionBuild,
    ExtensionSpec,
    build_extension,
    clear_builds,
    extension_name,
    include_dir,
    load_extension,
)
from sagellm.core.native.isa import AVX2, AVX512, ISA_ENV, LEVELS, PORTABLE, CpuIsa, choose_isa, cpu_flags, host_isa

__all__ = [
    "AVX2",
    "AVX512",
    "DISABLE_ENV",
    "ISA_ENV",
    "LEVELS",
    "PORTABLE",
    "CpuIsa",
    "ExtensionBuild",
    "ExtensionSpec",
    "build_extension",
    "choose_isa",
    "clear_builds",
    "cpu_flags",
    "extension_name",
    "host_isa",
    "include_dir",
    "load_extension",
]
