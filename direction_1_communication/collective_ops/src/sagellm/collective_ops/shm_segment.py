"""A POSIX shared-memory segment (``/dev/shm/<name>``) mapped into this process as a uint8 tensor.

The creator makes it with O_EXCL (a stale segment of a crashed group is
never reused by accident); the backend unlinks the name as soon as every
rank has mapped it, so a rank that crashes later leaks nothing: the memory
goes when the last mapping does.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path

import torch

from sagellm.core.errors import ConfigError

SHM_DIR = Path("/dev/shm")


class SharedSegment:
    """One mapping of a named segment; ``tensor`` views it (the C++ kernel takes its address)."""

    def __init__(self, name: str, nbytes: int, create: bool) -> None:
        if not SHM_DIR.is_dir():
            raise ConfigError(f"shm backend: {SHM_DIR} is missing (POSIX shared memory is Linux-only here)")
        self.name = name
        self.path = SHM_DIR / name
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, nbytes)
            elif os.fstat(fd).st_size < nbytes:
                raise ConfigError(f"shm backend: segment {name} has {os.fstat(fd).st_size} bytes, need {nbytes}")
            self._map: mmap.mmap | None = mmap.mmap(fd, nbytes)
        finally:
            os.close(fd)
        self.tensor: torch.Tensor | None = torch.frombuffer(self._map, dtype=torch.uint8)

    def unlink(self) -> None:
        """Remove the name (mappings stay valid); harmless if already gone."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def close(self) -> None:
        """Drop the mapping once nothing views it any more."""
        self.tensor = None
        mapping, self._map = self._map, None
        if mapping is not None:
            with contextlib.suppress(BufferError):  # a view still exported: the GC unmaps it later
                mapping.close()
