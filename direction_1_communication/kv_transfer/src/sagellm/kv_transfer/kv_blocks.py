"""The KV a channel reads blocks from and writes blocks into, and how a transfer lays them out when staged.

A channel is bound to one KV store: a pool (anything with ``layout.num_layers``
and ``kv_tensors(layer)``, such as the core ``KVPool``) or a plain list of
per-layer ``(key, value)`` tensors, each ``[num_blocks, block_size, kv_heads,
head_dim]`` of one float dtype. A staged transfer of ``n`` blocks is one
contiguous run, layer-major, so every layer's keys are one tensor::

    run: [ L0 K: n blocks ][ L0 V: n blocks ][ L1 K ][ L1 V ] ... [ scales ] [ metadata bytes (large ones only) ]
          each [n, block_size, kv_heads, head_dim] in the KV's dtype

An int8 KV (codes, with one float32 scale per block of each layer's K and V,
as sagellm-kv-pool keeps them: ``kv_scales(layer)``) ships its scales too,
as ``[layers, 2, n]`` float32 after the codes; a block's codes mean nothing
without them. Float KVs have no scales section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sagellm.core.errors import KVBlockError, NotSupportedError

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
    "int8": torch.int8,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
WORDS = (torch.int64, torch.int32, torch.int16, torch.uint8)  # widest first
SCALE_DTYPE = torch.float32  # an int8 KV's per-block scales
ScalePair = tuple[torch.Tensor, torch.Tensor]  # one layer's (key, value) scales, each [num_blocks]


@dataclass(frozen=True, slots=True)
class BlockGeometry:
    """What sender and receiver must agree on for a block to mean the same thing."""

    num_layers: int
    block_size: int
    num_kv_heads: int
    head_dim: int
    dtype: str

    @property
    def block_shape(self) -> tuple[int, int, int]:
        return (self.block_size, self.num_kv_heads, self.head_dim)

    @property
    def quantized(self) -> bool:
        """int8 codes with per-block scales."""
        return self.dtype == "int8"

    @property
    def code_bytes_per_block(self) -> int:
        """Keys and values of one block in every layer, without scales."""
        itemsize = torch.empty((), dtype=DTYPES[self.dtype]).element_size()
        return 2 * self.num_layers * self.block_size * self.num_kv_heads * self.head_dim * itemsize

    @property
    def bytes_per_block(self) -> int:
        """Keys and values of one block in every layer, with their scales where the KV is int8."""
        scale_bytes = 2 * self.num_layers * SCALE_DTYPE.itemsize if self.quantized else 0
        return self.code_bytes_per_block + scale_bytes

    def to_wire(self) -> list[Any]:
        return [self.num_layers, self.block_size, self.num_kv_heads, self.head_dim, self.dtype]

    @classmethod
    def from_wire(cls, value: Any) -> BlockGeometry:
        num_layers, block_size, heads, dim, dtype = value
        return cls(int(num_layers), int(block_size), int(heads), int(dim), str(dtype))

    def describe(self) -> str:
        return f"{self.num_layers} layers x [{self.block_size}, {self.num_kv_heads}, {self.head_dim}] {self.dtype}"


class KVBlocks:
    """Per-layer (key, value) block tensors: gather named blocks into a staged run, scatter a run into blocks."""

    def __init__(
        self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]], scales: Sequence[ScalePair] | None = None
    ) -> None:
        if not layers:
            raise NotSupportedError("a KV transfer channel needs at least one layer of KV tensors")
        first = layers[0][0]
        for key, value in layers:
            for t in (key, value):
                if t.dim() != 4 or t.shape != first.shape or t.dtype != first.dtype or t.device != first.device:
                    raise NotSupportedError(
                        "every layer's K and V must be one shape [num_blocks, block_size, kv_heads, head_dim], "
                        f"dtype and device; got {tuple(t.shape)} {t.dtype} on {t.device} next to "
                        f"{tuple(first.shape)} {first.dtype} on {first.device}"
                    )
        if first.dtype not in DTYPE_NAMES:
            raise NotSupportedError(
                f"KV dtype {first.dtype} cannot be transferred (float32, bfloat16, float16, or int8 with scales)"
            )
        self.scales = _check_scales(scales, first, len(layers))
        self.layers = list(layers)
        self.num_blocks = int(first.shape[0])
        self.device = first.device
        # Blocks are moved as raw words: a block of one layer is one contiguous row, and index_copy_ on
        # int64 rows runs ~3x faster than on bf16 elements (no per-element dtype dispatch).
        row_bytes = first[0].numel() * first.element_size()
        self.word = next(w for w in WORDS if row_bytes % torch.empty((), dtype=w).element_size() == 0)
        self.rows = [tuple(_as_rows(t, self.word) for t in pair) for pair in self.layers]
        block_size, heads, dim = (int(s) for s in first.shape[1:])
        self.geometry = BlockGeometry(len(layers), block_size, heads, dim, DTYPE_NAMES[first.dtype])

    @classmethod
    def of(cls, kv: Any) -> KVBlocks:
        """From a pool (``layout.num_layers`` + ``kv_tensors(layer)``), a KVBlocks, or a list of (K, V) pairs."""
        if isinstance(kv, KVBlocks):
            return kv
        kv_tensors = getattr(kv, "kv_tensors", None)
        if callable(kv_tensors):
            layers = range(kv.layout.num_layers)
            kv_scales = getattr(kv, "kv_scales", None)
            scales = [kv_scales(layer) for layer in layers] if callable(kv_scales) else None
            return cls([tuple(kv_tensors(layer)) for layer in layers], scales if scales and scales[0] else None)
        return cls([(k, v) for k, v in kv])

    def check_ids(self, block_ids: Sequence[int]) -> list[int]:
        ids = [int(b) for b in block_ids]
        bad = [b for b in ids if not 0 <= b < self.num_blocks]
        if bad:
            raise KVBlockError(f"block ids {bad[:4]} are outside this KV store's {self.num_blocks} blocks")
        return ids

    def staged_views(self, run: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """``run`` (flat uint8) as [layers, 2, n, row] of this KV's words (one row = one block of one layer)."""
        g = self.geometry
        nbytes = num_blocks * g.code_bytes_per_block
        return run[:nbytes].view(self.word).view(g.num_layers, 2, num_blocks, -1)

    def staged_blocks(self, run: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """``run`` as [layers, 2, n, block_size, heads, dim] in the KV dtype (for inspection and tests)."""
        g = self.geometry
        nbytes = num_blocks * g.code_bytes_per_block
        return run[:nbytes].view(DTYPES[g.dtype]).view(g.num_layers, 2, num_blocks, *g.block_shape)

    def staged_scales(self, run: torch.Tensor, num_blocks: int) -> torch.Tensor:
        """An int8 run's scales section as [layers, 2, n] float32."""
        g = self.geometry
        start, end = num_blocks * g.code_bytes_per_block, num_blocks * g.bytes_per_block
        return run[start:end].view(SCALE_DTYPE).view(g.num_layers, 2, num_blocks)

    def gather(self, block_ids: Sequence[int], run: torch.Tensor) -> None:
        """Copy the named blocks of every layer into the staged ``run``, in the order given."""
        if not block_ids:
            return
        staged = self.staged_views(run, len(block_ids))
        index = torch.tensor(block_ids, dtype=torch.long, device=self.device)
        for layer, pair in enumerate(self.rows):
            for kind, tensor in enumerate(pair):
                if tensor.device.type == "cpu":
                    torch.index_select(tensor, 0, index, out=staged[layer, kind])
                else:  # gather on the device, then one device-to-host copy
                    staged[layer, kind].copy_(tensor.index_select(0, index))
        if self.scales is not None:
            staged_scales = self.staged_scales(run, len(block_ids))
            for layer, pair in enumerate(self.scales):
                for kind, tensor in enumerate(pair):
                    staged_scales[layer, kind].copy_(tensor.index_select(0, index))

    def scatter(self, run: torch.Tensor, block_ids: Sequence[int]) -> None:
        """Copy a staged ``run`` into the named blocks of every layer, in the order given."""
        if not block_ids:
            return
        staged = self.staged_views(run, len(block_ids))
        index = torch.tensor(block_ids, dtype=torch.long, device=self.device)
        for layer, pair in enumerate(self.rows):
            for kind, tensor in enumerate(pair):
                source = staged[layer, kind]
                tensor.index_copy_(0, index, source if tensor.device.type == "cpu" else source.to(tensor.device))
        if self.scales is not None:
            staged_scales = self.staged_scales(run, len(block_ids))
            for layer, pair in enumerate(self.scales):
                for kind, tensor in enumerate(pair):
                    tensor.index_copy_(0, index, staged_scales[layer, kind].to(tensor.device))


def _check_scales(scales: Sequence[ScalePair] | None, first: torch.Tensor, num_layers: int) -> list[ScalePair] | None:
    """An int8 KV's per-layer (key, value) scales, each [num_blocks] float32; None for a float KV."""
    if first.dtype != torch.int8:
        if scales is not None:
            raise NotSupportedError(f"per-block scales go with an int8 KV, not {first.dtype}")
        return None
    if scales is None:
        raise NotSupportedError(
            "an int8 KV cannot be transferred without its per-block scales: bind the channel to the pool "
            "(its kv_scales(layer)) or pass scales="
        )
    pairs = [tuple(pair) for pair in scales]
    expected = (first.shape[0],)
    if len(pairs) != num_layers or any(
        len(pair) != 2 or any(t.shape != expected or t.dtype != SCALE_DTYPE for t in pair) for pair in pairs
    ):
        raise NotSupportedError(
            f"an int8 KV needs one (key, value) pair of float32 [{first.shape[0]}] scales per layer ({num_layers})"
        )
    return [(pair[0], pair[1]) for pair in pairs]


def _as_rows(tensor: torch.Tensor, word: torch.dtype) -> torch.Tensor:
    """``tensor`` [num_blocks, ...] as [num_blocks, row] of ``word``: a view sharing its storage.

    Needs each block to be one contiguous run (true of a pool's layer views);
    anything else is copied into place by a contiguous clone, which would not
    share storage, so it is refused.
    """
    if not tensor.is_contiguous():
        raise NotSupportedError("KV tensors must be contiguous [num_blocks, block_size, kv_heads, head_dim] views")
    return tensor.view(tensor.shape[0], -1).view(word)
