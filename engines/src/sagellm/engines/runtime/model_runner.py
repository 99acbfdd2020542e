"""Runs the model on one step's chunks over the pool's KV storage."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sagellm.core.errors import ConfigError
from sagellm.core.protocols import KVPool, QuantizedKVPool
from sagellm.core.types import SequenceState
from sagellm.engines.model.attention import LayerKV
from sagellm.engines.model.kv_int8 import KVScales
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.input_batch import ChunkWork, build_input_batch


class ModelRunner:
    def __init__(self, model: LlamaForCausalLM, pool: KVPool, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.block_size = pool.layout.block_size
        # Block views [num_blocks, block_size, kv_heads, head_dim] over the pool's storage (no copy),
        # plus each layer's per-block scales when the pool stores int8 codes.
        self.kv_caches = [
            LayerKV(*pool.kv_tensors(layer), layer_scales(pool, layer)) for layer in range(pool.layout.num_layers)
        ]

    def execute(self, works: Sequence[ChunkWork]) -> tuple[torch.Tensor, list[SequenceState]]:
        """Logits (float32, [S, vocab]) for the chunks that reach their sequence's end."""
        batch = build_input_batch(works, self.block_size, self.device)
        logits = self.model(batch.input_ids, batch.positions, batch.meta, self.kv_caches, batch.logits_idx)
        return logits, batch.sampled

    def logits_of_every_token(self, works: Sequence[ChunkWork]) -> torch.Tensor:
        """Logits (float32, [total tokens, vocab]) of every token of the chunks, in order, for scoring text.

        The chunks run exactly as a step would: their KV is written into the
        sequences' blocks, and a later chunk of the same sequence reads it
        back from the pool (dequantized for an int8 cache). Perplexity
        through this path therefore measures the cache dtype too.
        """
        batch = build_input_batch(works, self.block_size, self.device)
        rows = torch.arange(batch.input_ids.shape[0], device=self.device)
        return self.model(batch.input_ids, batch.positions, batch.meta, self.kv_caches, rows)


def layer_scales(pool: KVPool, layer: int) -> KVScales | None:
    """The per-block scales (and paired K/V views) of an int8 pool's layer; None for float pools.

    An int8 layout from a pool that is not a core ``QuantizedKVPool`` is a
    configuration error rather than codes read as if they were values.
    """
    if not pool.layout.is_quantized:
        return None
    scales = pool.kv_scales(layer) if isinstance(pool, QuantizedKVPool) else None
    if scales is None:
        raise ConfigError(
            f"kv_pool.cache_dtype={pool.layout.dtype}: the '{type(pool).__name__}' pool exposes no "
            "per-block scales (it is not a QuantizedKVPool); use a float cache_dtype or the 'paged' pool"
        )
    key_blocks, value_blocks = pool.kv_tensors(layer)
    return KVScales.of(key_blocks, value_blocks, scales[0], scales[1])
