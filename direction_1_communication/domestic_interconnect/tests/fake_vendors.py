"""Build each vendor backend over its fake plugin (gloo underneath), in any process.

``build`` is a module-level function (and ``builder`` a partial of it) so
``multiprocessing`` "spawn" children can pickle it: each child puts
``tests/fake_plugins`` on ``sys.path`` first, so the backend's import probe
finds the fake plugin exactly where it would find the vendor's.
"""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from typing import Any

from sagellm.core.testing.comm_backend import BackendFactory

FAKE_PLUGINS = Path(__file__).resolve().parent / "fake_plugins"

# vendor key -> (module to import before building, torch backend to use; None = the table's)
FAKES: dict[str, tuple[str | None, str | None]] = {
    "hccl": (None, None),  # the probe itself imports the fake torch_npu
    "cncl": (None, None),  # ... and the fake torch_mlu
    "xccl": (None, "fake_xccl"),
    "rccl": ("sagellm_fake_rocm", "fake_rccl"),
}


def use_fake_plugins() -> None:
    """Let imports of torch_npu, torch_mlu, torch_xmlir find the fakes."""
    path = str(FAKE_PLUGINS)
    if path not in sys.path:
        sys.path.insert(0, path)


PEER_TIMEOUT_S = 8.0  # the backends' timeout in these tests: short, yet safe on a loaded 2-core machine


def build(key: str, rank: int, world_size: int, init_method: str, timeout_s: float = PEER_TIMEOUT_S) -> Any:
    """The real backend class of vendor ``key``, over its fake plugin, on CPU tensors."""
    from sagellm.domestic_interconnect import BACKEND_CLASSES

    use_fake_plugins()
    preload, backend = FAKES[key]
    if preload:
        importlib.import_module(preload)
    options: dict[str, Any] = {"device": "cpu"}
    if backend:
        options["backend"] = backend
    return BACKEND_CLASSES[key](rank, world_size, init_method, timeout_s, **options)


def builder(key: str) -> BackendFactory:
    """``build`` bound to vendor ``key``; a partial of a module-level function, so spawn can pickle it."""
    return functools.partial(build, key)
