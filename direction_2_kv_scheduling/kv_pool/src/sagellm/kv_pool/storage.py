"""The KV bytes themselves: one contiguous tensor for every layer, K and V.

Why one allocation instead of ``2 * num_layers`` tensors:

* **one allocation** — the caching allocator sees a single request, so the
  pool either fits or fails up front, never half-way through the layers;
* **easy to size** — ``numel * element_size`` is the whole KV cache, which
  is what a GB budget (:func:`sagellm.kv_pool.num_blocks_for_memory`)
  promises;
* **easy to migrate** — moving a block to another tier, or copying it for
  copy-on-write, is one strided copy over ``[:, :, block]`` instead of a
  loop over ``2 * num_layers`` tensors.

Shape and the views handed out::

    storage: [num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim]
                  |       |
                  |       +-- 0 = key, 1 = value
                  +---------- layer

    kv_tensors(layer)      -> storage[layer, 0], storage[layer, 1]
                              each [num_blocks, block_size, heads, dim]
    flat_kv_tensors(layer) -> the same memory as [num_blocks * block_size, heads, dim]

Token slot arithmetic for the flat views (block_size = 4)::

    block 0        block 1        block 2
    +--+--+--+--+  +--+--+--+--+  +--+--+--+--+
    | 0| 1| 2| 3|  | 4| 5| 6| 7|  | 8| 9|10|11|   slot = block_id * block_size + offset
    +--+--+--+--+  +--+--+--+--+  +--+--+--+--+

An ``int8`` pool stores codes in that tensor plus one float32 scale per
block, layer and K/V (``scales: [num_layers, 2, num_blocks]``): value ~= code
* scale (see :mod:`sagellm.kv_pool.kv_quant`). Float pools have no scales.
"""

from __future__ import annotations

import torch

from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, KVLayout, Tier

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "int8": torch.int8,  # quantized KV: codes here, a scale per block per layer for K and V beside them
}
SCALE_DTYPE = torch.float32

KEY, VALUE = 0, 1


def is_quantized(dtype: torch.dtype) -> bool:
    """True for dtypes stored as codes + per-block scales (int8)."""
    return dtype == torch.int8


def scale_bytes_per_block(num_layers: int, dtype: torch.dtype) -> int:
    """Bytes of the K and V scales of one block over all layers (0 for float pools)."""
    return 2 * num_layers * SCALE_DTYPE.itemsize if is_quantized(dtype) else 0


def resolve_dtype(name: str) -> torch.dtype:
    """Map a layout/config dtype name to torch, with the allowed names in the error."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"unsupported KV dtype '{name}' (supported: {', '.join(DTYPES)})") from None


def resolve_device(name: str) -> torch.device:
    """Parse ``"cpu"`` / ``"cuda"`` / ``"cuda:1"``; fail early when CUDA is asked for but absent."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"invalid KV device '{name}': {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"KV device '{name}' requested but torch.cuda.is_available() is False")
    return device


class KVStorage:
    """Owns the device tier: the contiguous KV tensor (+ int8 scales) and cached per-layer views.

    Views are built once: the engine asks for them every layer of every
    step, and a cached tuple costs nothing while a fresh view costs a few
    microseconds each time. Implements :class:`~sagellm.kv_pool.block_store.BlockStore`.
    """

    tier = Tier.DEVICE

    def __init__(self, layout: KVLayout) -> None:
        shape = (
            layout.num_layers,
            2,
            layout.num_blocks,
            layout.block_size,
            layout.num_kv_heads,
            layout.head_dim,
        )
        device = resolve_device(layout.device)
        self.tensor = torch.zeros(shape, dtype=resolve_dtype(layout.dtype), device=device)
        self.scales: torch.Tensor | None = None
        if is_quantized(self.tensor.dtype):
            self.scales = torch.zeros((layout.num_layers, 2, layout.num_blocks), dtype=SCALE_DTYPE, device=device)
        self.num_blocks = layout.num_blocks
        num_slots = layout.num_blocks * layout.block_size
        self._blocked = [(self.tensor[layer, KEY], self.tensor[layer, VALUE]) for layer in range(layout.num_layers)]
        flat_shape = (num_slots, layout.num_kv_heads, layout.head_dim)
        self._flat = [(key.view(flat_shape), value.view(flat_shape)) for key, value in self._blocked]

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    @property
    def nbytes(self) -> int:
        """Bytes of KV held on the device (the whole pool, used or not; int8 scales included)."""
        scales = 0 if self.scales is None else self.scales.numel() * self.scales.element_size()
        return self.tensor.numel() * self.tensor.element_size() + scales

    @property
    def bytes_per_block(self) -> int:
        return self.nbytes // self.num_blocks

    def kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._blocked[self._check_layer(layer)]

    def flat_kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._flat[self._check_layer(layer)]

    def kv_scales(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(key, value) scales of one layer, each [num_blocks]; None for float pools."""
        if self.scales is None:
            return None
        layer = self._check_layer(layer)
        return self.scales[layer, KEY], self.scales[layer, VALUE]

    def block(self, block_id: BlockId) -> torch.Tensor:
        """K and V of every layer of one block: a strided [layers, 2, block_size, heads, dim] view."""
        return self.tensor[:, :, block_id]

    def block_scales(self, block_id: BlockId) -> torch.Tensor | None:
        """Scales of one block, [layers, 2]; None for float pools."""
        return None if self.scales is None else self.scales[:, :, block_id]

    def block_run(self, start: BlockId, count: int) -> torch.Tensor:
        """Blocks ``start .. start+count-1`` as a [count, layers, 2, block_size, heads, dim] (permuted) view."""
        return self.tensor[:, :, start : start + count].permute(2, 0, 1, 3, 4, 5)

    def block_run_scales(self, start: BlockId, count: int) -> torch.Tensor | None:
        return None if self.scales is None else self.scales[:, :, start : start + count].permute(2, 0, 1)

    def reset_scales(self, block_ids: list[BlockId]) -> None:
        """Zero the scales of freshly allocated int8 blocks so an old owner's range does not linger."""
        if self.scales is not None and block_ids:
            self.scales[:, :, block_ids] = 0.0

    def copy_block(self, src: BlockId, dst: BlockId) -> None:
        """Copy K and V of every layer (and int8 scales) from ``src`` to ``dst`` in one strided copy."""
        self.tensor[:, :, dst].copy_(self.tensor[:, :, src])
        if self.scales is not None:
            self.scales[:, :, dst].copy_(self.scales[:, :, src])

    def close(self) -> None:
        """Nothing to release early: the caching allocator reclaims the tensor with the pool."""

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < len(self._blocked):
            raise IndexError(f"layer {layer} out of range (pool has {len(self._blocked)} layers)")
        return layer
