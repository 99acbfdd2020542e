"""Fake vendor collective libraries for CI: a vendor backend name whose process group is gloo.

Registered exactly as the vendors register theirs
(``torch.distributed.Backend.register_backend(name, creator, devices=[...])``),
so sageLLM's probe and initialisation run their real code path; only the
library under the name is gloo, on the CPU.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import torch.distributed as dist


def _gloo(store: Any, group_rank: int, group_size: int, timeout: dt.timedelta) -> Any:
    return dist.ProcessGroupGloo(store, group_rank, group_size, timeout)


def register(name: str) -> None:
    """Make ``init_process_group(backend=name)`` build a gloo group on CPU tensors."""
    if name.lower() not in dist.Backend.backend_list:
        dist.Backend.register_backend(name, _gloo, devices=["cpu"])
