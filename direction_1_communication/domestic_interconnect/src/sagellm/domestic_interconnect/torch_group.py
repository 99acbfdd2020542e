"""The small torch.distributed call layer every vendor backend shares.

Vendors plug their library into ``torch.distributed`` under a backend name,
so one code path serves all of them: rendezvous, collectives, teardown. This
module owns the translation of torch's errors into sageLLM's: a rendezvous
that cannot complete (``DistStoreError``: a rank never joined;
``DistNetworkError``: nobody listens at the address) becomes
:class:`InterconnectTimeoutError` after the timeout, anything else the
library reports becomes :class:`InterconnectError`.

It uses the process's default group because that is what every vendor's
torch expects (their plugins hook ``init_process_group``), so one backend
object may be live per process at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from sagellm.core.errors import ConfigError
from sagellm.core.protocols.communication import REDUCE_OPS
from sagellm.domestic_interconnect.errors import InterconnectError, InterconnectTimeoutError

INIT_METHOD_SCHEMES = ("tcp://", "file://", "env://")

_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (dist.DistStoreError, dist.DistNetworkError)


def reduce_op(op: str) -> Any:
    """torch's ReduceOp for one of core's REDUCE_OPS names; anything else is a ConfigError."""
    if op not in REDUCE_OPS:
        raise ConfigError(f"unknown reduce op '{op}' (expected one of {', '.join(REDUCE_OPS)})")
    return {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op]


def check_group_args(rank: int, world_size: int, init_method: str, timeout_s: float) -> None:
    """Refuse impossible group parameters before anything waits on them."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ConfigError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ConfigError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if not isinstance(init_method, str) or not init_method.startswith(INIT_METHOD_SCHEMES):
        raise ConfigError(f"init_method must start with one of {', '.join(INIT_METHOD_SCHEMES)}, got {init_method!r}")
    if not timeout_s > 0:
        raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}")


def init_default_group(backend: str, rank: int, world_size: int, init_method: str, timeout_s: float) -> Any:
    """Join the rendezvous and build the vendor's process group; fails (never hangs) after timeout_s."""
    if dist.is_initialized():
        raise ConfigError(
            "this process already has a default torch.distributed group; close the other backend first "
            "(vendor plugins hook the default group, so one interconnect backend per process)"
        )
    try:
        dist.init_process_group(
            backend=backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=dt.timedelta(seconds=timeout_s),
        )
    except _TIMEOUT_ERRORS as exc:
        raise InterconnectTimeoutError(
            f"rank {rank} of {world_size}: rendezvous at {init_method} did not complete within {timeout_s:g} s "
            f"(unreachable address or a rank that never joined): {_first_line(exc)}"
        ) from exc
    except (RuntimeError, ValueError) as exc:
        raise InterconnectError(f"rank {rank}: cannot create a '{backend}' process group: {_first_line(exc)}") from exc
    return dist.group.WORLD


def destroy_default_group() -> None:
    """Release the default group; harmless when there is none."""
    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def translated(what: str, rank: int) -> Iterator[None]:
    """Turn torch.distributed failures inside a collective into sageLLM errors naming the call."""
    try:
        yield
    except _TIMEOUT_ERRORS as exc:
        raise InterconnectTimeoutError(f"rank {rank}: {what} timed out: {_first_line(exc)}") from exc
    except dist.DistError as exc:
        cls = InterconnectTimeoutError if "timed out" in str(exc).lower() else InterconnectError
        raise cls(f"rank {rank}: {what} failed: {_first_line(exc)}") from exc
    except RuntimeError as exc:
        if "timed out" in str(exc).lower() or "timeout" in str(exc).lower():
            raise InterconnectTimeoutError(f"rank {rank}: {what} timed out: {_first_line(exc)}") from exc
        raise InterconnectError(f"rank {rank}: {what} failed: {_first_line(exc)}") from exc


def bind_device(device: torch.device) -> None:
    """Make ``device`` the current one of its type, as vendors' process groups expect before init."""
    if device.type == "cpu" or device.index is None:
        return
    module = getattr(torch, device.type, None)
    set_device = getattr(module, "set_device", None)
    if set_device is None:
        raise ConfigError(f"torch has no '{device.type}' device module; is the vendor plugin imported?")
    set_device(device.index)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
