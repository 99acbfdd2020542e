"""Which instruction set a C++ kernel is compiled for, chosen from the CPU's flags.

Kernels used to be built with ``-march=native``: whatever the building CPU
had went into the binary, and a build cached in a ``TORCH_EXTENSIONS_DIR``
shared between machines crashed with "Illegal instruction" on an older CPU.
It also meant the portable (non-AVX-512) C++ path never ran on our machines.
Instead a kernel is built for one of a few named levels, each a fixed list
of ``-m`` flags, and the level's name goes into the extension's name: two
machines share a cached build only when it was made with the same flags,
and a level is chosen only when ``/proc/cpuinfo`` shows every flag it needs.

    level      compiler flags (cumulative)                         needs (cpuinfo flags)
    avx512     -mavx2 -mfma -mf16c -mavx512f/bw/vl/dq              avx2 fma f16c avx512f/bw/vl/dq
    avx2       -mavx2 -mfma -mf16c                                 avx2 fma f16c
    portable   (none: the compiler's baseline for this machine)    nothing

``avx512`` is the level the kernels' intrinsics are written for (they test
``__AVX512F__``/``__AVX512BW__``, see ``include/sagellm/avx512.h``); ``avx2``
only lets the compiler vectorize the portable loops, as ``-march=native``
did on such CPUs. ``SAGELLM_CPU_ISA`` caps the level (``portable`` runs the
scalar C++ path on any machine, for tests); a cap above what the CPU has
gives the best level the CPU has.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sagellm.core.errors import ConfigError

ISA_ENV = "SAGELLM_CPU_ISA"
AUTO = "auto"
_X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


@dataclass(frozen=True, slots=True)
class CpuIsa:
    """One instruction-set level: the compiler flags it adds and the CPU flags it needs."""

    name: str
    cflags: tuple[str, ...]
    requires: frozenset[str]
    x86_only: bool = True

    def runs_on(self, cpu_flags: frozenset[str], machine: str) -> bool:
        """Whether a binary built for this level can run on a CPU with these flags."""
        if self.x86_only and machine.lower() not in _X86_MACHINES:
            return False
        return self.requires <= cpu_flags


_AVX2_FLAGS = ("-mavx2", "-mfma", "-mf16c")
AVX512 = CpuIsa(
    name="avx512",
    cflags=(*_AVX2_FLAGS, "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"),
    requires=frozenset({"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq"}),
)
AVX2 = CpuIsa(name="avx2", cflags=_AVX2_FLAGS, requires=frozenset({"avx2", "fma", "f16c"}))
PORTABLE = CpuIsa(name="portable", cflags=(), requires=frozenset(), x86_only=False)
#: Best first: the first level the CPU can run (at or below the requested cap) is chosen.
LEVELS: tuple[CpuIsa, ...] = (AVX512, AVX2, PORTABLE)
_BY_NAME = {isa.name: isa for isa in LEVELS}


def choose_isa(cpu_flags: Iterable[str], machine: str, request: str = AUTO) -> CpuIsa:
    """The best level a CPU with ``cpu_flags`` runs, at most ``request`` (a level name or ``auto``).

    A pure function of its arguments, so the choice can be tested for any CPU.
    Raises :class:`~sagellm.core.errors.ConfigError` for an unknown ``request``.
    """
    wanted = request.strip().lower() or AUTO
    if wanted != AUTO and wanted not in _BY_NAME:
        raise ConfigError(f"{ISA_ENV}={request!r}: expected one of {', '.join([AUTO, *_BY_NAME])}")
    flags = frozenset(flag.lower() for flag in cpu_flags)
    start = 0 if wanted == AUTO else LEVELS.index(_BY_NAME[wanted])
    return next(isa for isa in LEVELS[start:] if isa.runs_on(flags, machine))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """This CPU's feature flags as Linux reports them (the ``flags``/``Features`` line).

    Linux lists an AVX-512 flag only when the kernel also saves the registers
    it needs, so these flags mean "usable", not just "present". Elsewhere
    (no ``/proc/cpuinfo``) torch's own dispatch level stands in, when torch
    is installed; otherwise the set is empty and the portable level is chosen.
    """
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
    return _flags_from_torch()


def host_isa(request: str | None = None) -> CpuIsa:
    """The level to build for on this machine: :func:`choose_isa` on its flags, capped by ``SAGELLM_CPU_ISA``."""
    cap = request if request is not None else os.environ.get(ISA_ENV, AUTO)
    return choose_isa(cpu_flags(), platform.machine(), cap)


def _flags_from_torch() -> frozenset[str]:
    """The flags implied by ``torch.backends.cpu.get_cpu_capability()`` (ATen checks the same sets)."""
    try:
        import torch  # only where /proc/cpuinfo is missing; core itself never needs torch

        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # no torch, or an older one without the call: stay portable
        return frozenset()
    if capability.startswith("AVX512"):
        return AVX512.requires
    return AVX2.requires if capability == "AVX2" else frozenset()
