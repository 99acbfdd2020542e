"""The rendezvous every multi-process backend starts from: a torch.distributed TCPStore at ``init_method``.

Rank 0 hosts the store and waits for every rank to connect; the others
connect. Both give up after ``timeout_s`` with a SageLLMError that says
which address and which side, so an unreachable host or a rank that never
starts is an error, not a hang.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlsplit

import torch.distributed as dist

from sagellm.core.errors import ConfigError, SageLLMError

_c10d: Any = dist  # TCPStore is not in torch.distributed's typed exports


class RendezvousError(SageLLMError, TimeoutError):
    """The group could not be formed: the rendezvous was unreachable or a rank never joined."""


class CollectiveError(SageLLMError):
    """A collective failed on this rank: a peer died, timed out or aborted the group."""


def parse_init_method(init_method: str) -> tuple[str, int]:
    """``tcp://host:port`` -> (host, port); ConfigError for any other form."""
    parts = urlsplit(init_method)
    if parts.scheme != "tcp" or not parts.hostname or parts.port is None:
        raise ConfigError(f"init_method must look like tcp://host:port, got {init_method!r}")
    return parts.hostname, parts.port


def open_store(rank: int, world_size: int, init_method: str, timeout_s: float) -> Any:
    """A TCPStore every rank of the group has connected to (rank 0 hosts it)."""
    if timeout_s <= 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout_s!r}")
    host, port = parse_init_method(init_method)
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        return _c10d.TCPStore(host, port, world_size, rank == 0, timeout, wait_for_workers=True)
    except Exception as exc:  # DistNetworkError, DistStoreError, TimeoutError, RuntimeError by version
        side = f"hosting it for {world_size} ranks" if rank == 0 else "connecting to it"
        raise RendezvousError(
            f"rank {rank} could not form a group of {world_size} at {init_method} within {timeout_s:g} s "
            f"({side}): {type(exc).__name__}: {exc}"
        ) from exc


def wait_keys(store: Any, keys: list[str], timeout_s: float, what: str) -> None:
    """Wait until every key is set; RendezvousError naming ``what`` after ``timeout_s``."""
    try:
        store.wait(keys, datetime.timedelta(seconds=timeout_s))
    except Exception as exc:
        raise RendezvousError(f"timed out after {timeout_s:g} s waiting for {what}: {exc}") from exc
