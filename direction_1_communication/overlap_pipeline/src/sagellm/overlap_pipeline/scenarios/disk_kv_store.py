"""Per-layer KV of a decode batch kept in one file, read back into host buffers with ``os.preadv``.

File layout, one chunk per layer, K then V::

    | layer 0: K [batch, tokens, kv_heads, head_dim] | V [...] | layer 1: K | V | ...

``os.preadv`` releases the GIL for the whole copy, so a read on a worker
thread runs beside the decode matmuls on the caller's thread. The buffers
are torch tensors (pinned when asked, for a following host-to-device copy)
viewed as K and V without another copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sagellm.core.errors import ConfigError, SageLLMError


class DiskKVStore:
    """Open KV file; :meth:`create` writes one with seeded contents."""

    def __init__(self, path: Path, num_layers: int, kv_shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.path = Path(path)
        self.num_layers = num_layers
        self.kv_shape = kv_shape
        self.dtype = dtype
        self.chunk_nbytes = 2 * torch.Size(kv_shape).numel() * torch.empty((), dtype=dtype).element_size()
        size = self.path.stat().st_size
        if size != num_layers * self.chunk_nbytes:
            raise ConfigError(f"{self.path} holds {size} bytes, expected {num_layers} layers x {self.chunk_nbytes}")
        self._fd: int | None = os.open(self.path, os.O_RDONLY)

    @classmethod
    def create(
        cls, path: Path, num_layers: int, kv_shape: tuple[int, ...], dtype: torch.dtype = torch.float32, seed: int = 0
    ) -> DiskKVStore:
        gen = torch.Generator().manual_seed(seed)
        with open(path, "wb") as f:
            for _ in range(2 * num_layers):
                f.write(torch.randn(kv_shape, generator=gen).to(dtype).view(torch.uint8).numpy().data)
        return cls(path, num_layers, kv_shape, dtype)

    def new_buffer(self, pin_memory: bool = False) -> torch.Tensor:
        """A zeroed byte buffer for one layer's K and V (zeroed: timing compute alone must not meet NaNs)."""
        return torch.zeros(self.chunk_nbytes, dtype=torch.uint8, pin_memory=pin_memory)

    def views(self, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(k, v)`` of a buffer, sharing its memory."""
        k_bytes, v_bytes = buffer.chunk(2)
        return k_bytes.view(self.dtype).view(self.kv_shape), v_bytes.view(self.dtype).view(self.kv_shape)

    def read_into(self, layer: int, buffer: torch.Tensor) -> None:
        """Fill ``buffer`` with ``layer``'s KV from the file (the GIL is released while the kernel copies)."""
        if self._fd is None:
            raise SageLLMError(f"KV store {self.path} is closed")
        if not 0 <= layer < self.num_layers:
            raise ConfigError(f"layer {layer} outside the {self.num_layers} layers of {self.path}")
        view = buffer.numpy().data  # the tensor's own memory; the read lands in place
        offset, done = layer * self.chunk_nbytes, 0
        while done < self.chunk_nbytes:
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise SageLLMError(f"short read of layer {layer} from {self.path} at byte {offset + done}")
            done += got

    def drop_page_cache(self) -> None:
        """Ask the kernel to forget the file's cached pages, so the next reads hit the disk."""
        if self._fd is not None:
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
