"""Tier sizes and migration settings of a :class:`~sagellm.kv_pool.PagedKVPool`.

The device tier's size comes with the :class:`KVLayout` (the engine derives
it from the model and the GB budget); the slower tiers are sized here, in
blocks of the same shape. From config they come through the section's
``options`` table::

    kv_pool:
      implementation: paged
      options: {host_blocks: 4096, disk_blocks: 65536, disk_dir: /var/tmp/sagellm-kv}

    SAGELLM__KV_POOL__OPTIONS='{"host_blocks": 4096}'      # environment override
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from sagellm.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """Everything about a pool that the layout does not say."""

    host_blocks: int = 0  # blocks in host memory; 0 = no host tier
    disk_blocks: int = 0  # blocks in memory-mapped files; 0 = no disk tier
    disk_dir: str | None = None  # parent of the disk tier's own directory; None = the system temp dir
    pin_host_memory: bool | None = None  # None: pin exactly when the device tier is CUDA
    migration_workers: int = 2  # threads that run migrations (and wait on their CUDA events)
    compute_dtype: str = "float32"  # what read_kv returns from an int8 pool unless asked otherwise

    def __post_init__(self) -> None:
        for name in ("host_blocks", "disk_blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"kv_pool option {name} must be an int >= 0 (got {value!r})")
        workers = self.migration_workers
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ConfigError(f"kv_pool option migration_workers must be an int >= 1 (got {workers!r})")
        if self.compute_dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(
                f"kv_pool option compute_dtype must be float32, bfloat16 or float16 (got {self.compute_dtype!r})"
            )

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> PoolOptions:
        """Build from a config section's ``options``; unknown keys are a ConfigError (typos surface)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"unknown kv_pool option(s) {unknown} (known: {sorted(known)})")
        return cls(**dict(options))
