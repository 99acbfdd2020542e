"""What every tier's storage offers, so migration code never asks which tier it holds.

A *block* is K and V of every layer for ``block_size`` tokens. Each tier
picks the layout that suits its copy engine, and both hand out the same
``[layers, 2, block_size, heads, dim]`` view per block::

    device (KVStorage)      [layers, 2, num_blocks, block_size, heads, dim]   layer-major:
                            attention reads one layer's blocks as one tensor
    host / disk             [num_blocks, layers, 2, block_size, heads, dim]   block-major:
    (OffloadStorage)        a block is ONE contiguous run of bytes -> one DMA,
                            one sequential stretch of the file

    block(b) on device  = tensor[:, :, b]    (strided: 2 * layers chunks)
    block(b) on host    = tensor[b]          (contiguous)

    block_run(s, n)     = [n, layers, 2, block_size, heads, dim] over blocks s .. s+n-1
                          (a permuted view on the device, a plain slice on host / disk):
                          a migration copies each run of consecutive ids with ONE copy_

int8 stores carry scales in the same two layouts (``[layers, 2, blocks]`` and
``[blocks, layers, 2]``), and ``block_scales(b)`` is ``[layers, 2]`` in both.
"""

from __future__ import annotations

from typing import Protocol

import torch

from sagellm.core.types import BlockId, KVLayout, Tier
from sagellm.kv_pool.disk_files import DiskDirectory
from sagellm.kv_pool.storage import KEY, SCALE_DTYPE, VALUE, is_quantized, resolve_dtype


class BlockStore(Protocol):
    """The bytes of one tier, addressed by block id."""

    tier: Tier
    num_blocks: int

    @property
    def device(self) -> torch.device: ...

    @property
    def nbytes(self) -> int: ...

    @property
    def bytes_per_block(self) -> int: ...

    def kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def kv_scales(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None: ...

    def block(self, block_id: BlockId) -> torch.Tensor: ...

    def block_scales(self, block_id: BlockId) -> torch.Tensor | None: ...

    def block_run(self, start: BlockId, count: int) -> torch.Tensor: ...

    def block_run_scales(self, start: BlockId, count: int) -> torch.Tensor | None: ...

    def reset_scales(self, block_ids: list[BlockId]) -> None: ...

    def close(self) -> None: ...


class OffloadStorage:
    """A host or disk tier: block-major KV codes (+ int8 scales) in host memory or a memory-mapped file.

    Build it with :meth:`host` (pinned when the device tier is CUDA, so
    copies run as asynchronous DMA) or :meth:`disk` (``torch.from_file``
    mappings in a directory of its own, removed by :meth:`close`).
    """

    def __init__(
        self,
        tier: Tier,
        layout: KVLayout,
        num_blocks: int,
        tensor: torch.Tensor,
        scales: torch.Tensor | None,
        directory: DiskDirectory | None = None,
    ) -> None:
        self.tier = tier
        self.num_blocks = num_blocks
        self.tensor = tensor.view(_block_major_shape(layout, num_blocks))
        self.scales = None if scales is None else scales.view(num_blocks, layout.num_layers, 2)
        self._directory = directory
        self._num_layers = layout.num_layers

    @classmethod
    def host(cls, layout: KVLayout, num_blocks: int, pin_memory: bool) -> OffloadStorage:
        dtype = resolve_dtype(layout.dtype)
        tensor = torch.zeros(_block_major_shape(layout, num_blocks), dtype=dtype, pin_memory=pin_memory)
        scales = None
        if is_quantized(dtype):
            scales = torch.zeros((num_blocks, layout.num_layers, 2), dtype=SCALE_DTYPE, pin_memory=pin_memory)
        return cls(Tier.HOST, layout, num_blocks, tensor, scales)

    @classmethod
    def disk(cls, layout: KVLayout, num_blocks: int, parent: str | None) -> OffloadStorage:
        dtype = resolve_dtype(layout.dtype)
        directory = DiskDirectory(parent)
        shape = _block_major_shape(layout, num_blocks)
        tensor = directory.mapped_tensor("kv.bin", _numel(shape), dtype)
        scales = None
        if is_quantized(dtype):
            scales = directory.mapped_tensor("scales.bin", num_blocks * layout.num_layers * 2, SCALE_DTYPE)
        return cls(Tier.DISK, layout, num_blocks, tensor, scales, directory)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @property
    def path(self) -> str | None:
        """The directory holding a disk tier's files (None for host memory)."""
        return None if self._directory is None else self._directory.path

    @property
    def nbytes(self) -> int:
        scales = 0 if self.scales is None else self.scales.numel() * self.scales.element_size()
        return self.tensor.numel() * self.tensor.element_size() + scales

    @property
    def bytes_per_block(self) -> int:
        return self.nbytes // self.num_blocks

    def kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value) of one layer, each a strided [num_blocks, block_size, heads, dim] view."""
        layer = self._check_layer(layer)
        return self.tensor[:, layer, KEY], self.tensor[:, layer, VALUE]

    def kv_scales(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.scales is None:
            return None
        layer = self._check_layer(layer)
        return self.scales[:, layer, KEY], self.scales[:, layer, VALUE]

    def block(self, block_id: BlockId) -> torch.Tensor:
        return self.tensor[block_id]

    def block_scales(self, block_id: BlockId) -> torch.Tensor | None:
        return None if self.scales is None else self.scales[block_id]

    def block_run(self, start: BlockId, count: int) -> torch.Tensor:
        return self.tensor[start : start + count]

    def block_run_scales(self, start: BlockId, count: int) -> torch.Tensor | None:
        return None if self.scales is None else self.scales[start : start + count]

    def reset_scales(self, block_ids: list[BlockId]) -> None:
        if self.scales is not None and block_ids:
            self.scales[block_ids] = 0.0

    def close(self) -> None:
        """Drop the mappings and remove a disk tier's files; idempotent."""
        if self._directory is not None:
            # Drop our references to the mapping; views handed out earlier keep theirs until they
            # go, which Linux allows: an unlinked file lives on only as long as its mappings.
            self.tensor = self.tensor.new_empty((0, *self.tensor.shape[1:]))
            self.scales = None if self.scales is None else self.scales.new_empty((0, *self.scales.shape[1:]))
            self._directory.remove()

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < self._num_layers:
            raise IndexError(f"layer {layer} out of range (pool has {self._num_layers} layers)")
        return layer


def _block_major_shape(layout: KVLayout, num_blocks: int) -> tuple[int, ...]:
    return (num_blocks, layout.num_layers, 2, layout.block_size, layout.num_kv_heads, layout.head_dim)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count
