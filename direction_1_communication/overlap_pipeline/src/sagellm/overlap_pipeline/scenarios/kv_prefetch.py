"""Scenario (a): decode layer ``l`` while layer ``l + 1``'s KV is read from disk into host memory.

The KV of a long context that no longer fits the device sits on disk (a
``disk`` KV tier); every decode step needs every layer's KV again. Double
buffering hides the reads::

    caller:  decode(l=0, buf0) | decode(l=1, buf1) | decode(l=2, buf0) | ...
    worker:  read(1 -> buf1)   | read(2 -> buf0)   | read(3 -> buf1)   | ...

Layer 0's KV of the first step is read before the loop (nothing to hide it
under); after that, each layer's read runs under the previous layer's
decode. The outputs do not depend on the manager: every read completes
before the decode that uses its buffer starts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sagellm.core.protocols import OverlapManager
from sagellm.overlap_pipeline.scenarios.decoder_layer import DecoderLayer
from sagellm.overlap_pipeline.scenarios.disk_kv_store import DiskKVStore


class PrefetchDecode:
    """``steps`` decode tokens for a batch through ``store.num_layers`` layers with KV from disk."""

    def __init__(self, store: DiskKVStore, layers: list[DecoderLayer], x0: torch.Tensor, steps: int = 1) -> None:
        self.store = store
        self.layers = layers
        self.x0 = x0
        self.steps = steps
        self._buffers = (store.new_buffer(), store.new_buffer())

    def run(self, manager: OverlapManager, *, compute: bool = True, comm: bool = True) -> torch.Tensor:
        """The last hidden state of every step [steps, batch, hidden]; ``compute``/``comm`` off to time one side."""
        num_layers = self.store.num_layers
        if comm:
            self.store.read_into(0, self._buffers[0])
        x, outs = self.x0, []
        for step in range(self.steps):
            for layer in range(num_layers):
                position = step * num_layers + layer
                x, _ = manager.schedule(
                    self._decode(x, layer, self._buffers[position % 2], compute),
                    self._read(position + 1, self._buffers[(position + 1) % 2], comm),
                )
            outs.append(x)
        return torch.stack(outs)

    def _decode(self, x: torch.Tensor, layer: int, buffer: torch.Tensor, on: bool) -> Callable[[], torch.Tensor]:
        weights = self.layers[layer % len(self.layers)]
        k, v = self.store.views(buffer)
        return (lambda: weights.decode(x, k, v)) if on else (lambda: x)

    def _read(self, position: int, buffer: torch.Tensor, on: bool) -> Callable[[], None]:
        if not on or position >= self.steps * self.store.num_layers:
            return lambda: None
        layer = position % self.store.num_layers
        return lambda: self.store.read_into(layer, buffer)
