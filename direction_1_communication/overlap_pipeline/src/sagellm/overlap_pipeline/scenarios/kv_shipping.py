"""Scenario (b): prefill layer ``l`` while layer ``l - 1``'s KV is shipped to the decode worker.

In prefill/decode disaggregation the decode worker needs every layer's KV;
shipping layer by layer lets all but the last layer's transfer run under
the remaining prefill::

    caller:  prefill(0) | prefill(1)    | prefill(2)    | ... | prefill(L-1)  |
    worker:             | ship(KV of 0) | ship(KV of 1) | ... | ship(KV L-2)  | ship(KV of L-1)

A layer's K and V are fresh tensors the next layer never writes, so
shipping them while the next layer computes reads stable bytes.

With ``prefix_tokens`` the prompt hits a prefix cache on the prefill
worker: only the new tokens are computed (attending to the cached prefix),
but the decode worker has no copy of the prefix, so each layer ships the
prefix's KV too (what a disaggregated deployment with prefill-side prefix
caching sends).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sagellm.core.protocols import OverlapManager
from sagellm.overlap_pipeline.scenarios.decoder_layer import DecoderLayer
from sagellm.overlap_pipeline.scenarios.kv_receiver import KVReceiverProcess

_KV = tuple[torch.Tensor, torch.Tensor]


def byte_view(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes without a copy (any dtype: numpy has no bfloat16, bytes do)."""
    return tensor.contiguous().view(-1).view(torch.uint8).numpy().data


class LayerwiseKVShipping:
    """Prefill of the new tokens ``x`` [tokens, hidden] through ``layers``, shipping each layer's KV."""

    def __init__(
        self, layers: list[DecoderLayer], x: torch.Tensor, receiver: KVReceiverProcess, prefix_tokens: int = 0
    ) -> None:
        self.layers = layers
        self.x = x
        self.receiver = receiver
        kv_dim = layers[0].shape.kv_dim
        gen = torch.Generator().manual_seed(len(layers))
        self.prefix: list[_KV] = [
            (torch.randn(prefix_tokens, kv_dim, generator=gen), torch.randn(prefix_tokens, kv_dim, generator=gen))
            for _ in layers
        ]
        kv_shape = (x.shape[0], kv_dim)
        self._stand_in: _KV = (torch.zeros(kv_shape, dtype=x.dtype), torch.zeros(kv_shape, dtype=x.dtype))

    def run(
        self, manager: OverlapManager, *, compute: bool = True, comm: bool = True
    ) -> tuple[torch.Tensor, list[bytes]]:
        """``(hidden after the last layer, the receiver's digests)``: per layer [prefix K, prefix V,] K, V."""
        x, previous, digests = self.x, None, []
        for i in range(len(self.layers)):
            (x, k, v), shipped = manager.schedule(self._prefill(i, x, compute), self._ship(i - 1, previous, comm))
            digests.extend(shipped)
            previous = (k, v)
        digests.extend(self._ship(len(self.layers) - 1, previous, comm)())  # no prefill left to hide the last
        return x, digests

    def _prefill(
        self, i: int, x: torch.Tensor, on: bool
    ) -> Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if on:
            layer, (past_k, past_v) = self.layers[i], self.prefix[i]
            if past_k.shape[0] == 0:
                return lambda: layer.prefill(x)
            return lambda: layer.prefill(x, past_k, past_v)
        k, v = self._stand_in
        return lambda: (x, k, v)

    def _ship(self, i: int, kv: _KV | None, on: bool) -> Callable[[], list[bytes]]:
        if kv is None or not on:
            return lambda: []
        tensors = [*self.prefix[i], *kv] if self.prefix[i][0].shape[0] else list(kv)
        return lambda: self.receiver.ship(*(byte_view(t) for t in tensors))
