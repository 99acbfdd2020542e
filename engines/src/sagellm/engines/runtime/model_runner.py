"""Runs the model on one step's chunks over the pool's KV storage."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sagellm.core.protocols import KVPool
from sagellm.core.types import SequenceState
from sagellm.engines.model.llama import LlamaForCausalLM
from sagellm.engines.runtime.input_batch import ChunkWork, build_input_batch


class ModelRunner:
    def __init__(self, model: LlamaForCausalLM, pool: KVPool, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.block_size = pool.layout.block_size
        # Block views [num_blocks, block_size, kv_heads, head_dim] over the pool's storage (no copy).
        self.kv_caches = [pool.kv_tensors(layer) for layer in range(pool.layout.num_layers)]

    def execute(self, works: Sequence[ChunkWork]) -> tuple[torch.Tensor, list[SequenceState]]:
        """Logits (float32, [S, vocab]) for the chunks that reach their sequence's end."""
        batch = build_input_batch(works, self.block_size, self.device)
        logits = self.model(batch.input_ids, batch.positions, batch.meta, self.kv_caches, batch.logits_idx)
        return logits, batch.sampled
