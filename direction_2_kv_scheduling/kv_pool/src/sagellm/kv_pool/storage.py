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
"""

from __future__ import annotations

import torch

from sagellm.core.errors import ConfigError
from sagellm.core.types import BlockId, KVLayout

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "int8": torch.int8,  # quantized KV; the pool only stores and copies bytes
}

KEY, VALUE = 0, 1


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
    """Owns the contiguous KV tensor and caches the per-layer views.

    Views are built once: the engine asks for them every layer of every
    step, and a cached tuple costs nothing while a fresh view costs a few
    microseconds each time.
    """

    def __init__(self, layout: KVLayout) -> None:
        shape = (
            layout.num_layers,
            2,
            layout.num_blocks,
            layout.block_size,
            layout.num_kv_heads,
            layout.head_dim,
        )
        self.tensor = torch.zeros(shape, dtype=resolve_dtype(layout.dtype), device=resolve_device(layout.device))
        num_slots = layout.num_blocks * layout.block_size
        self._blocked = [(self.tensor[layer, KEY], self.tensor[layer, VALUE]) for layer in range(layout.num_layers)]
        flat_shape = (num_slots, layout.num_kv_heads, layout.head_dim)
        self._flat = [(key.view(flat_shape), value.view(flat_shape)) for key, value in self._blocked]

    @property
    def nbytes(self) -> int:
        """Bytes of KV held on the device (the whole pool, used or not)."""
        return self.tensor.numel() * self.tensor.element_size()

    def kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._blocked[self._check_layer(layer)]

    def flat_kv_tensors(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._flat[self._check_layer(layer)]

    def copy_block(self, src: BlockId, dst: BlockId) -> None:
        """Copy K and V of every layer from ``src`` to ``dst`` in one strided copy."""
        self.tensor[:, :, dst].copy_(self.tensor[:, :, src])

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < len(self._blocked):
            raise IndexError(f"layer {layer} out of range (pool has {len(self._blocked)} layers)")
        return layer
