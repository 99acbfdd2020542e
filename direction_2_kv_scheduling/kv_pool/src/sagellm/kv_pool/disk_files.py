"""A private directory of memory-mapped files for the disk tier, removed when the pool closes.

The pool creates its own subdirectory (``sagellm-kv-XXXXXX``) under the
configured one and only ever deletes that, so pointing ``disk_dir`` at a
shared folder is safe. A ``weakref.finalize`` removes it even when nobody
calls ``close()`` (garbage collection or interpreter exit).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref

import torch

from sagellm.core.errors import ConfigError


class DiskDirectory:
    """Owns one fresh directory and the tensors mapped from files inside it."""

    def __init__(self, parent: str | None) -> None:
        try:
            if parent is not None:
                os.makedirs(parent, exist_ok=True)
            self.path = tempfile.mkdtemp(prefix="sagellm-kv-", dir=parent)
        except OSError as exc:
            raise ConfigError(f"cannot create the KV disk tier under {parent!r}: {exc}") from None
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)

    def mapped_tensor(self, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A zero-filled 1-D tensor of ``numel`` elements backed by ``<path>/<name>`` (MAP_SHARED).

        ``torch.from_file(shared=True)`` creates the file at full size; it is
        sparse until written, so an idle disk tier costs no disk space.
        """
        path = os.path.join(self.path, name)
        try:
            return torch.from_file(path, shared=True, size=numel, dtype=dtype)
        except RuntimeError as exc:
            self.remove()
            raise ConfigError(f"cannot map the KV disk tier file {path}: {exc}") from None

    @property
    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def remove(self) -> None:
        """Delete the directory and its files (once; later calls do nothing)."""
        self._finalizer()
