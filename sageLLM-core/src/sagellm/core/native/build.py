"""Compile a package's C++ CPU kernels on first use, once per process, for this CPU's ISA level.

Every sageLLM package with C++ kernels builds them the same way through
:func:`build_extension`: ``torch.utils.cpp_extension.load`` (a C++ compiler
and ``ninja``), the explicit flags of the level :func:`~.isa.host_isa`
picks instead of ``-march=native``, and ``include/`` on the include path so
``#include <sagellm/avx512.h>`` finds the shared helpers. Builds are cached
twice: on disk by torch under ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions``), once per machine, and in this process by
spec name, so the ~30 s compile and the ~0.3 s ninja check each happen once.

The extension's name says what it was built from::

    sagellm_<spec name>_<level>_<hash of sources, headers, flags, torch version>

so a directory shared by machines with different CPUs never hands one a
build made for another's instructions, and an edited header rebuilds.
Where the build fails (no compiler, no ``ninja``, no torch) the result
carries the reason, one ``RuntimeWarning`` says what runs instead, and the
caller serves its PyTorch reference. ``SAGELLM_CPU_KERNELS=0`` turns every
build off; ``SAGELLM_CPU_ISA`` caps the level (see :mod:`.isa`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagellm.core.errors import ConfigError
from sagellm.core.native.isa import CpuIsa, host_isa

DISABLE_ENV = "SAGELLM_CPU_KERNELS"
_OFF_VALUES = frozenset({"0", "false", "no", "off"})
# -fopenmp makes at::parallel_for use torch's OpenMP pool (without it the loops run on one thread); torch's
# bundled libgomp is the runtime the extension binds to, so no second pool appears.
BASE_CFLAGS = ("-O3", "-fopenmp")
BASE_LDFLAGS = ("-fopenmp",)

logger = logging.getLogger(__name__)


def include_dir() -> Path:
    """The directory to put on the include path for ``#include <sagellm/avx512.h>``."""
    return Path(__file__).with_name("include")


@dataclass(frozen=True, slots=True)
class ExtensionSpec:
    """One C++ extension a package builds: its sources and what to tell the user about it.

    ``name`` is unique in a process (the in-process cache is keyed by it);
    ``what`` names the kernels in messages ("sageLLM's int8 CPU kernels") and
    ``fallback`` says what serves instead when they cannot be built.
    ``include_dirs`` adds the package's own headers; :func:`include_dir` is always on the path.
    """

    name: str
    sources: tuple[Path, ...]
    what: str
    fallback: str
    include_dirs: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class ExtensionBuild:
    """What came of building a spec: the module, or None and why not."""

    spec: ExtensionSpec
    module: Any | None
    isa: CpuIsa | None  # None when the build was switched off
    reason: str | None = None  # why ``module`` is None
    seconds: float = 0.0  # compile (or cache check) and import time

    @property
    def available(self) -> bool:
        return self.module is not None


_builds: dict[tuple[str, str | None], ExtensionBuild] = {}
_lock = threading.Lock()


def build_extension(spec: ExtensionSpec, isa: str | None = None) -> ExtensionBuild:
    """Build (or find) ``spec``'s extension for this CPU, once per process.

    ``isa`` caps the level as ``SAGELLM_CPU_ISA`` does (``"portable"`` runs a
    kernel's scalar path on any CPU) and takes precedence over it. Never
    raises for a failed build; raises :class:`~sagellm.core.errors.ConfigError`
    for an unknown level name.
    """
    key = (spec.name, isa)
    found = _builds.get(key)
    if found is None:
        with _lock:
            found = _builds.get(key)
            if found is None:
                found = _builds[key] = _build(spec, isa)
                if found.isa is not None and found.module is None:  # failed, not switched off: say it once
                    message = f"{spec.what} is unavailable ({found.reason}); {spec.fallback}"
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
    if found.spec != spec:
        raise ConfigError(f"two native extensions named {spec.name!r}: {found.spec.sources} and {spec.sources}")
    return found


def load_extension(spec: ExtensionSpec, isa: str | None = None) -> Any | None:
    """The compiled module of ``spec``, or None where it cannot be built (see :func:`build_extension`)."""
    return build_extension(spec, isa).module


def clear_builds() -> None:
    """Forget this process's builds (tests that build one spec for several levels); modules stay imported."""
    with _lock:
        _builds.clear()


def extension_name(spec: ExtensionSpec, isa: CpuIsa) -> str:
    """``sagellm_<name>_<level>_<hash>``: one name per source text, header text, flag set and torch version."""
    digest = hashlib.sha256()
    for part in (*BASE_CFLAGS, *isa.cflags, _torch_version()):
        digest.update(part.encode() + b"\0")
    headers = sorted(path for folder in (include_dir(), *spec.include_dirs) for path in folder.rglob("*.h"))
    for path in (*spec.sources, *headers):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"sagellm_{spec.name}_{isa.name}_{digest.hexdigest()[:12]}"


def _build(spec: ExtensionSpec, requested: str | None) -> ExtensionBuild:
    switch = os.environ.get(DISABLE_ENV, "1").strip().lower()
    if switch in _OFF_VALUES:
        return ExtensionBuild(spec, None, None, reason=f"{DISABLE_ENV}={switch}")
    level = host_isa(requested)  # ConfigError for a bad level name: a typo should not pass as "slower"
    start = time.perf_counter()
    try:
        from torch.utils.cpp_extension import load

        name = extension_name(spec, level)
        _announce_first_build(name, spec.what, level)
        module = load(
            name=name,
            sources=[str(source) for source in spec.sources],
            extra_cflags=[*BASE_CFLAGS, *level.cflags],
            extra_ldflags=list(BASE_LDFLAGS),
            extra_include_paths=[str(include_dir()), *(str(folder) for folder in spec.include_dirs)],
            verbose=False,
        )
    except Exception as exc:  # no compiler, no ninja, no torch, a compile error: the reference path serves
        reason = f"{type(exc).__name__}: {exc}"
        return ExtensionBuild(spec, None, level, reason=reason, seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    logger.info("%s: %s ready in %.1f s (%s)", spec.what, name, seconds, " ".join(level.cflags) or "portable")
    return ExtensionBuild(spec, module, level, seconds=seconds)


def _announce_first_build(name: str, what: str, isa: CpuIsa) -> None:
    """Say on stderr why the first start pauses: the build takes ~30 s and happens once per machine."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        if any(Path(_get_build_directory(name, verbose=False)).glob("*.so")):
            return
    except Exception:  # a private torch helper: if it moved, say it anyway
        pass
    logger.info("compiling %s for %s", what, isa.name)
    print(f"sagellm: compiling {what} for {isa.name} (once per machine, ~30 s) ...", file=sys.stderr, flush=True)


def _torch_version() -> str:
    try:
        import torch
    except ImportError:  # the name is still defined; load() then fails and says why
        return "no-torch"
    return str(torch.__version__)
